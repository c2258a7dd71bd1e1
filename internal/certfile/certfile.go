// Package certfile is the one loader of certificate chains and private
// keys for imap-tls: the proxy's -p, -P and -d (stunnel-imap) and the key
// holders (stunnel-imap-key, stunnel-imap-signer) read their PEM files
// through it, so that all apply one policy and fail with one exit status
// per failure.
//
// The policy:
//
//   - A file, directory or descriptor that cannot be opened or read:
//     exit 111 (`unable to read certificate /x: permission denied`), the
//     suite's rule for a file it cannot read.
//   - A PEM that does not parse, a missing or second private key, a key
//     that does not match the leaf, an unsupported key type, an encrypted
//     key, more than MaxPEM bytes, a chain that does not fit the key
//     protocol's frame (keyproto.FitChain), an expired or not yet valid
//     leaf: exit 100, the message naming the problem.
//   - A directory (-d): default.pem is required, for clients that send no
//     server name or one that matches nothing; every other regular,
//     non-hidden *.pem is loaded at start, in file-name order; at most
//     MaxFiles entries.
//   - SNI: by the leaf's own DNS names (wildcards as crypto/x509 allows
//     them), case-insensitive, the first certificate after the default in
//     load order that covers the name, else the default. File names other
//     than default.pem mean nothing.
//
// The PEM buffer is wiped once parsed: the parsed key is the process's
// only copy.
package certfile

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"imap-tls/internal/keyproto"
	"imap-tls/internal/opt"
	"imap-tls/log"
)

// Limits. A chain must also fit the key protocol's chain frame
// (keyproto.FitChain): a chain that loads is a chain a key holder can
// send, whichever program loads it.
const (
	MaxPEM   = 1 << 20 // bytes read from one file or descriptor
	MaxFiles = 4096    // entries of a -d directory
)

// DefaultName is the file of a directory that holds the default
// certificate.
const DefaultName = "default.pem"

