package keyproto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/nodump"
	"imap-tls/internal/seccomp"
	"imap-tls/log"
)

// MaxPEM bounds what is read from one PEM file or descriptor.
const MaxPEM = certfile.MaxPEM

// Key is one certificate chain with its private key, held by the key
// process only.
type Key struct {
	Cert tls.Certificate // Certificate (DER chain), PrivateKey, Leaf
}

// Keys is the key process's set, in the order loaded; the first is the
// default, for clients that send no server name or one that no other
// covers.
type Keys []Key

// ParsePEM checks one PEM, a chain (leaf first) and its private key, as
// every certificate of the suite is checked (package certfile): they
// match, the chain fits one frame, the leaf is valid now.
func ParsePEM(data []byte) (Key, error) {
	c, err := certfile.Parse(data, "PEM")
	if err != nil {
		return Key{}, err
	}
	return Key{Cert: *c}, nil
}

// choose picks the key for an SNI name by the certificates' own names,
// as the proxy picks from a -d directory (certfile.Set.Index): the first
// after the default that covers the name, else the default.
func (ks Keys) choose(name string) *Key {
	s := make(certfile.Set, len(ks))
	for i := range ks {
		s[i] = &ks[i].Cert
	}
	return &ks[s.Index(name)]
}

// sign makes the one signature, refusing any request that does not fit
// the key: crypto/tls never asks for PSS with ECDSA, for a digest with
// Ed25519 (that would be Ed25519ph), or for a bare message with RSA.
func (k *Key) sign(req Request) ([]byte, error) {
	var opts crypto.SignerOpts = req.Hash
	switch k.Cert.PrivateKey.(type) {
	case *rsa.PrivateKey:
		if req.Hash == 0 {
			return nil, errors.New("rsa key asked to sign without a hash")
		}
		if req.PSS {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: req.Hash}
		}
	case *ecdsa.PrivateKey:
		if req.Hash == 0 || req.PSS {
			return nil, errors.New("ecdsa key asked for a signature it does not make")
		}
	case ed25519.PrivateKey:
		if req.Hash != 0 || req.PSS {
			return nil, errors.New("ed25519 key asked to sign a digest")
		}
	}
	return k.Cert.PrivateKey.(crypto.Signer).Sign(rand.Reader, req.Digest, opts)
}

// Serve answers one handshake's requests on r and w: it says it is
// ready, then answers the server name, then one signature. It returns
// nil after the signature is sent, or when the proxy leaves at any step,
// and an error for anything the protocol does not allow, after which the
// caller exits.
func Serve(r io.Reader, w io.Writer, ks Keys) error {
	if len(ks) == 0 {
		return errors.New("no key")
	}
	if err := serve(r, w, ks); err != nil && !gone(err) {
		return err
	}
	return nil
}

