// End-to-end tests with Courier, the seed's own IMAP server, behind the
// real pipeline (tcpserver, makesock, setuidgid-chroot, stunnel-imap,
// stunnel-imap-key): Courier's imaplogin and pop3login from Debian's
// packages, fetched and unpacked by tests/courier.sh (cached in
// /var/cache/imap-tls-test/courier), run in a private mount namespace
// with authdaemond (authuserdb). Real clients: Python's imaplib and
// poplib, curl, mbsync, openssl s_client. Run: go test ./tests/ -run
// Courier -v (as root).
package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// courierLog returns Courier's lines in the pipeline's log (Courier
// writes them to stderr, which the chain passes on, as to multilog in a
// service): DEBUG, INFO and ERR lines.
func courierLog(p *harness.Pipeline) []string {
	var lines []string
	for _, l := range strings.Split(p.Stderr(), "\n") {
		if strings.HasPrefix(l, "INFO: ") || strings.HasPrefix(l, "DEBUG: ") || strings.HasPrefix(l, "ERR: ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// waitCourierLine waits for Courier's log line matching re and returns it.
func waitCourierLine(t *testing.T, p *harness.Pipeline, re string) string {
	t.Helper()
	return p.WaitLog(t, `^(INFO|DEBUG|ERR): .*`+re, 15*time.Second)
}

// checkCourierSession checks Courier's lines for the session of the
// client at clientPort: the login and the end of the session name the
// client's real address and port (TCPREMOTEIP and TCPREMOTEPORT through
// makesock), the end says tlsField=1 (IMAP_TLS / POP3_TLS from
// imap-tls-server) and Courier ran no TLS of its own (no couriertls).
func checkCourierSession(t *testing.T, p *harness.Pipeline, clientPort int, tlsField string) {
	t.Helper()
	addr := `ip=\[127\.0\.0\.1\], port=\[` + strconv.Itoa(clientPort) + `\]`
	waitCourierLine(t, p, `LOGIN, user=alice, `+addr)
	end := waitCourierLine(t, p, `(LOGOUT|DISCONNECTED), user=alice, `+addr)
	if !strings.Contains(end, ", "+tlsField+"=1") {
		t.Errorf("Courier's end of session lacks %s=1 (it did not learn that the session was TLS): %s", tlsField, end)
	}
	if strings.Contains(strings.ToLower(p.Stderr()), "couriertls") {
		t.Errorf("Courier ran couriertls (TLS of its own):\n%s", p.Stderr())
	}
}

// TestCourierPython: imaplib through STARTTLS (mode imap) and IMAPS
// (mode imaps) to Courier's imaplogin: LOGIN before STARTTLS refused,
// then LOGIN, SELECT, APPEND of an 8-bit message and FETCH of it byte
// for byte; after TLS Courier's capability list is its TLS one
// (AUTH=PLAIN: IMAP_TLS reached it); its log names the client.
func TestCourierPython(t *testing.T) {
	c := harness.StartCourier(t)
	for _, tc := range []struct{ mode, py string }{{"imap", "starttls"}, {"imaps", "implicit"}} {
		t.Run(tc.mode, func(t *testing.T) {
			c.ClearRaw()
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: c.RawLoginCmd()})
			r := harness.RunPython(t, p, tc.py)
			if !strings.HasPrefix(r.Greeting, "* OK") || !strings.Contains(r.Greeting, "Courier-IMAP") {
				t.Errorf("greeting %q, want Courier's", r.Greeting)
			}
			if tc.py == "starttls" {
				if !harness.HasCap(r.CapsBefore, "STARTTLS") || !harness.HasCap(r.CapsBefore, "LOGINDISABLED") || harness.AnyAuth(r.CapsBefore) != "" {
					t.Errorf("capabilities before TLS %v: want STARTTLS LOGINDISABLED, no AUTH=", r.CapsBefore)
				}
				if !strings.HasPrefix(r.LoginBefore, "NO") || !strings.Contains(r.LoginBefore, "[PRIVACYREQUIRED]") {
					t.Errorf("LOGIN before TLS: %q, want NO [PRIVACYREQUIRED]", r.LoginBefore)
				}
			}
			if harness.HasCap(r.CapsAfter, "STARTTLS") || harness.HasCap(r.CapsAfter, "LOGINDISABLED") || !harness.HasCap(r.CapsAfter, "AUTH=PLAIN") {
				t.Errorf("capabilities under TLS %v: want Courier's TLS list (AUTH=PLAIN), no STARTTLS", r.CapsAfter)
			}
			if r.Login != "OK" || r.Exists < 3 || !strings.HasPrefix(r.Append, "OK") || r.ExistsAfter != r.Exists+1 || r.Logout != "BYE" {
				t.Errorf("session: %+v", r)
			}
			if !r.Identical {
				t.Errorf("fetched message differs from the appended one: sent %d bytes, got %d", r.SentLen, r.FetchedLen)
			}
			starttls := map[string]string{"starttls": "yes", "implicit": "no"}[tc.py]
			port := harness.ClientPortFromLog(t, p)
			harness.CheckSessionLog(t, p, port, tc.mode, starttls, "yes")
			checkCourierSession(t, p, port, "starttls")
			// Courier's first LOGIN is the one under TLS
			raw := c.Raw(t)
			if i := strings.Index(raw, "LOGIN"); i < 0 || !strings.HasPrefix(raw[i:], `LOGIN alice "secret"`) ||
				strings.Contains(strings.ToUpper(raw[:i]), "STARTTLS") {
				t.Errorf("Courier received before the LOGIN under TLS:\n%q", raw)
			}
			harness.NoSecrets(t, p, nil)
		})
	}
}

// TestCourierRefused: LOGIN and AUTHENTICATE before STARTTLS get NO
// [PRIVACYREQUIRED] from the proxy and never reach Courier, which logs
// no login; the NOOP does reach it (the relay works).
func TestCourierRefused(t *testing.T) {
	c := harness.StartCourier(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: c.RawLoginCmd()})
	cl := harness.DialIMAP(t, p.Addr)
	if g := cl.Line(); !strings.Contains(g, "Courier-IMAP") || !harness.HasCap(harness.CapsOf(g), "LOGINDISABLED") {
		t.Errorf("greeting %q: want Courier's, with LOGINDISABLED", g)
	}
	if _, tagged := cl.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before STARTTLS: %q", tagged)
	}
	if _, tagged := cl.Cmd("b", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA=="); !strings.HasPrefix(tagged, "b NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before STARTTLS: %q", tagged)
	}
	if _, tagged := cl.Cmd("c", "NOOP"); !strings.HasPrefix(tagged, "c OK") {
		t.Errorf("NOOP: %q", tagged)
	}
	cl.Cmd("d", "LOGOUT")
	cl.RestClosed()
	waitCourierLine(t, p, `LOGOUT, ip=\[127\.0\.0\.1\]`)
	raw := strings.ToUpper(c.Raw(t))
	if !strings.Contains(raw, "C NOOP\r\n") {
		t.Errorf("Courier did not receive the NOOP:\n%q", raw)
	}
	for _, bad := range []string{"LOGIN", "AUTHENTICATE", "AGFSAWNLAHNLY3JLDA", "SECRET"} {
		if strings.Contains(raw, bad) {
			t.Errorf("Courier received %s:\n%q", bad, raw)
		}
	}
	for _, l := range courierLog(p) {
		if strings.Contains(l, "user=alice") || strings.Contains(l, "LOGIN FAILED") {
			t.Errorf("Courier logged a login attempt: %s", l)
		}
	}
	harness.NoSecrets(t, p, nil)
}

