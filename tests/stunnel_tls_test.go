// TLS behaviour of stunnel-imap through the real pipeline: ALPN (the
// ALPACA cross-protocol attack), a renewed certificate taking effect at
// the next connection, and a bad certificate refused before any byte.
package tests

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EALPN: a client that offers only another protocol (http/1.1) is
// refused during the handshake; one offering imap, or no ALPN, is served.
func TestE2EALPN(t *testing.T) {
	p := startPipeline(t, pipelineOpts{Backend: []string{"sh", "-c", fakeStarttlsBackend}})
	for _, tc := range []struct {
		name   string
		protos []string
		ok     bool
	}{
		{"none", nil, true},
		{"imap", []string{"imap"}, true},
		{"imap and http", []string{"http/1.1", "imap"}, true},
		{"http only", []string{"http/1.1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientTLS(t, p.CA, "localhost")
			cfg.NextProtos = tc.protos
			c, err := tls.DialWithDialer(dialer(), "tcp", p.Addr, cfg)
			if !tc.ok {
				if err == nil {
					c.Close()
					t.Fatalf("a client offering only %v was served", tc.protos)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake offering %v: %v", tc.protos, err)
			}
			defer c.Close()
			if tc.protos != nil && c.ConnectionState().NegotiatedProtocol != "imap" {
				t.Errorf("negotiated %q, want imap", c.ConnectionState().NegotiatedProtocol)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			if !strings.HasPrefix(string(buf[:n]), "* OK") {
				t.Errorf("greeting %q", buf[:n])
			}
		})
	}
	p.waitLog(t, `stunnel-imap: warning: .*ALPN`, 15*time.Second)
	p.waitLog(t, `stunnel-imap: info: .* end=alpn-refused`, 15*time.Second)
}

// TestE2ECertRenewal: the PEM file is opened for every connection, so a
// certificate replaced on disk is served from the next connection on,
// with no restart.
func TestE2ECertRenewal(t *testing.T) {
	dir := t.TempDir()
	pemPath, ca1 := writeCert(t, dir, "localhost")
	p := startPipeline(t, pipelineOpts{Backend: []string{"sh", "-c", fakeStarttlsBackend}, PEM: pemPath})
	old := filepath.Join(t.TempDir(), "old-ca.pem")
	b, _ := os.ReadFile(ca1)
	os.WriteFile(old, b, 0o644)
	// fingerprint connects trusting ca and returns the served
	// certificate's signature
	fingerprint := func(ca string) (string, error) {
		c, err := tls.DialWithDialer(dialer(), "tcp", p.Addr, clientTLS(t, ca, "localhost"))
		if err != nil {
			return "", err
		}
		defer c.Close()
		return string(c.ConnectionState().PeerCertificates[0].Signature), nil
	}
	first, err := fingerprint(old)
	if err != nil {
		t.Fatalf("first connection: %v", err)
	}
	_, ca2 := writeCert(t, dir, "localhost") // renewal: new key, new CA
	second, err := fingerprint(ca2)
	if err != nil {
		t.Fatalf("the renewed certificate is not served: %v\n%s", err, p.Stderr())
	}
	if first == second {
		t.Errorf("the same certificate after renewal")
	}
	if _, err := fingerprint(old); err == nil {
		t.Errorf("the old certificate is still served after renewal")
	}
}

// TestE2EBadCert: a PEM that holds no usable certificate and key is
// reported (a fatal line) before any byte reaches the client; the
// client sees only the end of the connection.
func TestE2EBadCert(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"garbage", "this is not a certificate\n"},
		{"empty", ""},
		{"certificate without key", "cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pemPath := filepath.Join(dir, "bad.pem")
			content := tc.content
			if content == "cert" {
				good, _ := writeCert(t, t.TempDir(), "localhost")
				b, _ := os.ReadFile(good)
				content = string(b[:strings.Index(string(b), "-----BEGIN PRIVATE KEY-----")])
			}
			if err := os.WriteFile(pemPath, []byte(content), 0o400); err != nil {
				t.Fatal(err)
			}
			for _, mode := range []string{"imap", ""} {
				p := startPipeline(t, pipelineOpts{Mode: mode, Backend: []string{"sh", "-c", fakeStarttlsBackend}, PEM: pemPath, Verbose: true})
				c := dialIMAP(t, p.Addr)
				rest, _ := c.Rest()
				c.Close()
				if rest != "" {
					t.Errorf("mode %q: the client got %q from a proxy without a usable certificate", mode, rest)
				}
				p.waitLog(t, `stunnel-imap: fatal: `, 15*time.Second)
				// tcpserver -v: "end PID status 25600" is exit code 100
				p.waitLog(t, `tcpserver: end [0-9]+ status 25600$`, 15*time.Second)
				// no PEM content in the log (a type name in an error is fine)
				for _, l := range strings.Split(content, "\n") {
					if len(l) > 16 && strings.Contains(p.Stderr(), l) {
						t.Errorf("the PEM file's line %q is in the log:\n%s", l, p.Stderr())
					}
				}
			}
		})
	}
}

// dialer is a net.Dialer with a hang guard.
func dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, Deadline: time.Now().Add(30 * time.Second)}
}