// Parse checks one PEM, the chain (leaf first) and its private key,
// against the policy and returns it with Leaf set. name says where the
// PEM came from, for the messages: a path, or "descriptor N". Every
// error is a *log.Error with code 100. Parse does not wipe data; the
// caller does (Read does).
func Parse(data []byte, name string) (*tls.Certificate, error) {
	bad := func(format string, args ...any) error {
		return log.Perm(fmt.Errorf(format, args...), "load certificate %s", from(name))
	}
	if len(data) > MaxPEM {
		return nil, bad("larger than %d bytes", MaxPEM)
	}
	var chain [][]byte
	var keyDER []byte
	defer func() { clear(keyDER) }()
	blocks := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks++
		switch {
		case b.Type == "CERTIFICATE":
			chain = append(chain, b.Bytes)
		case b.Type == "ENCRYPTED PRIVATE KEY",
			strings.HasSuffix(b.Type, "PRIVATE KEY") && strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
			clear(b.Bytes)
			return nil, log.Config(nil, "private key %s is encrypted: store it unencrypted (root-only, 0400)", in(name))
		case b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY"):
			if keyDER != nil {
				clear(b.Bytes)
				return nil, bad("more than one private key")
			}
			keyDER = b.Bytes
		}
	}
	switch {
	case blocks == 0:
		return nil, bad("no PEM data")
	case len(chain) == 0:
		return nil, bad("no certificate")
	case keyDER == nil:
		return nil, bad("no private key")
	}
	if err := keyproto.FitChain(chain); err != nil {
		return nil, bad("%s", err)
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, bad("%s", log.Reason(err))
	}
	key, err := parseKey(keyDER)
	if err != nil {
		return nil, bad("%s", err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, bad("private key does not match the certificate")
	}
	if err := Valid(leaf, name, time.Now()); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// Valid is the policy's clock: a leaf that has expired at now, or is not
// valid yet, is refused (*log.Error, 100), in the words Parse uses. A
// process that keeps a certificate loaded (the signer) asks it again as
// time passes.
func Valid(leaf *x509.Certificate, name string, now time.Time) error {
	if now.After(leaf.NotAfter) {
		return log.Config(nil, "certificate %s expired on %s", from(name), leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	if now.Before(leaf.NotBefore) {
		return log.Config(nil, "certificate %s is not valid before %s", from(name), leaf.NotBefore.UTC().Format(time.DateTime)+" UTC")
	}
	return nil
}

// parseKey reads PKCS #8, PKCS #1 or SEC 1, as crypto/tls does, and
// accepts the key types that sign TLS handshakes: RSA, ECDSA, Ed25519.
func parseKey(der []byte) (crypto.Signer, error) {
	var k any
	var err error
	if k, err = x509.ParsePKCS8PrivateKey(der); err != nil {
		if k, err = x509.ParsePKCS1PrivateKey(der); err != nil {
			if k, err = x509.ParseECPrivateKey(der); err != nil {
				return nil, errors.New("private key does not parse")
			}
		}
	}
	switch k := k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// from and in phrase a source's name in a message: "/x" or "from
// descriptor 3"; "in /x" or "from descriptor 3".
func from(name string) string {
	if strings.HasPrefix(name, "descriptor ") {
		return "from " + name
	}
	return name
}

func in(name string) string {
	if strings.HasPrefix(name, "descriptor ") {
		return "from " + name
	}
	return "in " + name
}

// Read reads one PEM from r, at most MaxPEM bytes (one more tells a
// file that is too large), parses it, and wipes the buffer. A read
// error is a *log.Error with code 111.
func Read(r io.Reader, name string) (*tls.Certificate, error) {
	size := 64 << 10
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = int(min(st.Size(), MaxPEM) + 1)
		}
	}
	data, err := readAll(r, size)
	defer clear(data)
	if err != nil {
		return nil, log.Temp(err, "read certificate %s", from(name))
	}
	return Parse(data, name)
}

// readAll reads r to its end or to MaxPEM+1 bytes, starting with a
// buffer of size; a buffer it outgrows is wiped, so that no copy of the
// key is left behind.
func readAll(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, max(size, 512))
	for {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(2*cap(b), MaxPEM+1))
			copy(nb, b)
			clear(b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF || len(b) > MaxPEM {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// File reads and parses the PEM file at path.
func File(path string) (*tls.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, log.Temp(err, "read certificate %s", path)
	}
	defer f.Close()
	return Read(f, path)
}

// Descriptor reads and parses the PEM on descriptor fd (as
// setuidgid-chroot -o opens it), and closes fd. name is the file's name
// as its opener knows it, for the messages; empty, they say "from
// descriptor N" (DescriptorName).
func Descriptor(fd int, name string) (*tls.Certificate, error) {
	name = DescriptorName(fd, name)
	f := os.NewFile(uintptr(fd), name)
	if f == nil {
		return nil, log.Temp(errors.New("bad file descriptor"), "read certificate %s", from(name))
	}
	defer f.Close()
	return Read(f, name)
}

// DescriptorName is how the messages name a PEM on descriptor fd: the
// file's name when its opener gave it, else "descriptor N".
func DescriptorName(fd int, name string) string {
	if name != "" {
		return name
	}
	return "descriptor " + strconv.Itoa(fd)
}

// DescriptorOption parses the value of a key holder's -P option, "fd"
// or "fd:name": a descriptor number, and the name of the file open on it
// (setuidgid-chroot -o fd:path's path), used only to name it in
// messages. The error says why the value is bad, for internal/opt.
func DescriptorOption(v string, fd *int, name *string) error {
	n, rest, named := strings.Cut(v, ":")
	if err := opt.FD(0, fd)(n); err != nil {
		return err
	}
	if named && rest == "" {
		return errors.New("no file name after the colon")
	}
	*name = rest
	return nil
}

// Set is the certificates one process may serve: the first is the
// default, for a client that sends no server name or one that no other
// covers.
type Set []*tls.Certificate

// Dir loads a certificate directory: DefaultName first (required), then
// every other regular (symbolic links followed), non-hidden *.pem in
// file-name order.
func Dir(dir string) (Set, error) {
	def, err := File(filepath.Join(dir, DefaultName))
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, log.Temp(err, "read directory %s", dir)
	}
	names, err := f.Readdirnames(MaxFiles + 1)
	f.Close()
	if err != nil && err != io.EOF {
		return nil, log.Temp(err, "read directory %s", dir)
	}
	if len(names) > MaxFiles {
		return nil, log.Config(nil, "more than %d files in %s", MaxFiles, dir)
	}
	sort.Strings(names)
	s := Set{def}
	for _, n := range names {
		if n == DefaultName || !strings.HasSuffix(n, ".pem") || strings.HasPrefix(n, ".") {
			continue
		}
		path := filepath.Join(dir, n)
		st, err := os.Stat(path)
		if err != nil {
			return nil, log.Temp(err, "read certificate %s", path)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		c, err := File(path)
		if err != nil {
			return nil, err
		}
		s = append(s, c)
	}
	return s, nil
}

// Index returns the index of the certificate to serve for an SNI name:
// the first after the default whose leaf covers the name (its DNS names,
// wildcards as crypto/x509 allows, any case), else 0, the default. A name
// that is no host name matches nothing.
func (s Set) Index(name string) int {
	if name == "" {
		return 0
	}
	for i := 1; i < len(s); i++ {
		if s[i].Leaf != nil && s[i].Leaf.VerifyHostname(name) == nil {
			return i
		}
	}
	return 0
}

// Choose returns the certificate to serve for an SNI name (Index).
func (s Set) Choose(name string) *tls.Certificate { return s[s.Index(name)] }