// TestCourierOwnStarttls: a Courier that offers STARTTLS itself
// (IMAP_STARTTLS=YES, COURIERTLS set: it lists STARTTLS) behind the
// proxy, in both STARTTLS modes: the client's STARTTLS is answered by the
// proxy and never reaches Courier, the capability list under TLS has no
// STARTTLS, and Courier runs no couriertls. In imap- the session is not
// declared TLS to Courier (IMAP_TLS removed), in imap it is.
func TestCourierOwnStarttls(t *testing.T) {
	c := harness.StartCourier(t)
	// Courier does advertise it, straight
	cmd := exec.Command("sh", c.Script, "imaplogin", c.Dir)
	cmd.Env = append(os.Environ(), "IMAP_STARTTLS=YES", "COURIERTLS=/usr/bin/couriertls",
		"TCPREMOTEIP=127.0.0.1", "TCPREMOTEPORT=1", "TCPLOCALIP=127.0.0.1", "TCPLOCALPORT=143")
	cmd.Stdin = strings.NewReader("a CAPABILITY\r\nb LOGOUT\r\n")
	out, err := harness.RunBounded(t, cmd, 30*time.Second)
	if err != nil || !harness.HasCap(harness.CapsOf(strings.Split(string(out), "\r\n")[1]), "STARTTLS") {
		t.Fatalf("Courier with IMAP_STARTTLS=YES does not list STARTTLS itself (%v):\n%s", err, out)
	}
	for _, mode := range []string{"imap", "imap-"} {
		t.Run(mode, func(t *testing.T) {
			c.ClearRaw()
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: c.RawLoginCmd("IMAP_STARTTLS=YES", "COURIERTLS=/usr/bin/couriertls")})
			cl := harness.DialIMAP(t, p.Addr)
			cport := cl.Conn.LocalAddr().(*net.TCPAddr).Port
			g := cl.Line()
			if n := strings.Count(strings.ToUpper(g), " STARTTLS"); n != 1 {
				t.Errorf("greeting lists STARTTLS %d times: %q", n, g)
			}
			cl.StartTLS("a", harness.ClientTLS(t, p.CA, "localhost"))
			un, tagged := cl.Cmd("b", "CAPABILITY")
			if !strings.HasPrefix(tagged, "b OK") || len(un) != 1 || harness.HasCap(harness.CapsOf(un[0]), "STARTTLS") {
				t.Errorf("CAPABILITY under TLS: %q %q, want no STARTTLS", un, tagged)
			}
			if _, tagged := cl.Cmd("c", "STARTTLS"); !strings.HasPrefix(tagged, "c BAD") {
				t.Errorf("STARTTLS under TLS: %q, want BAD from the proxy", tagged)
			}
			if _, tagged := cl.Cmd("d", "LOGIN alice secret"); !strings.HasPrefix(tagged, "d OK") {
				t.Errorf("LOGIN under TLS: %q", tagged)
			}
			if un, tagged := cl.Cmd("e", "SELECT INBOX"); !strings.HasPrefix(tagged, "e OK") || !strings.Contains(strings.Join(un, "\n"), " EXISTS") {
				t.Errorf("SELECT: %q %q", un, tagged)
			}
			cl.Cmd("f", "LOGOUT")
			cl.RestClosed()
			addr := `ip=\[127\.0\.0\.1\], port=\[` + strconv.Itoa(cport) + `\]`
			end := waitCourierLine(t, p, `(LOGOUT|DISCONNECTED), user=alice, `+addr)
			// IMAP_TLS from imap-tls-server: set in imap (no login
			// before TLS), not in imap- (a client may stay in plaintext)
			if got, want := strings.Contains(end, ", starttls=1"), mode == "imap"; got != want {
				t.Errorf("mode %s: Courier's end of session says starttls=1: %v, want %v: %s", mode, got, want, end)
			}
			raw := strings.ToUpper(c.Raw(t))
			if strings.Contains(raw, "STARTTLS") {
				t.Errorf("Courier received STARTTLS:\n%q", raw)
			}
			if strings.Contains(strings.ToLower(p.Stderr()), "couriertls") {
				t.Errorf("Courier ran couriertls:\n%s", p.Stderr())
			}
			harness.CheckSessionLog(t, p, cport, mode, "yes", "yes")
			harness.NoSecrets(t, p, nil)
		})
	}
}

