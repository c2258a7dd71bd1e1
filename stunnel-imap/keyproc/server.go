package keyproc

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
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"imap-tls/log"
	"imap-tls/stunnel-imap/seccomp"
)

// MaxPEM bounds what is read from one PEM file or descriptor.
const MaxPEM = 1 << 20

// Key is one certificate chain with its private key, held by the key
// process only.
type Key struct {
	Cert tls.Certificate // Certificate (DER chain), PrivateKey, Leaf
	Name string          // the file's name without ".pem", for -d; else ""
}

// Keys is the key process's set; the first is the default, for clients
// that send no server name or one that matches nothing.
type Keys []Key

// ParsePEM reads a chain (leaf first) and its private key from one PEM
// and checks that they match and that the chain fits in one frame.
func ParsePEM(data []byte) (Key, error) {
	c, err := tls.X509KeyPair(data, data)
	if err != nil {
		return Key{}, err
	}
	switch c.PrivateKey.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return Key{}, fmt.Errorf("unsupported private key type %T", c.PrivateKey)
	}
	if _, err := EncodeReply(Reply{Type: TypeChain, Chain: c.Certificate}); err != nil {
		return Key{}, err
	}
	return Key{Cert: c}, nil
}

// choose picks the key for an SNI name: the file named after it (with
// -d), else the first whose certificate covers it, else the default.
func (ks Keys) choose(name string) *Key {
	if name == "" {
		return &ks[0]
	}
	name = strings.ToLower(name)
	for i := range ks {
		if ks[i].Name != "" && strings.ToLower(ks[i].Name) == name {
			return &ks[i]
		}
	}
	for i := range ks {
		if ks[i].Cert.Leaf != nil && ks[i].Cert.Leaf.VerifyHostname(name) == nil {
			return &ks[i]
		}
	}
	return &ks[0]
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

// Synopsis is the key mode's usage, after the program name.
const Synopsis = "-S ( -P fd | -p pemfile | -d certdir ) ..."

type source struct{ kind, arg string }

type sources []source

func (s *sources) String() string { return "" }

func adder(s *sources, kind string) func(string) error {
	return func(v string) error { *s = append(*s, source{kind, v}); return nil }
}

// Run is `stunnel-imap -S`, the key process: args are what follows -S.
// It makes itself undumpable, loads every key, installs the seccomp
// filter, and serves one handshake on fd 0 (the socket makesock gives
// it), logging through l.
func Run(args []string, l *log.Logger) error {
	var src sources
	fs := flag.NewFlagSet("stunnel-imap -S", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Func("P", "PEM on descriptor `fd`", adder(&src, "P"))
	fs.Func("p", "PEM in `file`", adder(&src, "p"))
	fs.Func("d", "one PEM per server name in `dir`", adder(&src, "d"))
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
	if err := seccomp.Harden(); err != nil {
		return log.Temp(err, "harden the key process")
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
		return &log.Error{Code: log.ExitTemp, Msg: "unable to answer the proxy", Err: err}
	}
	return nil
}

func load(src sources) (Keys, error) {
	var ks Keys
	for _, s := range src {
		switch s.kind {
		case "P":
			fd, err := strconv.Atoi(s.arg)
			if err != nil || fd < 0 {
				return nil, &log.UsageError{Synopsis: Synopsis, Msg: "bad descriptor " + s.arg}
			}
			f := os.NewFile(uintptr(fd), "fd "+s.arg)
			k, err := loadFrom(f, "descriptor "+s.arg)
			f.Close()
			if err != nil {
				return nil, err
			}
			ks = append(ks, k)
		case "p":
			k, err := loadFile(s.arg)
			if err != nil {
				return nil, err
			}
			ks = append(ks, k)
		case "d":
			d, err := loadDir(s.arg)
			if err != nil {
				return nil, err
			}
			ks = append(ks, d...)
		}
	}
	return ks, nil
}

func loadFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, log.Temp(err, "open %s", path)
	}
	defer f.Close()
	return loadFrom(f, path)
}

// loadFrom reads one PEM, at most MaxPEM bytes, and wipes the buffer:
// the parsed key is the process's only copy.
func loadFrom(f *os.File, what string) (Key, error) {
	data, err := io.ReadAll(io.LimitReader(f, MaxPEM+1))
	defer clear(data)
	if err != nil {
		return Key{}, log.Temp(err, "read %s", what)
	}
	if len(data) > MaxPEM {
		return Key{}, log.Config(nil, "certificate file %s is larger than %d bytes", what, MaxPEM)
	}
	k, err := ParsePEM(data)
	if err != nil {
		return Key{}, &log.Error{Code: log.ExitUsage, Msg: "unable to load certificate and key from " + what, Err: err}
	}
	return k, nil
}

// loadDir loads every *.pem of dir; default.pem, when present, is the
// default, else the first in name order.
func loadDir(dir string) (Keys, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, log.Temp(err, "read directory %s", dir)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasSuffix(n, ".pem") && !strings.HasPrefix(n, ".") && e.Type().IsRegular() {
			names = append(names, n)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "default.pem") != (names[j] == "default.pem") {
			return names[i] == "default.pem"
		}
		return names[i] < names[j]
	})
	if len(names) == 0 {
		return nil, log.Config(nil, "no .pem file in %s", dir)
	}
	var ks Keys
	for _, n := range names {
		k, err := loadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if n != "default.pem" {
			k.Name = strings.TrimSuffix(n, ".pem")
		}
		ks = append(ks, k)
	}
	return ks, nil
}
