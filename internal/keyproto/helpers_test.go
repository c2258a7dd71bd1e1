package keyproto

import (
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

	"imap-tls/internal/testkit"

	"golang.org/x/sys/unix"
)

// testKey is a generated key with its self-signed certificate.
type testKey struct {
	kind string
	priv crypto.Signer
	der  []byte
	pem  []byte // chain then key, as stunnel-imap reads it
	cert *testkit.Cert
}

var (
	keyMu    sync.Mutex
	keyCache = map[string]*testKey{}
)

// genKey returns a self-signed key of kind rsa, ecdsa or ed25519
// (testkit.NewCert) whose certificate covers names; generated once per
// (kind, names) for the whole run.
// testTimeout bounds each exchange with the key process in the tests.
const testTimeout = 10 * time.Second

func genKey(t testing.TB, kind string, names ...string) *testKey {
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
	k := &testKey{kind: kind, priv: c.Key, der: c.Leaf.Raw, pem: c.PEM, cert: c}
	keyCache[id] = k
	return k
}

func (k *testKey) pool(t testing.TB) *x509.CertPool { return k.cert.Pool() }

func (k *testKey) keys(t testing.TB) Keys {
	key, err := ParsePEM(k.pem)
	if err != nil {
		t.Fatal(err)
	}
	return Keys{key}
}

// socketFiles returns the two ends of a unix stream socketpair.
func socketFiles(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "sp0"), os.NewFile(uintptr(fds[1]), "sp1")
}

func netFileConn(f *os.File) (net.Conn, error) { return net.FileConn(f) }

// socketConns returns the two ends of a socketpair as net.Conns.
func socketConns(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	a, b := socketFiles(t)
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

// handshake runs a TLS server using c's certificate against a client
// trusting pool, over a socketpair, both with a hang guard. It returns
// the client's state and each side's error.
func handshake(t testing.TB, c *Client, pool *x509.CertPool, sni string, ccfg *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	sc, cc := socketConns(t)
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
			// Prove the session works: echo one line.
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

// replyTypes reads the frames Serve wrote to out, to its end, and returns
// their types in order; a frame that does not decode fails the test.
func replyTypes(t testing.TB, out io.Reader) string {
	t.Helper()
	var buf [MaxFrame]byte
	var types []byte
	for {
		rep, err := ReadReply(out, &buf)
		if err == io.EOF {
			return string(types)
		}
		if err != nil {
			t.Fatalf("Serve wrote a bad frame: %v", err)
		}
		types = append(types, rep.Type)
	}
}