// TestCourierCurl: curl imap:// with --ssl-reqd (STARTTLS) and imaps://
// fetch a seed message identical to the one in Courier's Maildir; plain
// imap:// without TLS cannot log in.
func TestCourierCurl(t *testing.T) {
	harness.Need(t, "curl")
	c := harness.StartCourier(t)
	for _, tc := range []struct{ mode, scheme string }{{"imap", "imap"}, {"imaps", "imaps"}} {
		t.Run(tc.mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: c.LoginCmd()})
			base := tc.scheme + "://localhost:" + strconv.Itoa(p.Port)
			curl := func(args ...string) (string, error) {
				a := append([]string{"-sS", "--ssl-reqd", "--cacert", p.CA, "--max-time", "30", "-u", "alice:secret"}, args...)
				cmd := exec.Command("curl", a...)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := harness.RunBounded(t, cmd, 60*time.Second)
				if err != nil {
					return stderr.String(), err
				}
				return string(out), nil
			}
			if list, err := curl(base + "/"); err != nil || !strings.Contains(list, "INBOX") {
				t.Errorf("curl LIST: %v %q\npipeline:\n%s", err, list, p.Stderr())
			}
			got, err := curl(base + "/INBOX;UID=2")
			if want := string(c.Seed(t, 2)); err != nil || got != want {
				t.Errorf("curl fetched (%v)\n%q\nwant\n%q", err, got, want)
			}
			if tc.mode == "imap" {
				cmd := exec.Command("curl", "-sS", "--max-time", "30", "-u", "alice:secret", base+"/")
				if _, err := harness.RunBounded(t, cmd, 60*time.Second); err == nil {
					t.Errorf("curl without TLS logged in through a required-STARTTLS port")
				}
			}
			harness.NoSecrets(t, p, nil)
		})
	}
}

