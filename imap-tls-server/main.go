// Command imap-tls-server is the front of the imap-tls chain, in the
// spirit of s6-networking's s6-tlsserver: it checks its options and the
// files and accounts they name, once per service start (package
// internal/check, which imap-tls-check shares), then execs tcpserver
// with the whole per-connection chain. The default, the server one
// address (env/IMAPD: Dovecot's haproxy listener, a unix socket path,
// IPv4:port or [IPv6]:port) and the keys the signer's (-s, a service of
// its own, stunnel-imap-signer): the proxy's setuidgid-chroot connects
// both, as root before it drops, the server onto fd 3 and the signer's
// socket onto fd 4; two Go programs start per connection:
//
//	tcpserver -R -H -l 0 -c N IP PORT
//	setuidgid-chroot -/ JAIL IDS -c 3:ADDRESS -s 4:SOCKET
//	  stunnel-imap -n MODE -F 3 -K 4 [proxy options]
//
// With -k instead of -s, a key process per connection, the other end of
// a makesock -d 4's socketpair:
//
//	tcpserver -R -H -l 0 -c N IP PORT
//	makesock -d 4
//	  setuidgid-chroot -/ JAIL IDS -c 3:ADDRESS
//	    stunnel-imap -n MODE -F 3 -K 4 [proxy options]
//	-makesock_connect_to
//	  setuidgid-chroot -/ JAIL IDS -o 3:PEM [-o 5:PEM2 ...]
//	    stunnel-imap-key -P 3:PEM [-P 5:PEM2 ...]
//
// When the server is a program that speaks on stdin and stdout (IMAPD
// more than one word, or an executable: Courier's imapd), an outer
// makesock starts it on the other end of a socketpair whose first end
// is the proxy's fd 3, and no -c 3:ADDRESS:
//
//	tcpserver -R -H -l 0 -c N IP PORT
//	makesock
//	  setuidgid-chroot -/ JAIL IDS -s 4:SOCKET
//	    stunnel-imap -n MODE -F 3 -K 4 [proxy options]
//	-makesock_connect_to IMAPD...
//
// The chain is spelled here and nowhere else: the service's run file,
// the end-to-end tests and the benchmarks all run this program.
package main

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"imap-tls/internal/check"
	"imap-tls/internal/opt"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

var synopsis = "-n " + suite.ModeAlternatives() + " [ -c concurrency ] [ -b backlog ] [ -1 ] ( -u account | -r base:count ) -j jail ( -k pemfile [ -k pemfile ... ] | -s socket [ -C pemfile ... ] ) [ -T secs ] [ -t secs ] [ -A secs ] [ -v | -q ] [ -H ] [ -L source[,source...] ] [ -V ] [ -x ] ip port ( address | imapd... )"

// maxPEMs bounds -k: each file is a descriptor of the key process
// (3, 5, 6, ...), under the usual limit of 1024.
const maxPEMs = 1000

// logger writes the start's warnings and the fatal line.
var logger = log.New("imap-tls-server")

func main() {
	if name, ok := memArgs(os.Args[1:]); ok {
		logger.Exit(memLimit(name, os.Stdout)) // -M NAME: the data limit, before softlimit (limits.go)
		return
	}
	chain, print, err := run(os.Args[1:])
	if err == nil && !print {
		err = dataLimit() // the data limit this process, and so the chain, runs under
	}
	if err == nil && print {
		err = printChain(os.Stdout, chain)
	} else if err == nil {
		if ip, port, ok := chainAddress(chain); ok {
			err = bindable(ip, port)
		}
		if err == nil {
			err = guard(os.Args[1:]) // with -H: the server's PROXY port kept to root (firewall.go)
		}
		if err == nil {
			err = execChain(chain)
		}
	}
	logger.Exit(err)
}

// options are imap-tls-server's, checked.
type options struct {
	mode        suite.Mode
	concurrency string
	backlog     string
	printPort   bool     // tcpserver -1
	ids         []string // setuidgid-chroot -u account or -r base:count
	jail        string
	pems        []string
	signer      string   // -s: the signer's socket, instead of a key process per connection
	signerPems  []string // -C: the signer's files, checked at start as -k's are
	proxy       []string // stunnel-imap's -T -t -A -v -q, in the order given
	verbose     bool     // tcpserver -v
	print       bool     // -x
	balancers   string   // -L: proxy-server -a, the load balancers that send a PROXY header
	ip, port    string
	imapd       []string
	// network and address: the server is a socket that the proxy's
	// setuidgid-chroot -c connects to ("unix" or "tcp"); network "":
	// imapd is a program.
	network, address string
}

