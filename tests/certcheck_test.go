package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"

	"imap-tls/tests/harness"
)

// TestServiceCertPolicy (issue 13), through a service imap-tls-conf made,
// under svscan with its signer: imap-tls-check's report and status; an
// expired certificate refused at start (the service stays down, the log
// says why, the signer refuses it too; and again with a key process per
// connection) and an encrypted key likewise; a certificate that expires
// soon warned about at start and on each connection; a client that does
// not trust the certificate logged as rejecting it, with the SNI; TLS
// 1.1-only and RSA-key-exchange-only openssl clients logged with names;
// the certbot deploy hook replacing the certificate while connections
// are served (signer and key process), and refusing an expired one;
// Dovecot behind its PROXY listener checked and served; a failing
// server side leaving only lines in the suite's grammar.
func TestServiceCertPolicy(t *testing.T) {
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "imap", Mode: "imap"})
	s := tr.Services[0]
	check := func(wantCode int, want ...string) string {
		t.Helper()
		out, err := exec.Command(harness.Bin(t, "imap-tls-check"), s.Dir).Output()
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

	// The signer (env/SIGNER's default): its own service, which
	// StartServices links beside; the main service checks the signer's
	// file at start too (imap-tls-server -C).
	signer := &harness.Service{Dir: filepath.Join(s.Dir, "signer")}
	signerUp := func() { // up for a second: listening on its socket
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := exec.Command("svstat", signer.Dir).CombinedOutput()
			if m := regexp.MustCompile(`: up \(pid \d+\) (\d+) seconds`).FindSubmatch(out); m != nil && string(m[1]) != "0" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("signer not up after 30 s: %s; log:\n%s", out, strings.Join(signer.LogLines(t), "\n"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	signerUp()
	s.Session(t, tr.CA)

	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	install := func(data []byte) {
		t.Helper()
		os.Remove(pem)
		if err := os.WriteFile(pem, data, 0o400); err != nil {
			t.Fatal(err)
		}
	}
	logOf := func(sv *harness.Service, re string) {
		t.Helper()
		rx := regexp.MustCompile(re)
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, l := range sv.LogLines(t) {
				if rx.MatchString(l) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/log/main/current lacks %s:\n%s", sv.Dir, re, strings.Join(sv.LogLines(t), "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	logHas := func(re string) { t.Helper(); logOf(s, re) }
	// refused: the service restarted with the file in place stays down,
	// saying why, each time supervise tries again. (The port alone
	// proves nothing: it is closed for a moment on every restart.)
	refused := func(lines ...string) {
		t.Helper()
		n := len(s.LogLines(t))
		s.Svc(t, "-t")
		deadline := time.Now().Add(20 * time.Second)
		for {
			if l := s.LogLines(t); len(l) > n && regexp.MustCompile(`imap-tls-server: fatal: (certificate|private key in) \./ssl/stunnel\.pem `).MatchString(l[len(l)-1]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not refused after 20 s:\n%s", strings.Join(s.LogLines(t)[n:], "\n"))
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, re := range lines {
			logHas(re)
		}
		time.Sleep(1500 * time.Millisecond) // supervise tries again in a second
		if harness.Listening(s.Port) {
			t.Fatalf("listening on %d with a refused certificate:\n%s", s.Port, strings.Join(s.LogLines(t), "\n"))
		}
	}

	// Expired: refused at start; the port stays closed; check says why.
	// The signer refuses it too.
	expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-72 * time.Hour)})
	install(expired.PEM)
	date := expired.Leaf.NotAfter.UTC().Format(time.DateOnly)
	refused(`imap-tls-server: fatal: certificate \./ssl/stunnel\.pem expired on ` + date + `$`)
	logOf(signer, ` run: fatal: unable to start the signer: certificate \.\./ssl/stunnel\.pem expired on `+date+`: down until the file is fixed and svc -u `+regexp.QuoteMeta(signer.Dir)+`$`)
	check(100, "error: ssl/stunnel.pem: certificate ssl/stunnel.pem expired on "+date)

	// An encrypted key: the same.
	good := testkit.NewCert(t, testkit.CertOptions{})
	enc := append(append([]byte{}, good.ChainPEM...), []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")...)
	install(enc)
	refused()
	logHas(`imap-tls-server: fatal: private key in \./ssl/stunnel\.pem is encrypted: store it unencrypted \(root-only, 0400\)$`)
	check(100, "error: ssl/stunnel.pem: private key in ssl/stunnel.pem is encrypted")

	// Expiring in 5 days: up, a warning at start and one per connection.
	soon := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	install(soon.PEM)
	s.WaitListening(t, s.Port, true)
	signer.Svc(t, "-u") // down since its run file refused the expired one
	signerUp()
	sdate := soon.Leaf.NotAfter.UTC().Format(time.DateOnly)
	logHas(`imap-tls-server: warning: \./ssl/stunnel\.pem: certificate for localhost expires on ` + sdate + `, in 5 days: renew it`)
	check(0, "warning: ssl/stunnel.pem: certificate for localhost expires on "+sdate)
	soonCA := filepath.Join(t.TempDir(), "soon-ca.crt")
	os.WriteFile(soonCA, soon.CAPEM, 0o644)
	before := s.ConnLines(t)
	s.Session(t, soonCA)
	s.WaitConnLines(t, before+1)
	logHas(`stunnel-imap: warning: certificate for localhost expires on ` + sdate + `, in 5 days: renew it \(CERT_WARN_DAYS=14\)`)
	logHas(`stunnel-imap: info: .* warnings=1 .*end=(client|server)-eof$`) // LOGOUT: who closes first varies

	// A client that trusts another CA: "client rejected the certificate",
	// with the expiry and the SNI.
	c := harness.DialIMAP(t, s.Addr())
	c.Line()
	c.Send("s STARTTLS\r\n")
	c.Line()
	tc := tls.Client(c.Conn, harness.ClientTLS(t, tr.CA, "localhost"))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatal("a client that trusts another CA completed the handshake")
	}
	c.Close()
	logHas(`stunnel-imap: warning: client rejected the certificate \(expired/untrusted/wrong name\?\): remote error: tls: bad certificate; served the certificate for localhost,127\.0\.0\.1, valid until ` + sdate + `; sni=localhost`)

	// Real clients the server cannot serve (openssl s_client, STARTTLS):
	// TLS 1.1 only, and RSA key exchange only: the versions and the
	// suites they offered by name, not number.
	harness.Need(t, "openssl")
	sclient := func(args ...string) {
		t.Helper()
		cmd := exec.Command("openssl", append([]string{"s_client", "-starttls", "imap", "-connect", s.Addr(), "-servername", "localhost"}, args...)...)
		cmd.Stdin = strings.NewReader("")
		cmd.WaitDelay = time.Second
		done := make(chan struct{})
		go func() { cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("openssl s_client %v did not end", args)
		}
	}
	sclient("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
	logHas(`stunnel-imap: warning: unable to complete tls handshake: tls: client offered only unsupported versions: TLS 1\.1(, |; )`)
	sclient("-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384")
	logHas(`stunnel-imap: warning: unable to complete tls handshake: tls: no cipher suite supported by both client and server; client offered: TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_GCM_SHA384(, |; )`)
	for _, l := range s.LogLines(t) {
		if strings.Contains(l, "unable to complete tls handshake") && regexp.MustCompile(`\[[0-9a-f ]+\]`).MatchString(l) {
			t.Errorf("numbers where names belong: %q", l)
		}
	}

	// The deploy hook, with the signer (a replaced file: the signer
	// drains and supervise starts it again with the new one), then with
	// a key process per connection (env/SIGNER empty: each connection
	// opens the file): certificates replaced while clients connect
	// without pause; every handshake succeeds with the old or the new
	// one, never a half-written file; a refused one changes nothing.
	deployHook(t, s, good, signerUp)
	s.WriteEnv(t, "SIGNER", "")
	s.Restart(t)
	deployHook(t, s, good, func() {})
	// Without the signer the key process is the path: refused the same.
	install(expired.PEM)
	refused()

	// Dovecot behind PROXY (an inet_listener with haproxy = yes, as
	// imap-tls-conf's default server is): imap-tls-check sends a header
	// first, as the proxy will, and says the listener took it; without
	// the header Dovecot waits for one, and the check says what to look
	// at. The service serves through it (-H).
	install(good.PEM)
	s.WriteEnv(t, "IMAPD", strings.Join(tr.Dovecot.HAProxyCmd(), " "))
	s.WriteEnv(t, "PROXYHEADER", "yes")
	check(0, "ok: env/IMAPD: greeted after a PROXY v2 header (env/PROXYHEADER yes): * OK")
	s.WriteEnv(t, "PROXYHEADER", "")
	if out, err := exec.Command(harness.Bin(t, "imap-tls-check"), "-t", "2", s.Dir).Output(); err == nil || !strings.Contains(string(out), "error: env/IMAPD: sh sent no greeting within 2s") {
		t.Errorf("imap-tls-check, a PROXY listener and no header: %v:\n%s", err, out)
	}
	s.WriteEnv(t, "PROXYHEADER", "yes")
	s.Restart(t)
	goodCA := filepath.Join(t.TempDir(), "good-ca.crt")
	os.WriteFile(goodCA, good.CAPEM, 0o644)
	s.Session(t, goodCA)
	harness.WaitDovecotLog(t, tr.Dovecot, `imap-login: Info: Login: user=<alice>, .*rip=127\.0\.0\.1, .*secured`)

	// One grammar: the server side fails (no such socket); socat says
	// nothing of its own, every line of the log is the suite's.
	s.WriteEnv(t, "IMAPD", "socat -lf /dev/null -t 5 STDIO,shut-down UNIX-CONNECT:"+filepath.Join(t.TempDir(), "nosuch.sock"))
	install(good.PEM)
	s.Restart(t)
	before = s.ConnLines(t)
	for i := 0; i < 3; i++ {
		c := harness.DialIMAP(t, s.Addr())
		c.RestClosed()
		c.Close()
	}
	s.WaitConnLines(t, before+3)
	logHas(`stunnel-imap: info: .* end=server-eof$`)
	grammar := regexp.MustCompile(`^@[0-9a-f]{24} [a-z0-9-]+: (info|warning|fatal|usage): `)
	for _, sv := range []*harness.Service{s, signer} {
		for _, l := range sv.LogLines(t) {
			if !grammar.MatchString(l) {
				t.Errorf("%s: a line in another grammar: %q", sv.Dir, l)
			}
		}
	}
}

// deployHook runs service/certbot-deploy-hook on s four times,
// alternating two valid certificates (first), while four clients connect
// without pause (STARTTLS, CAPABILITY, LOGOUT), trusting both CAs: every
// handshake must succeed and serve one of the two leaves, whole; after
// each run the file is the new chain and key, root's, 0400, and a fresh
// connection soon serves it (ready: the key side took it). Then an
// expired certificate: exit 100, the file byte for byte as it was, no
// temporary file left.
func deployHook(t *testing.T, s *harness.Service, first *testkit.Cert, ready func()) {
	t.Helper()
	hook, err := filepath.Abs(filepath.Join("..", "service", "certbot-deploy-hook"))
	if err != nil {
		t.Fatal(err)
	}
	second := testkit.NewCert(t, testkit.CertOptions{})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, append(append([]byte{}, first.CAPEM...), second.CAPEM...), 0o644)
	cfg := harness.ClientTLS(t, ca, "localhost")
	lineage := func(c *testkit.Cert) string {
		d, err := os.MkdirTemp(dir, "live")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "fullchain.pem"), c.ChainPEM, 0o644)
		os.WriteFile(filepath.Join(d, "privkey.pem"), c.KeyPEM, 0o600)
		return d
	}
	runHook := func(c *testkit.Cert) (int, string) {
		cmd := exec.Command("sh", hook, s.Dir)
		cmd.Env = append(os.Environ(), "RENEWED_LINEAGE="+lineage(c))
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, string(out)
	}
	// served is the serial of the leaf a fresh connection gets, or an error.
	served := func() (string, error) {
		conn, err := net.DialTimeout("tcp", s.Addr(), 10*time.Second)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		c := harness.NewIMAPClient(t, conn)
		if g, err := c.Reader.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
			return "", fmt.Errorf("greeting %q: %v", g, err)
		}
		if _, tagged := c.CmdNoFatal("a", "STARTTLS"); !strings.HasPrefix(tagged, "a OK") {
			return "", fmt.Errorf("STARTTLS: %s", tagged)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return "", fmt.Errorf("handshake: %v", err)
		}
		c.Conn, c.Reader = tc, bufio.NewReader(tc)
		if _, tagged := c.CmdNoFatal("b", "CAPABILITY"); !strings.HasPrefix(tagged, "b OK") {
			return "", fmt.Errorf("CAPABILITY: %s", tagged)
		}
		c.CmdNoFatal("c", "LOGOUT")
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	// Start from first.
	if code, out := runHook(first); code != 0 {
		t.Fatalf("certbot-deploy-hook: exit %d: %s", code, out)
	}
	ready()
	waitServed := func(c *testkit.Cert) {
		t.Helper()
		want := c.Leaf.SerialNumber.String()
		deadline := time.Now().Add(20 * time.Second)
		for {
			got, err := served()
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new certificate not served after 20 s: %s %v", got, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitServed(first)

	var (
		mu       sync.Mutex
		sessions int
		failures []string
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	ok := map[string]bool{first.Leaf.SerialNumber.String(): true, second.Leaf.SerialNumber.String(): true}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				serial, err := served()
				mu.Lock()
				sessions++
				if err != nil {
					failures = append(failures, err.Error())
				} else if !ok[serial] {
					failures = append(failures, "a leaf of neither certificate: serial "+serial)
				}
				mu.Unlock()
			}
		}()
	}
	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	logFrom := len(s.LogLines(t))
	for i, c := range []*testkit.Cert{second, first, second, first} {
		code, out := runHook(c)
		if code != 0 || !strings.Contains(out, "certbot-deploy-hook: info: installed the certificate from ") {
			t.Errorf("certbot-deploy-hook run %d: exit %d: %s", i, code, out)
		}
		b, _ := os.ReadFile(pem)
		if want := append(append([]byte{}, c.ChainPEM...), c.KeyPEM...); string(b) != string(want) {
			t.Errorf("run %d: ssl/stunnel.pem is not fullchain.pem then privkey.pem", i)
		}
		if st, err := os.Stat(pem); err != nil || st.Mode().Perm() != 0o400 || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("run %d: ssl/stunnel.pem: %v %v, want root's, 0400", i, st.Mode(), err)
		}
		ready()
		waitServed(c)
	}
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		var why []string
		for _, l := range s.LogLines(t)[logFrom:] {
			if strings.Contains(l, ": warning: ") || strings.Contains(l, ": fatal: ") {
				why = append(why, l)
			}
		}
		t.Errorf("%d of %d sessions failed while the certificate was replaced: %q; the log's warnings and fatal lines meanwhile:\n%s",
			len(failures), sessions, failures[:min(len(failures), 10)], strings.Join(why[:min(len(why), 10)], "\n"))
	}
	t.Logf("%d sessions while the certificate was replaced 4 times, none failed", sessions)

	// Refused: expired. Nothing changes.
	before, _ := os.ReadFile(pem)
	expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-48 * time.Hour)})
	code, out := runHook(expired)
	if code != 100 || !strings.Contains(out, "stunnel-imap-key: fatal: certificate ") || !strings.Contains(out, "certbot-deploy-hook: fatal: the certificate in ") || !strings.Contains(out, "ssl/stunnel.pem left as it was") {
		t.Errorf("certbot-deploy-hook with an expired certificate: exit %d, want 100: %s", code, out)
	}
	if after, _ := os.ReadFile(pem); string(after) != string(before) {
		t.Errorf("a refused certificate changed ssl/stunnel.pem")
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir, "ssl", ".stunnel.pem.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if _, err := served(); err != nil {
		t.Errorf("after a refused certificate: %v", err)
	}
}