// TestCourierMbsync: mbsync syncs alice's INBOX from Courier over
// STARTTLS and over IMAPS: the three seed messages arrive.
func TestCourierMbsync(t *testing.T) {
	harness.Need(t, "mbsync")
	c := harness.StartCourier(t)
	for _, tc := range []struct{ mode, sslType string }{{"imap", "STARTTLS"}, {"imaps", "IMAPS"}} {
		t.Run(tc.mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: c.LoginCmd()})
			dir := t.TempDir()
			local := filepath.Join(dir, "local")
			os.Mkdir(local, 0o700)
			rc := filepath.Join(dir, "mbsyncrc")
			conf := "IMAPAccount alice\nHost localhost\nPort " + strconv.Itoa(p.Port) + "\nUser alice\nPass secret\n" +
				"SSLType " + tc.sslType + "\nCertificateFile " + p.CA + "\n\nIMAPStore far\nAccount alice\n\n" +
				"MaildirStore near\nPath " + local + "/\nInbox " + local + "/INBOX\n\n" +
				"Channel alice\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Near\nSyncState *\n"
			if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("mbsync", "-c", rc, "-a")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if out, err := harness.RunBounded(t, cmd, 60*time.Second); err != nil {
				t.Fatalf("mbsync: %v\n%s\n%s\npipeline:\n%s", err, out, stderr.String(), p.Stderr())
			}
			seeds := 0
			for _, sub := range []string{"new", "cur"} {
				files, _ := filepath.Glob(filepath.Join(local, "INBOX", sub, "*"))
				for _, f := range files {
					b, _ := os.ReadFile(f)
					for n := 1; n <= 3; n++ {
						if strings.Contains(string(b), "Subject: seed message "+strconv.Itoa(n)+"\n") {
							seeds++
						}
					}
				}
			}
			if seeds != 3 {
				t.Errorf("%d of the 3 seed messages arrived", seeds)
			}
			checkCourierSession(t, p, harness.ClientPortFromLog(t, p), "starttls")
			harness.NoSecrets(t, p, nil)
		})
	}
}

// TestCourierOpenssl: openssl s_client -starttls imap verifies the
// certificate, logs in to Courier, selects INBOX.
func TestCourierOpenssl(t *testing.T) {
	harness.Need(t, "openssl")
	c := harness.StartCourier(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: c.LoginCmd()})
	s := harness.SClient(t, p, "imap", "a CAPABILITY\nb LOGIN alice secret\nc SELECT INBOX\nd LOGOUT\n")
	for _, want := range []string{"Verify return code: 0 (ok)", "b OK LOGIN Ok.", "* 3 EXISTS", "c OK [READ-WRITE]", "d OK LOGOUT"} {
		if !strings.Contains(s, want) {
			t.Errorf("s_client session lacks %q:\n%s", want, s)
		}
	}
	if m := regexp.MustCompile(`(?m)^\* CAPABILITY .*$`).FindString(s); m == "" || harness.HasCap(harness.CapsOf(m), "STARTTLS") {
		t.Errorf("capability under TLS %q: want one, without STARTTLS", m)
	}
	checkCourierSession(t, p, harness.ClientPortFromLog(t, p), "starttls")
	harness.NoSecrets(t, p, nil)
}