// run parses and checks args, checks what they name, and returns the
// chain to exec (argv, tcpserver first) and whether -x asked to print it
// instead.
func run(args []string) (chain []string, print bool, err error) {
	o, err := parse(args)
	if err != nil {
		return nil, false, err
	}
	if err := o.check(); err != nil {
		return nil, false, err
	}
	return o.chain(), o.print, nil
}

// parse reads the options and arguments and checks their form.
func parse(args []string) (*options, error) {
	o := &options{concurrency: "40"}
	s := opt.New(synopsis)
	var mode, account, uidRange string
	var modeSet, quiet, verbose bool
	s.Func('n', func(v string) error { mode, modeSet = v, true; return nil })
	s.Func('c', number(&o.concurrency))
	s.Func('b', number(&o.backlog))
	s.Flag('1', &o.printPort)
	s.String('u', &account)
	s.String('r', &uidRange)
	s.String('j', &o.jail)
	s.String('s', &o.signer)
	s.Func('k', func(v string) error {
		var p string
		if err := opt.String(&p)(v); err != nil {
			return err
		}
		o.pems = append(o.pems, p)
		return nil
	})
	s.Func('C', func(v string) error {
		var p string
		if err := opt.String(&p)(v); err != nil {
			return err
		}
		o.signerPems = append(o.signerPems, p)
		return nil
	})
	for _, name := range []byte{'T', 't', 'A'} {
		s.Func(name, func(v string) error {
			var d time.Duration
			if err := opt.Seconds(&d)(v); err != nil {
				return err
			}
			o.proxy = append(o.proxy, "-"+string(name), v)
			return nil
		})
	}
	s.Flag('v', &verbose)
	s.Flag('q', &quiet)
	s.Flag('V', &o.verbose)
	s.Flag('x', &o.print)
	// -H: stunnel-imap -H, a PROXY v2 header to the IMAP server.
	s.FlagFunc('H', func() error { o.proxy = append(o.proxy, "-H"); return nil })
	s.Func('L', func(v string) error {
		if err := check.Sources(v); err != nil {
			return err
		}
		o.balancers = v
		return nil
	})
	rest, err := s.Parse(args)
	if err != nil {
		return nil, err
	}
	switch {
	case !modeSet:
		return nil, s.Usage("missing -n mode")
	case account == "" && uidRange == "":
		return nil, s.Usage("missing -u account or -r base:count")
	case account != "" && uidRange != "":
		return nil, s.Usage("-u and -r together: one of them")
	case o.jail == "":
		return nil, s.Usage("missing -j jail")
	case len(o.pems) == 0 && o.signer == "":
		return nil, s.Usage("missing -k pemfile or -s socket")
	case len(o.pems) > 0 && o.signer != "":
		return nil, s.Usage("-k and -s together: with -s the signer holds the keys")
	case len(o.signerPems) > 0 && o.signer == "":
		return nil, s.Usage("-C without -s: -C names the signer's files, -k the key process's")
	case verbose && quiet:
		return nil, s.Usage("-v and -q together: one of them")
	case len(rest) < 3:
		return nil, s.Usage("missing ip, port or imapd")
	}
	if verbose {
		o.proxy = append(o.proxy, "-v")
	}
	if quiet {
		o.proxy = append(o.proxy, "-q")
	}
	if o.mode, err = check.Mode(mode); err != nil {
		return nil, err
	}
	if account != "" {
		if err := check.Account(account); err != nil {
			return nil, err
		}
		o.ids = []string{"-u", account}
	} else {
		if err := check.UIDRange(uidRange); err != nil {
			return nil, err
		}
		o.ids = []string{"-r", uidRange}
	}
	if len(o.pems) > maxPEMs {
		return nil, log.Config(nil, "%d pemfiles: at most %d", len(o.pems), maxPEMs)
	}
	o.ip, o.port, o.imapd = rest[0], rest[1], rest[2:]
	if err := check.IP(o.ip); err != nil {
		return nil, err
	}
	if err := check.Port(o.port); err != nil {
		return nil, err
	}
	if o.imapd[0] == "" {
		return nil, log.Config(nil, "empty imapd")
	}
	if o.network, o.address, err = check.ServerAddress("", o.imapd); err != nil {
		return nil, err
	}
	return o, nil
}

// number is an opt value parser that keeps v when it is a decimal
// number of at least 1.
func number(p *string) func(string) error {
	return func(v string) error {
		if err := check.AtLeastOne(v); err != nil {
			return err
		}
		*p = v
		return nil
	}
}

