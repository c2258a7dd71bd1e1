// TLS behaviour of stunnel-imap through the real pipeline: ALPN (the
// ALPACA cross-protocol attack), a renewed certificate taking effect at
// the next connection, a bad certificate refused before any byte, and a
// broken set-up (missing files, a wrong flag, a dead backend) ending the
// connection cleanly.
package tests

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestE2EALPN: a client that offers only another protocol (http/1.1) is
// refused during the handshake; one offering imap, or no ALPN, is served.
func TestE2EALPN(t *testing.T) {
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imaps", Backend: []string{"sh", "-c", harness.FakeStarttlsBackend}})
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
			cfg := harness.ClientTLS(t, p.CA, "localhost")
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
	p.WaitLog(t, `stunnel-imap: warning: .*ALPN`, 15*time.Second)
	p.WaitLog(t, `stunnel-imap: info: .* end=alpn-refused`, 15*time.Second)
}

// TestE2ECertRenewal: the PEM file is opened for every connection, so a
// certificate replaced on disk is served from the next connection on,
// with no restart.
func TestE2ECertRenewal(t *testing.T) {
	dir := t.TempDir()
	pemPath, ca1 := harness.WriteCert(t, dir, "localhost")
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imaps", Backend: []string{"sh", "-c", harness.FakeStarttlsBackend}, PEM: pemPath})
	old := filepath.Join(t.TempDir(), "old-ca.pem")
	b, _ := os.ReadFile(ca1)
	os.WriteFile(old, b, 0o644)
	// fingerprint connects trusting ca and returns the served
	// certificate's signature
	fingerprint := func(ca string) (string, error) {
		c, err := tls.DialWithDialer(dialer(), "tcp", p.Addr, harness.ClientTLS(t, ca, "localhost"))
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
	_, ca2 := harness.WriteCert(t, dir, "localhost") // renewal: new key, new CA
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
// reported (a fatal line) before the server's greeting reaches the
// client; a STARTTLS client reads * BYE [UNAVAILABLE] in its place, an
// implicit-TLS client only the end of the connection (no handshake is
// possible). The bad file replaces a good one once the service runs
// (imap-tls-server refuses a missing or empty one at start): the key
// process, which reads it for each connection, refuses it, and the
// proxy ends.
func TestE2EBadCert(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"garbage", "this is not a certificate\n"},
		{"empty", ""},
		{"certificate without key", "cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pemPath, _ := harness.WriteCert(t, dir, "localhost")
			good, err := os.ReadFile(pemPath)
			if err != nil {
				t.Fatal(err)
			}
			content := tc.content
			if content == "cert" {
				good, _ := harness.WriteCert(t, t.TempDir(), "localhost")
				b, _ := os.ReadFile(good)
				content = string(b[:strings.Index(string(b), "-----BEGIN PRIVATE KEY-----")])
			}
			for _, mode := range []string{"imap", "imaps"} {
				if err := os.WriteFile(pemPath, good, 0o400); err != nil {
					t.Fatal(err)
				}
				p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: []string{"sh", "-c", harness.FakeStarttlsBackend}, PEM: pemPath, Verbose: true})
				if err := os.WriteFile(pemPath, []byte(content), 0o400); err != nil {
					t.Fatal(err)
				}
				c := harness.DialIMAP(t, p.Addr)
				rest, _ := c.Rest()
				c.Close()
				want := ""
				if mode == "imap" {
					want = "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"
				}
				if rest != want {
					t.Errorf("mode %q: the client got %q from a proxy without a usable certificate, want %q", mode, rest, want)
				}
				// the key process refuses the file (exit 100), the
				// proxy ends for want of it
				p.WaitLog(t, `^stunnel-imap-key: fatal: unable to load `, 15*time.Second)
				p.WaitLog(t, `^stunnel-imap: fatal: unable to use the key holder: `, 15*time.Second)
				// tcpserver -v: "end PID status 28416" is the proxy's exit code 111
				p.WaitLog(t, `tcpserver: end [0-9]+ status 28416$`, 15*time.Second)
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

// TestE2EBrokenSetup: a pipeline that cannot serve (the PEM file
// removed after imap-tls-server checked it at start; the backend
// missing; the backend gone before its greeting) tells the client
// `* BYE [UNAVAILABLE]` in place of the greeting, never a bare end of
// file, says why in the log (the program that failed, and the proxy's
// reason=), exits with that program's status, and leaves no process
// behind.
//
// A missing backend, /nonexistent/imapd, is ambiguous: a program
// mistyped, or a unix socket whose server is not up yet. It is read as a
// socket (the proxy's setuidgid-chroot -c 3:ADDRESS connects it for each
// connection, as root before the drop), so that a server that comes up
// later needs no restart; the start's warning names both readings,
// setuidgid-chroot's warning and the proxy's line say what failed, and
// the client is told.
func TestE2EBrokenSetup(t *testing.T) {
	fake := []string{"sh", "-c", harness.FakeStarttlsBackend}
	const (
		noPEM = `^setuidgid-chroot: fatal: unable to open /\S+/server\.pem: file does not exist$`
		gone  = `^stunnel-imap: info: .* tls=none .* in=0 out=62 .* reason="server closed the connection before its greeting" end=server-eof$`
		bye   = "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"
	)
	for _, tc := range []struct {
		name   string
		o      harness.PipelineOpts
		lines  []string // stderr lines that must appear (regular expressions)
		status int      // tcpserver -v's raw wait status of the connection
	}{
		{"pem removed after the start", harness.PipelineOpts{Backend: fake, RemovePEM: true},
			[]string{noPEM, `^stunnel-imap: info: .* tls=none .* out=62 .* end=key-process-failed$`, `^stunnel-imap: fatal: unable to use the key holder: `}, 111 << 8},
		{"missing backend", harness.PipelineOpts{Backend: []string{"/nonexistent/imapd"}},
			[]string{
				`^imap-tls-server: warning: server socket /nonexistent/imapd does not exist yet: is the server up\? \(every connection fails until it is\); if /nonexistent/imapd is meant as a program: no such file$`,
				`^setuidgid-chroot: warning: unable to connect to /nonexistent/imapd: file does not exist; remote=127\.0\.0\.1:\d+$`,
				`^stunnel-imap: info: .* tls=none .* in=0 out=62 .* reason="unable to connect to /nonexistent/imapd: file does not exist" end=server-error$`,
			}, 0},
		{"backend gone before its greeting", harness.PipelineOpts{Backend: []string{"sh", "-c", "exit 0"}},
			[]string{gone}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Mode, tc.o.Verbose = "imap", true
			p := harness.StartPipeline(t, tc.o)
			c := harness.DialIMAP(t, p.Addr)
			rest := c.RestClosed() // hang guard: DialIMAP's 30 s deadline
			if rest != bye {
				t.Errorf("the client got %q from a pipeline that cannot serve, want %q", rest, bye)
			}
			for _, l := range tc.lines {
				p.WaitLog(t, l, 15*time.Second)
			}
			p.WaitLog(t, `^tcpserver: end [0-9]+ status `+strconv.Itoa(tc.status)+`$`, 15*time.Second)
			p.WaitNoChildren(t, 15*time.Second)
			if strings.Contains(p.Stderr(), "panic") {
				t.Errorf("a program panicked:\n%s", p.Stderr())
			}
		})
	}
}