// TestCourierPOP3: Courier's pop3login behind the pipeline: poplib with
// stls() (mode pop3; USER before STLS refused by the proxy and never seen
// by Courier) and POP3_SSL (pop3s) retrieve the three seed messages byte
// for byte; curl pop3:// with --ssl-reqd too; a Courier that offers STLS
// itself (POP3_STARTTLS=YES) never gets one; its log names the client
// and says stls=1.
func TestCourierPOP3(t *testing.T) {
	harness.Need(t, harness.Python, "curl")
	c := harness.StartCourier(t)
	want := []string{string(c.Seed(t, 1)), string(c.Seed(t, 2)), string(c.Seed(t, 3))}
	for _, tc := range []struct{ mode, py string }{{"pop3", "stls"}, {"pop3s", "implicit"}} {
		t.Run(tc.mode, func(t *testing.T) {
			c.ClearRaw()
			// Courier offering STLS itself: the proxy's CAPA rewrite and
			// STLS answer keep it from ever getting one
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: c.RawPOP3LoginCmd("POP3_STARTTLS=YES", "COURIERTLS=/usr/bin/couriertls")})
			r := harness.RunPoplib(t, p.Port, p.CA, tc.py, p.Stderr)
			if r.Greeting != "+OK Hello there." || r.Pass != "+OK logged in." || !strings.HasPrefix(r.Quit, "+OK") {
				t.Errorf("poplib session: %+v", r)
			}
			if tc.py == "stls" {
				if !harness.Has(r.CapaBefore, "STLS") || harness.Has(r.CapaBefore, "USER") {
					t.Errorf("CAPA before STLS %q: want STLS, no USER", r.CapaBefore)
				}
				if !strings.Contains(r.UserBefore, "-ERR [AUTH]") {
					t.Errorf("USER before STLS: %q, want -ERR [AUTH]", r.UserBefore)
				}
			}
			if harness.Has(r.CapaAfter, "STLS") || !harness.Has(r.CapaAfter, "USER") {
				t.Errorf("CAPA under TLS %q: want USER, no STLS", r.CapaAfter)
			}
			harness.SameMessages(t, "poplib", r.Messages, want, true)
			port := harness.ClientPortFromLog(t, p)
			checkCourierSession(t, p, port, "stls")
			raw := strings.ToUpper(c.Raw(t))
			if strings.Contains(raw, "STLS") {
				t.Errorf("Courier received STLS:\n%q", raw)
			}
			if i := strings.Index(raw, "USER"); i < 0 || strings.Contains(raw[i+1:], "USER") {
				t.Errorf("Courier received USER %d times, want once (under TLS):\n%q", strings.Count(raw, "USER"), raw)
			}
			harness.NoSecrets(t, p, nil)
		})
	}
	t.Run("curl", func(t *testing.T) {
		p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: c.POP3LoginCmd()})
		base := "pop3://localhost:" + strconv.Itoa(p.Port)
		var got []string
		for i := 1; i <= 3; i++ {
			cmd := exec.Command("curl", "-sS", "--ssl-reqd", "--cacert", p.CA, "--max-time", "30", "-u", "alice:secret", base+"/"+strconv.Itoa(i))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := harness.RunBounded(t, cmd, 60*time.Second)
			if err != nil {
				t.Fatalf("curl %d: %v: %s\npipeline:\n%s", i, err, stderr.String(), p.Stderr())
			}
			got = append(got, string(out))
		}
		harness.SameMessages(t, "curl", got, want, true)
		cmd := exec.Command("curl", "-sS", "--max-time", "30", "-u", "alice:secret", base+"/")
		if _, err := harness.RunBounded(t, cmd, 60*time.Second); err == nil {
			t.Errorf("curl without TLS logged in through an STLS-required port")
		}
		harness.NoSecrets(t, p, nil)
	})
}

