// Package keyprototest holds what the tests of both ends of the key
// protocol share (internal/keyproto, internal/keyholder,
// stunnel-imap-key, stunnel-imap-signer): generated keys, socket pairs,
// a TLS handshake whose certificate comes through a keyproto.Client,
// and raw frames, written without the encoder's checks so that a test
// can send what a compromised peer would. Tests only: no program
// imports it (internal/layout's test pins it).
package keyprototest

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/keyproto"
	"imap-tls/internal/testkit"
)

// Timeout bounds each exchange with a key holder in the tests: a hang
// guard.
const Timeout = 10 * time.Second

// Key is a generated key with its self-signed certificate.
type Key struct {
	Kind string
	Priv crypto.Signer
	DER  []byte // the leaf
	PEM  []byte // chain then key, as the loader reads it
	Cert *testkit.Cert
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*Key{}
)

// GenKey returns a self-signed key of kind rsa, ecdsa or ed25519
// (testkit.NewCert) whose certificate covers names (default
// imap.example.test); generated once per (kind, names) for the whole
// run.
func GenKey(t testing.TB, kind string, names ...string) *Key {
	t.Helper()
	if len(names) == 0 {
		names = []string{"imap.example.test"}
	}
	id := kind + " " + strings.Join(names, " ")
	keyMu.Lock()
	defer keyMu.Unlock()
	if k := keyCache[id]; k != nil {
		return k
	}
	c := testkit.NewCert(t, testkit.CertOptions{Names: names, Key: map[string]string{
		"rsa": "rsa2048", "ecdsa": "p256", "ed25519": "ed25519"}[kind], SelfSigned: true})
	k := &Key{Kind: kind, Priv: c.Key, DER: c.Leaf.Raw, PEM: c.PEM, Cert: c}
	keyCache[id] = k
	return k
}

// Pool is a pool that trusts k.
func (k *Key) Pool() *x509.CertPool { return k.Cert.Pool() }

// SocketFiles returns the two ends of a unix stream socketpair.
func SocketFiles(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "sp0"), os.NewFile(uintptr(fds[1]), "sp1")
}

// SocketConns returns the two ends of a socketpair as net.Conns, closed
// when the test ends.
func SocketConns(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	a, b := SocketFiles(t)
	defer a.Close()
	defer b.Close()
	ca, err := net.FileConn(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := net.FileConn(b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

// Handshake runs a TLS server using c's certificate against a client
// trusting pool, over a socketpair, both with a hang guard, and proves
// the session with one echoed line. It returns the client's state and
// each side's error.
func Handshake(t testing.TB, c *keyproto.Client, pool *x509.CertPool, sni string, ccfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	sc, cc := SocketConns(t)
	deadline := time.Now().Add(30 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	srv := tls.Server(sc, &tls.Config{GetCertificate: c.GetCertificate})
	if ccfg == nil {
		ccfg = &tls.Config{}
	}
	ccfg.RootCAs = pool
	ccfg.ServerName = sni
	cli := tls.Client(cc, ccfg)
	errc := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err == nil {
			var b [5]byte
			if _, err = srv.Read(b[:]); err == nil {
				_, err = srv.Write(b[:])
			}
		}
		if err != nil {
			sc.Close() // let the client see the failure at once
		}
		errc <- err
	}()
	cerr := cli.Handshake()
	if cerr == nil {
		var b [5]byte
		if _, cerr = cli.Write([]byte("ping\n")); cerr == nil {
			if _, cerr = cli.Read(b[:]); cerr == nil && string(b[:]) != "ping\n" {
				t.Errorf("echo: got %q", b)
			}
		}
	}
	if cerr != nil {
		cc.Close()
	}
	serr := <-errc
	return cli.ConnectionState(), serr, cerr
}

// Frame is a raw frame of type typ around payload p, whatever its
// length: the test's own encoder, independent of keyproto's.
func Frame(typ byte, p ...byte) []byte {
	return append([]byte{keyproto.Version, typ, byte(len(p) >> 8), byte(len(p))}, p...)
}

// Cat joins frames into a fresh slice: a table's cases share none.
func Cat(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

// SignFrame is a sign request for hash h with flags and an n-byte
// digest of zeros.
func SignFrame(h crypto.Hash, flags byte, n int) []byte {
	return Frame(keyproto.TypeSign, append([]byte{byte(h), flags}, make([]byte, n)...)...)
}

// ReplyTypes reads the frames a key holder wrote to out, to its end,
// and returns their types in order; a frame that does not decode fails
// the test.
func ReplyTypes(t testing.TB, out io.Reader) string {
	t.Helper()
	var buf [keyproto.MaxFrame]byte
	var types []byte
	for {
		rep, err := keyproto.ReadReply(out, &buf)
		if err == io.EOF {
			return string(types)
		}
		if err != nil {
			t.Fatalf("the key holder wrote a bad frame: %v", err)
		}
		types = append(types, rep.Type)
	}
}
