// Command stunnel-imap-key is the key process of imap-tls: it holds the
// private key for one connection, in a jail and under a uid of its own,
// with no socket but its channel to stunnel-imap -K on fd 0/1, and signs
// once for one TLS handshake. See README.md.
//
// This file is the whole program: its options, the load through the one
// certificate loader (internal/certfile), the lock-down (internal/nodump,
// internal/seccomp), one session of the key protocol (internal/keyholder)
// and the -c report. This is its name in the log and in ps.
//
// The go:debug settings keep the Go runtime from looking for cgroup CPU
// limits at start and every second after: the key process runs in an
// empty jail where there are none to find, and after the lock-down it
// may not open files at all.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/keyholder"
	"imap-tls/internal/nodump"
	"imap-tls/internal/opt"
	"imap-tls/internal/seccomp"
	"imap-tls/log"
)

func main() {
	l := log.New("stunnel-imap-key")
	l.Exit(run(os.Args[1:], l))
}

// synopsis is stunnel-imap-key's usage, after the program name.
const synopsis = "[ -c ] ( -P fd[:name] | -p pemfile | -d certdir ) ..."

// source is one certificate option, in the order given: -P (fd set,
// and arg the file's name if given), -p or -d (arg set).
type source struct {
	kind byte
	fd   int
	arg  string
}

// run is stunnel-imap-key, the key process: args are its options. It
// makes itself undumpable, loads every key, installs the seccomp filter,
// and serves one handshake on fd 0 (the socket makesock gives it),
// logging through l.
func run(args []string, l *log.Logger) error {
	var src []source
	checkOnly := false
	o := opt.New(synopsis)
	o.Func('P', func(v string) error {
		s := source{kind: 'P'}
		if err := certfile.DescriptorOption(v, &s.fd, &s.arg); err != nil {
			return err
		}
		src = append(src, s)
		return nil
	})
	for _, k := range []byte{'p', 'd'} {
		o.Func(k, func(v string) error {
			s := source{kind: k}
			if err := opt.String(&s.arg)(v); err != nil {
				return err
			}
			src = append(src, s)
			return nil
		})
	}
	o.Flag('c', &checkOnly)
	rest, err := o.Parse(args)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return o.Usage("unexpected argument " + rest[0])
	}
	if len(src) == 0 {
		return o.Usage("no certificate given")
	}
	if err := nodump.Set(); err != nil {
		return log.Temp(err, "harden the key process")
	}
	if checkOnly {
		return check(o, src, os.Stdout, l)
	}
	ks, err := load(src)
	if err != nil {
		return err
	}
	// The channel as a net.Conn: a write to a closed peer is then an
	// EPIPE error, not the SIGPIPE death the runtime gives fd 1.
	var r io.Reader = os.Stdin
	var w io.Writer = os.Stdout
	if c, err := net.FileConn(os.Stdin); err == nil {
		defer c.Close()
		r, w = c, c
	}
	if err := seccomp.Install(); err != nil {
		return log.Temp(err, "lock the key process down")
	}
	seccomp.Probe(l)
	if err := keyholder.Serve(r, w, ks); err != nil {
		return log.Temp(err, "answer the proxy")
	}
	return nil
}

// load reads every source in the order given, through the one loader
// (package certfile), which wipes each PEM buffer once parsed.
func load(src []source) (keyholder.Keys, error) {
	var ks keyholder.Keys
	add := func(c ...*tls.Certificate) {
		for _, c := range c {
			ks = append(ks, keyholder.Key{Cert: *c})
		}
	}
	for _, s := range src {
		switch s.kind {
		case 'P':
			c, err := certfile.Descriptor(s.fd, s.arg)
			if err != nil {
				return nil, err
			}
			add(c)
		case 'p':
			c, err := certfile.File(s.arg)
			if err != nil {
				return nil, err
			}
			add(c)
		case 'd':
			set, err := certfile.Dir(s.arg)
			if err != nil {
				return nil, err
			}
			add(set...)
		}
	}
	return ks, nil
}

// check is -c: for each source, a report on stdout, one finding a line
// ("ok: ./ssl/stunnel.pem: holds 2 certificates, then a private key"),
// its warnings also logged (imap-tls-server runs this at each start
// with stdout thrown away: the warnings reach the service's log), and
// the policy's verdict as the exit status: 0, 100 for what the key
// process would refuse, 111 for what it could not read. Nothing is
// served. Every source is reported on before the first error is
// returned.
func check(o *opt.Set, src []source, out io.Writer, l *log.Logger) error {
	days, err := certfile.WarnDaysFrom(os.Getenv)
	if err != nil {
		return err
	}
	var first error
	for _, s := range src {
		var f *os.File
		name := s.arg
		switch s.kind {
		case 'P':
			name = certfile.DescriptorName(s.fd, s.arg)
			if f = os.NewFile(uintptr(s.fd), name); f == nil {
				return o.Usage("bad descriptor " + strconv.Itoa(s.fd))
			}
		case 'p':
			if f, err = os.Open(s.arg); err != nil {
				err = log.Temp(err, "read certificate %s", s.arg)
				fmt.Fprintf(out, "error: %s: %s\n", name, err.Error())
				first = cmp(first, err)
				continue
			}
		case 'd':
			return o.Usage("-c checks -p and -P files, not -d")
		}
		findings, err := certfile.Check(f, name, days, time.Now())
		f.Close()
		for _, fi := range findings {
			fmt.Fprintf(out, "%s: %s: %s\n", fi.Kind, name, fi.Text)
			if fi.Kind == "warning" {
				l.Warning("%s: %s", name, fi.Text)
			}
		}
		first = cmp(first, err)
	}
	return first
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