// TestCourierHarness: tests/courier.sh's own contract: bad use exits 100;
// stop leaves no authdaemond.
func TestCourierHarness(t *testing.T) {
	c := harness.StartCourier(t)
	b, err := os.ReadFile(filepath.Join(c.Dir, "authdaemond.pid"))
	if err != nil {
		t.Fatalf("no authdaemond.pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if out, err := exec.Command("sh", c.Script, "stop", c.Dir).CombinedOutput(); err != nil {
		t.Errorf("courier.sh stop: %v: %s", err, out)
	}
	if pid <= 1 || syscall.Kill(pid, 0) == nil {
		t.Errorf("authdaemond %d still there after stop", pid)
	}
	err = exec.Command("sh", c.Script, "start").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 100 {
		t.Errorf("courier.sh start without DIR: %v, want exit 100", err)
	}
}

// pageCommands returns the commands of the indented block that follows
// the line starting with intro in the markdown file path.
func pageCommands(t *testing.T, path, intro string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var cmds []string
	for i, l := range lines {
		if !strings.HasPrefix(l, intro) {
			continue
		}
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "    ") {
			j++
		}
		for ; j < len(lines) && strings.HasPrefix(lines[j], "    "); j++ {
			cmds = append(cmds, strings.TrimSpace(lines[j]))
		}
		return cmds
	}
	t.Fatalf("%s: no line starting %q", path, intro)
	return nil
}