// gone reports whether err means that the proxy has left (its client
// did): EOF between frames, a broken pipe, or a reset, which is what a
// unix socket reports when the proxy closed with a frame of ours unread.
func gone(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

func serve(r io.Reader, w io.Writer, ks Keys) error {
	send := func(rep Reply, what string) error {
		f, err := EncodeReply(rep)
		if err != nil {
			return err
		}
		if _, err := w.Write(f); err != nil {
			return fmt.Errorf("send %s: %w", what, err)
		}
		return nil
	}
	if err := send(Reply{Type: TypeReady}, "ready"); err != nil {
		return err
	}
	var buf [MaxFrame]byte
	req, err := ReadRequest(r, &buf)
	if err != nil {
		return err
	}
	if req.Type != TypeName {
		return errors.New("sign request before the server name")
	}
	k := ks.choose(req.Name)
	if err := send(Reply{Type: TypeChain, Chain: k.Cert.Certificate}, "certificate chain"); err != nil {
		return err
	}

	if req, err = ReadRequest(r, &buf); err != nil {
		return err
	}
	if req.Type != TypeSign {
		return errors.New("second server name request")
	}
	sig, err := k.sign(req)
	if err != nil {
		send(Reply{Type: TypeError, Err: "signature refused"}, "error")
		return err
	}
	// One handshake needs one signature: nothing more is answered, and
	// the key leaves memory with the process.
	return send(Reply{Type: TypeSig, Sig: sig}, "signature")
}

// Synopsis is stunnel-imap-key's usage, after the program name.
const Synopsis = "[ -c ] ( -P fd | -p pemfile | -d certdir ) ..."

type source struct{ kind, arg string }

type sources []source

func (s *sources) String() string { return "" }

func adder(s *sources, kind string) func(string) error {
	return func(v string) error { *s = append(*s, source{kind, v}); return nil }
}

// Run is stunnel-imap-key, the key process: args are its options. It
// makes itself undumpable, loads every key, installs the seccomp filter,
// and serves one handshake on fd 0 (the socket makesock gives it),
// logging through l.
func Run(args []string, l *log.Logger) error {
	var src sources
	fs := flag.NewFlagSet("stunnel-imap-key", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("P", "PEM on descriptor `fd`", adder(&src, "P"))
	fs.Func("p", "PEM in `file`", adder(&src, "p"))
	fs.Func("d", "a certificate directory `dir`", adder(&src, "d"))
	checkOnly := fs.Bool("c", false, "check and report, then exit")
	if err := fs.Parse(args); err != nil {
		msg := err.Error()
		if errors.Is(err, flag.ErrHelp) {
			msg = "" // asked for: the usage line alone
		}
		return &log.UsageError{Synopsis: Synopsis, Msg: msg}
	}
	if fs.NArg() != 0 {
		return &log.UsageError{Synopsis: Synopsis, Msg: "unexpected argument " + fs.Arg(0)}
	}
	if len(src) == 0 {
		return &log.UsageError{Synopsis: Synopsis, Msg: "no certificate given"}
	}
	if err := nodump.Set(); err != nil {
		return log.Temp(err, "harden the key process")
	}
	if *checkOnly {
		return check(src, os.Stdout, l)
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
	if err := Serve(r, w, ks); err != nil {
		return log.Temp(err, "answer the proxy")
	}
	return nil
}

// load reads every source in the order given, through the one loader
// (package certfile), which wipes each PEM buffer once parsed.
func load(src sources) (Keys, error) {
	var ks Keys
	add := func(c ...*tls.Certificate) {
		for _, c := range c {
			ks = append(ks, Key{Cert: *c})
		}
	}
	for _, s := range src {
		switch s.kind {
		case "P":
			fd, err := strconv.Atoi(s.arg)
			if err != nil || fd < 0 {
				return nil, &log.UsageError{Synopsis: Synopsis, Msg: "bad descriptor " + s.arg}
			}
			c, err := certfile.Descriptor(fd)
			if err != nil {
				return nil, err
			}
			add(c)
		case "p":
			c, err := certfile.File(s.arg)
			if err != nil {
				return nil, err
			}
			add(c)
		case "d":
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
func check(src sources, out io.Writer, l *log.Logger) error {
	days, err := certfile.WarnDaysFrom(os.Getenv)
	if err != nil {
		return err
	}
	var first error
	for _, s := range src {
		var f *os.File
		name := s.arg
		switch s.kind {
		case "P":
			fd, err := strconv.Atoi(s.arg)
			if err != nil || fd < 0 {
				return &log.UsageError{Synopsis: Synopsis, Msg: "bad descriptor " + s.arg}
			}
			name = "descriptor " + s.arg
			if f = os.NewFile(uintptr(fd), name); f == nil {
				return &log.UsageError{Synopsis: Synopsis, Msg: "bad descriptor " + s.arg}
			}
		case "p":
			if f, err = os.Open(s.arg); err != nil {
				err = log.Temp(err, "read certificate %s", s.arg)
				fmt.Fprintf(out, "error: %s: %s\n", name, err.Error())
				first = cmp(first, err)
				continue
			}
		case "d":
			return &log.UsageError{Synopsis: Synopsis, Msg: "-c checks -p and -P files, not -d"}
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
