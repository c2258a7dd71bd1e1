package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"imap-tls/log"
	"imap-tls/stunnel-imap/keyproc"
)

// certSource yields the certificate for one handshake, from
// tls.Config.GetCertificate. This is the one seam through which the proxy
// gets its certificate: the PrivateKey of what it returns is any
// crypto.Signer, a key parsed from PEM here, or (keySource, -K) a signer
// that asks the key process, so that the proxy never holds the key.
type certSource interface {
	certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// staticSource serves one certificate (-p, -P), read when the process
// starts: the process lives for one connection, so a renewed file takes
// effect at the next connection.
type staticSource struct{ cert *tls.Certificate }

func (s staticSource) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

// dirSource serves certdir/NAME.pem for the server name the client asks
// for (SNI), and certdir/default.pem when it asks for none or for a name
// without a file. Every NAME.pem is read when the process starts, before
// the lock-down (which forbids opening files), and parsed only when a
// client asks for its name: the process lives for one connection, so a
// renewed file still takes effect at the next connection.
type dirSource struct {
	dir   string
	def   *tls.Certificate
	files map[string][]byte // lowercased NAME -> the PEM of NAME.pem
	l     *log.Logger
}

// maxDirFiles bounds what -d reads at start.
const maxDirFiles = 4096

// errBadName refuses a server name that could leave the directory.
var errBadName = errors.New("server name refused")

func openDirSource(dir string, l *log.Logger) (*dirSource, error) {
	def, err := readPEMFile(filepath.Join(dir, "default.pem"))
	if err != nil {
		return nil, err
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, log.Config(err, "unable to read directory %s", dir)
	}
	names, err := f.Readdirnames(maxDirFiles + 1)
	f.Close()
	if err != nil && err != io.EOF {
		return nil, log.Config(err, "unable to read directory %s", dir)
	}
	if len(names) > maxDirFiles {
		return nil, log.Config(nil, "more than %d files in %s", maxDirFiles, dir)
	}
	d := &dirSource{dir: dir, def: def, files: map[string][]byte{}, l: l}
	for _, n := range names {
		name, ok := strings.CutSuffix(n, ".pem")
		if !ok || name != strings.ToLower(name) || !cleanName(name) {
			continue // default.pem, hidden files, other files
		}
		path := filepath.Join(dir, n)
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, log.Config(err, "unable to read certificate %s", path)
		}
		d.files[name] = b
	}
	return d, nil
}

// certificate runs once per process (one connection, one handshake):
// nothing to cache.
func (d *dirSource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	if name == "" {
		return d.def, nil
	}
	if !cleanName(name) {
		d.l.Warning("client asked for server name %q: refused", name)
		return nil, errBadName
	}
	b, ok := d.files[name]
	if !ok {
		return d.def, nil
	}
	c, err := parsePEM(b)
	if err != nil {
		err = log.Config(err, "unable to load certificate %s", filepath.Join(d.dir, name+".pem"))
		d.l.Warning("%s", err)
		return nil, err
	}
	return c, nil
}

// cleanName accepts a server name as a file name only when it cannot name
// anything outside the directory nor a hidden file: no '/', no '\', no
// "..", no NUL or control byte, no leading dot, not "default".
func cleanName(name string) bool {
	if name == "" || len(name) > 253 || name[0] == '.' || name == "default" ||
		strings.Contains(name, "..") || strings.ContainsAny(name, "/\\") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= 0x20 || name[i] >= 0x7f {
			return false
		}
	}
	return true
}

func openCertSource(o *options, l *log.Logger) (certSource, error) {
	switch {
	case o.pemFile != "":
		c, err := readPEMFile(o.pemFile)
		if err != nil {
			return nil, err
		}
		return staticSource{c}, nil
	case o.pemFD >= 0:
		f := os.NewFile(uintptr(o.pemFD), "fd"+strconv.Itoa(o.pemFD))
		b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
		f.Close()
		if err != nil {
			return nil, log.Config(err, "unable to read certificate from descriptor %d", o.pemFD)
		}
		c, err := parsePEM(b)
		if err != nil {
			return nil, log.Config(err, "unable to load certificate from descriptor %d", o.pemFD)
		}
		return staticSource{c}, nil
	case o.certDir != "":
		return openDirSource(o.certDir, l)
	default:
		return openKeySource(o)
	}
}

const maxPEM = 1 << 20

func readPEMFile(path string) (*tls.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, log.Config(err, "unable to read certificate %s", path)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEM+1))
	if err != nil {
		return nil, log.Config(err, "unable to read certificate %s", path)
	}
	c, err := parsePEM(b)
	if err != nil {
		return nil, log.Config(err, "unable to load certificate %s", path)
	}
	return c, nil
}

// parsePEM reads a certificate chain and its private key from one PEM
// (the leaf first). The key is the crypto.Signer the handshake uses.
func parsePEM(b []byte) (*tls.Certificate, error) {
	if len(b) > maxPEM {
		return nil, errors.New("file too large")
	}
	c, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil, err
	}
	if time.Now().After(leaf.NotAfter) {
		return nil, errors.New("certificate has expired")
	}
	c.Leaf = leaf
	return &c, nil
}

// keySource (-K fd) gets each certificate from the key process on fd
// (package keyproc): the chain for the client's server name, and a
// crypto.Signer that asks the key process for the one signature a
// handshake needs. The private key never enters this process.
type keySource struct{ c *keyproc.Client }

func (k keySource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.c.GetCertificate(hello)
}

// ready waits for the key process's ready frame: a key process that
// could not load its key ends this one before a byte reaches the client.
// The session calls it (config.ready) while the IMAP server is starting,
// not here, so that the two start-ups overlap.
func (k keySource) ready() error { return k.c.Ready() }

func openKeySource(o *options) (certSource, error) {
	c, err := keyproc.FileClient(o.keyFD, o.handshake)
	if err != nil {
		return nil, log.Temp(err, "use descriptor %d for the key process", o.keyFD)
	}
	return keySource{c}, nil
}