// TestCourierMigration: imap-tls-conf/README.md's Courier installation,
// step by step, run as the page writes it, with this test's folders,
// loopback ports and certificate put in for /etc/imap-tls,
// /etc/service/, `0 143`, `0 110` and chain-and-key.pem. The steps that
// touch the machine are checked to be on the page but not run: apt-get
// (Courier conflicts with the Dovecot packages the other tests need: it
// comes from tests/courier.sh's cache), systemctl (no Courier listeners
// here), sh redo.do (the binaries are built), useradd (the accounts are
// made when missing). Courier is not installed, so an env/IMAPD that
// names Courier's program runs in Courier's namespace (`sh
// tests/courier.sh run DIR` in front of exactly the page's line). Then
// svscan runs the two services and their signers: imaplib over
// STARTTLS and poplib over STLS log in and read alice's mail, the
// settings the page put in env/ reach Courier, and its log lines in
// log/main/current name the client with starttls=1 / stls=1.
func TestCourierMigration(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "supervise", "svc", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver", harness.Python)
	c := harness.StartCourier(t)
	conf := harness.Bin(t, "imap-tls-conf")
	binDir := filepath.Dir(conf)
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "imap-tls-check"} {
		if filepath.Dir(harness.Bin(t, p)) != binDir {
			t.Fatalf("%s is not next to imap-tls-conf", p)
		}
	}
	// the signer's service runs it (env/SIGNER); testkit may not build it
	if _, err := os.Stat(filepath.Join(binDir, "stunnel-imap-signer")); err != nil {
		t.Fatalf("stunnel-imap-signer is not next to imap-tls-conf (sh redo.do builds it): %v", err)
	}
	top := t.TempDir()
	for _, d := range []string{filepath.Dir(top), top} {
		os.Chmod(d, 0o755)
	}
	pem, ca := harness.WriteCert(t, top)
	etc := filepath.Join(top, "etc")
	svroot := filepath.Join(top, "service")
	for _, d := range []string{etc, svroot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	imapPort, pop3Port := harness.Port(t), harness.Port(t)
	r := strings.NewReplacer("/etc/imap-tls", etc+"/imap-tls", "/etc/service/", svroot+"/",
		"chain-and-key.pem", pem, " 0 143", " 127.0.0.1 "+strconv.Itoa(imapPort), " 0 110", " 127.0.0.1 "+strconv.Itoa(pop3Port))
	cmds := pageCommands(t, filepath.Join(harness.RepoRoot(t), "imap-tls-conf", "README.md"), "The commands (as root")
	seen := map[string]bool{}
	var checks []string
	for _, cmd := range cmds {
		f := strings.Fields(cmd)
		if len(f) == 0 {
			continue
		}
		seen[f[0]] = true
		switch {
		case f[0] == "apt-get":
			if !strings.Contains(cmd, "courier-imap") || !strings.Contains(cmd, "courier-pop") {
				t.Errorf("the page's apt-get does not install Courier: %s", cmd)
			}
			continue
		case f[0] == "systemctl", f[0] == "sh" && len(f) == 2 && f[1] == "redo.do":
			continue
		case f[0] == "useradd":
			harness.EnsureAccount(t, f[len(f)-1])
			continue
		}
		if strings.HasPrefix(cmd, "bin/") {
			cmd = binDir + "/" + strings.TrimPrefix(cmd, "bin/")
		}
		cmd = r.Replace(cmd)
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if strings.Contains(cmd, "imap-tls-check") {
			checks = append(checks, string(out))
		}
		if err != nil {
			t.Fatalf("the page's %q failed: %v\n%s", cmd, err, out)
		}
		// Courier is not installed here: its command line runs in
		// Courier's namespace, word for word
		files, _ := filepath.Glob(filepath.Join(etc, "*", "env", "IMAPD"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if line := strings.TrimSpace(string(b)); strings.HasPrefix(line, "/usr/lib/courier/") {
				os.WriteFile(f, []byte("sh "+c.Script+" run "+c.Dir+" "+line+"\n"), 0o644)
			}
		}
	}
	for _, want := range []string{"apt-get", "systemctl", "sh", "useradd", "bin/imap-tls-conf", "install", "echo", "bin/imap-tls-check", "ln"} {
		if !seen[want] {
			t.Errorf("the page's commands lack %s: %q", want, cmds)
		}
	}
	if len(checks) != 2 {
		t.Errorf("the page runs imap-tls-check %d times, want 2 (one per service)", len(checks))
	}
	imap := &harness.Service{Dir: filepath.Join(etc, "imap-tls"), Port: imapPort, Mode: "imap"}
	pop3 := &harness.Service{Dir: filepath.Join(etc, "imap-tls-pop3"), Port: pop3Port, Mode: "pop3"}
	for _, s := range []*harness.Service{imap, pop3} {
		b, err := os.ReadFile(filepath.Join(s.Dir, "env", "MODE"))
		if err != nil || strings.TrimSpace(string(b)) != s.Mode {
			t.Errorf("%s/env/MODE: %q %v, want %s", s.Dir, b, err, s.Mode)
		}
	}
	links, _ := filepath.Glob(filepath.Join(svroot, "*"))
	if len(links) != 4 {
		t.Fatalf("the page linked %d directories into the service folder, want 4 (two services, two signers): %v", len(links), links)
	}
	tr := &harness.SvscanTree{Root: svroot, CA: ca, Out: &harness.LockedBuffer{},
		Services: []*harness.Service{imap, pop3, {Dir: filepath.Join(imap.Dir, "signer")}, {Dir: filepath.Join(pop3.Dir, "signer")}}}
	tr.Cmd = exec.Command("svscan", svroot)
	tr.Cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
	tr.Cmd.Stdout, tr.Cmd.Stderr = tr.Out, tr.Out
	tr.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	tr.Cmd.WaitDelay = time.Second
	if err := tr.Cmd.Start(); err != nil {
		t.Fatalf("unable to start svscan: %v", err)
	}
	t.Cleanup(func() { tr.Stop(t) })
	imap.WaitUp(t)
	pop3.WaitUp(t)

	py := `
import imaplib, poplib, ssl, sys
ca, p1, p2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
M = imaplib.IMAP4("localhost", p1, timeout=20)
M.starttls(ssl_context=ctx)
caps = " ".join(sorted(M.capabilities))
M.login("alice", "secret")
n = M.select("INBOX")[1][0].decode()
s = M.fetch("2", "(BODY[HEADER.FIELDS (SUBJECT)])")[1][0][1].decode().strip()
M.logout()
P = poplib.POP3("localhost", p2, timeout=20)
P.stls(context=ctx)
P.user("alice"); P.pass_("secret")
m = P.stat()[0]
body = b"\n".join(P.retr(3)[1]).decode()
P.quit()
print(n, m, s, "|", caps, "|", "seed message number 3" in body)
`
	cmd := exec.Command(harness.Python, "-c", py, ca, strconv.Itoa(imap.Port), strconv.Itoa(pop3.Port))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := harness.RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("python: %v\n%s\nlogs:\n%s\n%s", err, stderr.String(), strings.Join(imap.LogLines(t), "\n"), strings.Join(pop3.LogLines(t), "\n"))
	}
	parts := strings.Split(strings.TrimSpace(string(out)), " | ")
	if len(parts) != 3 || parts[0] != "3 3 Subject: seed message 2" || parts[2] != "True" {
		t.Errorf("through the page's services: %q", out)
	}
	// env/IMAP_CAPABILITY_TLS reached Courier (IDLE, AUTH=PLAIN, no
	// THREAD=: the page's list, not Debian's), and IMAP_TLS with it
	if len(parts) == 3 && (!strings.Contains(parts[1], "IDLE") || !strings.Contains(parts[1], "AUTH=PLAIN") || strings.Contains(parts[1], "THREAD=")) {
		t.Errorf("capabilities under TLS %q: want the page's env/IMAP_CAPABILITY_TLS", parts[1])
	}
	for _, tc := range []struct {
		s        *harness.Service
		end, tls string
	}{{imap, "(LOGOUT|DISCONNECTED)", "starttls"}, {pop3, "LOGOUT", "stls"}} {
		rx := regexp.MustCompile(`INFO: ` + tc.end + `, user=alice, ip=\[127\.0\.0\.1\], port=\[[0-9]+\].*, ` + tc.tls + `=1`)
		deadline := time.Now().Add(15 * time.Second)
		for {
			if rx.MatchString(strings.Join(tc.s.LogLines(t), "\n")) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s/log/main/current lacks Courier's end of session with %s=1:\n%s", tc.s.Dir, tc.tls, strings.Join(tc.s.LogLines(t), "\n"))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, l := range tc.s.LogLines(t) {
			if strings.Contains(l, "secret") {
				t.Errorf("a password in %s's log: %s", tc.s.Dir, l)
			}
		}
	}
}

