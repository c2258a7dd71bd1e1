package tests

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// TestServiceCertPolicy (issue 13), through a service imap-tls-conf made,
// under svscan: imap-tls-check's report and status; an expired
// certificate refused at start (the service does not listen, the log
// says why) and an encrypted key likewise; a certificate that expires
// soon warned about at start and on each connection; a client that does
// not trust the certificate logged as rejecting it, with the SNI; a
// failing server side leaving only lines in the suite's grammar; the
// certbot deploy hook replacing the certificate while connections are
// served.
func TestServiceCertPolicy(t *testing.T) {
	tr := startServices(t, serviceSpec{Name: "imap", Mode: "imap"})
	s := tr.services[0]
	check := func(wantCode int, want ...string) string {
		t.Helper()
		out, err := exec.Command(bin(t, "imap-tls-check"), s.Dir).Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != wantCode {
			t.Errorf("imap-tls-check: exit %d, want %d:\n%s", code, wantCode, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("imap-tls-check lacks %q:\n%s", w, out)
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !regexp.MustCompile(`^(ok|warning|error): \S+: `).MatchString(l) {
				t.Errorf("imap-tls-check line not in its grammar: %q", l)
			}
		}
		return string(out)
	}
	out := check(0, "ok: env/MODE: imap: IMAP, STARTTLS required", "ok: ssl/stunnel.pem: root's, mode 0400",
		"ok: ssl/stunnel.pem: the private key matches certificate 1", "ok: jail/: empty", "ok: env/IMAPD: started and greeted: * OK")
	t.Logf("imap-tls-check of a good service:\n%s", out)

	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	install := func(data []byte) {
		t.Helper()
		os.Remove(pem)
		if err := os.WriteFile(pem, data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	logHas := func(re string) {
		t.Helper()
		rx := regexp.MustCompile(re)
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, l := range s.logLines(t) {
				if rx.MatchString(l) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %s:\n%s", re, strings.Join(s.logLines(t), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Expired: refused at start; the port stays closed; check says why.
	expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-72 * time.Hour)})
	install(expired.PEM)
	s.svc(t, "-t")
	s.waitListening(t, s.Port, false)
	date := expired.Leaf.NotAfter.UTC().Format(time.DateOnly)
	logHas(`stunnel-imap-key: fatal: certificate \./ssl/stunnel\.pem expired on ` + date + `$`)
	logHas(`imap-tls-server: fatal: stunnel-imap-key refuses the certificate: not starting$`)
	check(100, "error: ssl/stunnel.pem: certificate ssl/stunnel.pem expired on "+date)

	// An encrypted key: the same.
	good := testkit.NewCert(t, testkit.CertOptions{})
	enc := append(append([]byte{}, good.ChainPEM...), []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")...)
	install(enc)
	logHas(`stunnel-imap-key: fatal: private key in \./ssl/stunnel\.pem is encrypted: store it unencrypted \(root-only, 0400\)$`)
	check(100, "error: ssl/stunnel.pem: private key in ssl/stunnel.pem is encrypted")

	// Expiring in 5 days: up, a warning at start and one per connection.
	soon := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	install(soon.PEM)
	s.waitListening(t, s.Port, true)
	sdate := soon.Leaf.NotAfter.UTC().Format(time.DateOnly)
	logHas(`stunnel-imap-key: warning: \./ssl/stunnel\.pem: certificate for localhost expires on ` + sdate + `, in 5 days: renew it`)
	check(0, "warning: ssl/stunnel.pem: certificate for localhost expires on "+sdate)
	soonCA := filepath.Join(t.TempDir(), "soon-ca.crt")
	os.WriteFile(soonCA, soon.CAPEM, 0o644)
	before := s.connLines(t)
	s.session(t, soonCA)
	s.waitConnLines(t, before+1)
	logHas(`stunnel-imap: warning: certificate for localhost expires on ` + sdate + `, in 5 days: renew it \(CERT_WARN_DAYS=14\)`)
	logHas(`stunnel-imap: info: .* warnings=1 .*end=client-eof$`)

	// A client that trusts another CA: "client rejected the certificate",
	// with the expiry and the SNI.
	c := dialIMAP(t, s.Addr())
	c.Line()
	c.Send("s STARTTLS\r\n")
	c.Line()
	tc := tls.Client(c.conn, clientTLS(t, tr.CA, "localhost"))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a client that trusts another CA completed the handshake")
	}
	c.Close()
	logHas(`stunnel-imap: warning: client rejected the certificate \(expired/untrusted/wrong name\?\): remote error: tls: bad certificate; served the certificate for localhost,127\.0\.0\.1, valid until ` + sdate + `; sni=localhost`)

	// One grammar: the server side fails (no such socket); socat says
	// nothing of its own, every line of the log is the suite's.
	s.writeEnv(t, "IMAPD", "socat -lf /dev/null -t 5 STDIO,shut-down UNIX-CONNECT:"+filepath.Join(t.TempDir(), "nosuch.sock"))
	install(good.PEM)
	s.restart(t)
	before = s.connLines(t)
	for i := 0; i < 3; i++ {
		c := dialIMAP(t, s.Addr())
		c.RestClosed()
		c.Close()
	}
	s.waitConnLines(t, before+3)
	logHas(`stunnel-imap: info: .* end=server-eof$`)
	grammar := regexp.MustCompile(`^@[0-9a-f]{24} [a-z0-9-]+: (info|warning|fatal|usage): `)
	for _, l := range s.logLines(t) {
		if !grammar.MatchString(l) {
			t.Errorf("a line in another grammar: %q", l)
		}
	}
}