// check looks at what the options name, in the order the chain would
// trip over it: the programs, the jail, the certificate files, the
// server's socket, the account or uid range. Everything it refuses here
// would otherwise fail every connection, one by one, in the log; what
// it warns about serves, but weakens the isolation (imap-tls-check
// calls those errors).
func (o *options) check() error {
	path := os.Getenv("PATH")
	progs := check.Programs(check.Uses{KeyProcess: o.signer == "", Balancers: o.balancers != ""})
	if err := check.Find(progs, path); err != nil {
		return err
	}
	if err := check.Jail(o.jail); err != nil {
		return err
	}
	if err := check.JailSafe(o.jail); err != nil {
		logger.Warning("%s", err)
	}
	// With -s the signer loads its own files at its start; -C names them
	// so that this service, too, refuses to come up on a certificate the
	// signer would refuse (issue 13: one policy, every path). The files
	// are read by the suite's one loader, as the key holders read them.
	pems := append(o.pems[:len(o.pems):len(o.pems)], o.signerPems...)
	if err := check.Certs(pems, os.Getenv, func(w string) { logger.Warning("%s", w) }); err != nil {
		return err
	}
	for _, p := range pems {
		if err := check.KeyFileSafe(p); err != nil {
			logger.Warning("%s", err)
		}
	}
	if o.network == "unix" {
		if w := check.SocketState(o.address); w != "" {
			logger.Warning("%s", w)
		}
	}
	sgc, err := check.LookPath("setuidgid-chroot", path)
	if err != nil {
		return log.Temp(err, "find setuidgid-chroot in $PATH")
	}
	return check.IDs(sgc, o.ids, os.Stderr)
}

// chain is the argv to exec: tcpserver and everything it runs for each
// connection, one program per element group as in the package comment.
func (o *options) chain() []string {
	c := []string{"tcpserver", "-R", "-H", "-l", "0", "-c", o.concurrency}
	if o.backlog != "" {
		c = append(c, "-b", o.backlog)
	}
	if o.printPort {
		c = append(c, "-1")
	}
	if o.verbose {
		c = append(c, "-v")
	}
	c = append(c, o.ip, o.port)
	if o.balancers != "" {
		c = append(c, "proxy-server", "-a", o.balancers)
	}
	// The server side: a socket the proxy's setuidgid-chroot connects
	// to as root (-c 3:ADDRESS: the connection on fd 3, no program for
	// the server side, and no Go program started for the connect alone),
	// or a program on the other end of makesock's socketpair, named
	// after the last -makesock_connect_to (the key process's, in the
	// proxy side, is nested before it).
	if o.network != "" {
		return append(c, o.proxySide()...)
	}
	c = append(c, "makesock")
	c = append(c, o.proxySide()...)
	c = append(c, "-makesock_connect_to")
	return append(c, o.imapd...)
}

// serverOpen is the setuidgid-chroot option that connects the server
// onto fd 3 when the server is one address: none for a program.
func (o *options) serverOpen() []string {
	if o.network == "" {
		return nil
	}
	return []string{"-c", "3:" + o.address}
}

// proxySide is what gets the server on fd 3: the proxy, with its key
// holder on fd 4: the signer's socket (-s, signerChain), or a key
// process of its own, the second program of a makesock -d 4.
func (o *options) proxySide() []string {
	if o.signer != "" {
		return o.signerChain()
	}
	c := []string{"makesock", "-d", "4"}
	c = append(c, "setuidgid-chroot", "-/", o.jail)
	c = append(c, o.ids...)
	c = append(c, o.serverOpen()...)
	c = append(c, "stunnel-imap", "-n", o.mode.Name, "-F", "3", "-K", "4")
	c = append(c, o.proxy...)
	c = append(c, "-makesock_connect_to")
	c = append(c, "setuidgid-chroot", "-/", o.jail)
	c = append(c, o.ids...)
	key := []string{"stunnel-imap-key"}
	for i, p := range o.pems {
		fd := 3
		if i > 0 {
			fd = 4 + i // then 5, 6, ...: 4 stays free, as the pages have always shown it
		}
		c = append(c, "-o", strconv.Itoa(fd)+":"+p)
		key = append(key, "-P", strconv.Itoa(fd)+":"+p) // the file's name, for the key process's messages
	}
	return append(c, key...)
}

// printChain writes the chain for -x, one argument per line.
func printChain(w io.Writer, chain []string) error {
	if _, err := io.WriteString(w, strings.Join(chain, "\n")+"\n"); err != nil {
		return log.Temp(err, "write the chain")
	}
	return nil
}

// execChain replaces this process with tcpserver.
func execChain(chain []string) error {
	path, err := exec.LookPath(chain[0])
	if err != nil {
		return log.Temp(syscall.ENOENT, "find %s in $PATH", chain[0])
	}
	err = syscall.Exec(path, chain, tlsEnv(chain, os.Environ()))
	return log.Temp(err, "run %s", path)
}