// TestCourierDemo: `DEMO_BACKEND=courier DEMO_CHECK=1 sh
// tests/demo.sh` (what `sh redo.do demo` runs) serves IMAP and
// POP3 from Courier on four free ports, its clients all work, Courier's
// log lines name the client with starttls=1 and stls=1, and it stops
// leaving nothing running. An unknown DEMO_BACKEND is a usage error.
func TestCourierDemo(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "tcpserver", "socat", "openssl", "curl", "python3", "setsid", "pgrep", "unshare")
	conf := harness.Bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "imap-tls-check"} {
		harness.Bin(t, p)
	}
	var ps []string
	for range 4 {
		ps = append(ps, strconv.Itoa(harness.Port(t)))
	}
	demo := filepath.Join(harness.RepoRoot(t), "tests", "demo.sh")
	cmd := exec.Command("sh", demo)
	cmd.Env = append(os.Environ(), "IMAPTLS_BIN="+filepath.Dir(conf), "DEMO_BACKEND=courier", "DEMO_CHECK=1",
		"DEMO_STARTTLS_PORT="+ps[0], "DEMO_IMPLICIT_PORT="+ps[1], "DEMO_POP3_PORT="+ps[2], "DEMO_POP3S_PORT="+ps[3])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out := &harness.LockedBuffer{}
	cmd.Stderr = out
	_, err := harness.RunBounded(t, cmd, 120*time.Second)
	s := out.String()
	if err != nil || !strings.Contains(s, "demo.sh: all checks passed") || !strings.Contains(s, "stopped: nothing left running") {
		t.Errorf("DEMO_BACKEND=courier DEMO_CHECK=1 demo.sh: %v\n%s", err, s)
	}
	for _, want := range []string{"ok: openssl s_client -starttls imap", "ok: curl --ssl-reqd imap://", "ok: python3 imaplib",
		"ok: python3 poplib", "ok: curl --ssl-reqd pop3://", "ok: no socat under the fronts", "ok: Courier's log lines"} {
		if !strings.Contains(s, want) {
			t.Errorf("the demo's check lacks %q:\n%s", want, s)
		}
	}
	bad := exec.Command("sh", demo)
	bad.Env = append(os.Environ(), "DEMO_BACKEND=exim")
	if err := bad.Run(); err == nil || bad.ProcessState.ExitCode() != 100 {
		t.Errorf("DEMO_BACKEND=exim: %v, want exit 100", err)
	}
}
