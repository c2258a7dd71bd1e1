// End-to-end tests of POP3 through the real pipeline (tcpserver,
// makesock, setuidgid-chroot, stunnel-imap, stunnel-imap-key) in front
// of a real Dovecot POP3 server (dovecot-pop3d, its pop3-login through a
// unix socket), driven by real clients: Python's poplib, curl, openssl
// s_client, fetchmail and mpop. Run: go test ./tests/ -run POP3 -v (as
// root).
package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// startPOP3Dovecot is StartDovecot with POP3 (dovecot-pop3d) required,
// and a fourth message for alice whose lines start with dots and hold
// 8-bit bytes: POP3's dot-stuffing must come through untouched.
func startPOP3Dovecot(t *testing.T) *harness.Dovecot {
	t.Helper()
	harness.Need(t, "/usr/lib/dovecot/pop3-login")
	d := harness.StartDovecot(t)
	msg := "From: Bob <bob@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: dots\r\n" +
		"Message-ID: <dots@imap-tls.test>\r\n\r\n.\r\n..\r\n.STLS\r\nUSER alice\r\n\xe9t\xe9 \xff\r\n.\r\nend\r\n"
	f := filepath.Join(d.Maildir("alice"), "new", "1800000000.Mdots.imaptls")
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "imaptlsmail:imaptlsmail", f).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	return d
}

// maildirMessages returns every message of alice's Maildir, sorted,
// and fails unless there are n.
func maildirMessages(t *testing.T, d *harness.Dovecot, n int) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Maildir("alice"), "*", "*"))
	var msgs []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			msgs = append(msgs, string(b))
		}
	}
	sort.Strings(msgs)
	if len(msgs) != n {
		t.Fatalf("alice's Maildir holds %d messages, want %d", len(msgs), n)
	}
	return msgs
}

// TestE2EPOP3Python: poplib with stls() on a -n pop3 port and POP3_SSL
// on a pop3s port retrieves every message byte for byte; before STLS the
// capability list offers STLS and no USER or SASL, and USER is refused.
func TestE2EPOP3Python(t *testing.T) {
	harness.Need(t, harness.Python)
	d := startPOP3Dovecot(t)
	want := maildirMessages(t, d, 4)
	for _, tc := range []struct{ mode, py string }{{"pop3", "stls"}, {"pop3s", "implicit"}} {
		t.Run(tc.mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: d.POP3LoginCmd()})
			r := harness.RunPoplib(t, p.Port, p.CA, tc.py, p.Stderr)
			if !strings.HasPrefix(r.Greeting, "+OK Dovecot") || r.Pass != "+OK Logged in." || r.Count != 4 || !strings.HasPrefix(r.Quit, "+OK") {
				t.Errorf("poplib session: %+v", r)
			}
			if tc.py == "stls" {
				if !harness.Has(r.CapaBefore, "STLS") || harness.Has(r.CapaBefore, "USER") || harness.Has(r.CapaBefore, "SASL") {
					t.Errorf("CAPA before STLS %q: want STLS, no USER, no SASL", r.CapaBefore)
				}
				if !strings.Contains(r.UserBefore, "-ERR [AUTH]") {
					t.Errorf("USER before STLS: %q, want -ERR [AUTH]", r.UserBefore)
				}
			}
			if harness.Has(r.CapaAfter, "STLS") || !harness.Has(r.CapaAfter, "USER") || !harness.Has(r.CapaAfter, "SASL") {
				t.Errorf("CAPA under TLS %q: want USER and SASL, no STLS", r.CapaAfter)
			}
			if r.TLSVersion != "TLSv1.3" {
				t.Errorf("TLS version %q", r.TLSVersion)
			}
			harness.SameMessages(t, "poplib", r.Messages, want, true)
			starttls := "no"
			if tc.py == "stls" {
				starttls = "yes"
			}
			line := p.WaitLog(t, `stunnel-imap: info: .* mode=`+tc.mode+` `, 15*time.Second)
			if !strings.Contains(line, " starttls="+starttls+" ") || !strings.Contains(line, " auth=yes ") {
				t.Errorf("log line %q: want starttls=%s auth=yes", line, starttls)
			}
			harness.NoSecrets(t, p, d)
		})
	}
}

// TestE2EPOP3Curl: curl pop3:// with --ssl-reqd (STLS) lists and
// retrieves; without TLS it is refused and Dovecot sees no login.
func TestE2EPOP3Curl(t *testing.T) {
	harness.Need(t, "curl")
	d := startPOP3Dovecot(t)
	want := maildirMessages(t, d, 4)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: d.POP3LoginCmd()})
	base := "pop3://localhost:" + strconv.Itoa(p.Port)
	var got []string
	for i := 1; i <= 4; i++ {
		got = append(got, harness.RunClient(t, "curl", 60*time.Second, nil,
			"curl", "-sS", "--ssl-reqd", "--cacert", p.CA, "--max-time", "30", "-u", "alice:secret", base+"/"+strconv.Itoa(i)))
	}
	harness.SameMessages(t, "curl", got, want, true)
	cmd := exec.Command("curl", "-sS", "--max-time", "30", "-u", "alice:secret", base+"/")
	if _, err := harness.RunBounded(t, cmd, 60*time.Second); err == nil {
		t.Errorf("curl without TLS logged in through an STLS-required port")
	}
	if n := strings.Count(d.Log(t), "Login: user=<alice>"); n != 4 {
		t.Errorf("Dovecot logged %d logins of alice, want 4:\n%s", n, d.Log(t))
	}
	harness.NoSecrets(t, p, d)
}

// TestE2EPOP3Openssl: openssl s_client -starttls pop3 verifies the
// certificate, logs in and sees the mailbox.
func TestE2EPOP3Openssl(t *testing.T) {
	harness.Need(t, "openssl")
	d := startPOP3Dovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: d.POP3LoginCmd()})
	s := harness.SClient(t, p, "pop3", "CAPA\nUSER alice\nPASS secret\nSTAT\nQUIT\n")
	for _, want := range []string{"Verify return code: 0 (ok)", "+OK Logged in.", "+OK 4 ", "+OK Logging out"} {
		if !strings.Contains(s, want) {
			t.Errorf("s_client session lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\nSTLS") {
		t.Errorf("CAPA under TLS lists STLS:\n%s", s)
	}
	harness.NoSecrets(t, p, d)
}

// TestE2EPOP3Fetchmail: fetchmail, STLS by sslproto without --ssl,
// certificate checked, keeps and delivers every message to an MDA.
func TestE2EPOP3Fetchmail(t *testing.T) {
	harness.Need(t, "fetchmail")
	d := startPOP3Dovecot(t)
	want := maildirMessages(t, d, 4)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: d.POP3LoginCmd()})
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o700)
	rc := filepath.Join(dir, "fetchmailrc")
	conf := fmt.Sprintf(`set no bouncemail
poll localhost port %d protocol pop3 timeout 20
  user "alice" there with password "secret" is "root" here
  keep fetchall sslproto 'TLS1.2+' sslcertck sslcertfile "%s"
  mda "/bin/sh -c 'cat > %s/msg.$$'"
`, p.Port, p.CA, out)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("fetchmail", "-f", rc, "--nosyslog", "--invisible", "-v", "--pidfile", filepath.Join(dir, "pid"))
	cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	log, err := harness.RunBounded(t, cmd, 90*time.Second)
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s\n%s\npipeline:\n%s", err, log, stderr.String(), p.Stderr())
	}
	if !strings.Contains(stderr.String()+string(log), "STLS") {
		t.Errorf("fetchmail did not use STLS:\n%s%s", log, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(out, "msg.*"))
	var got []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		got = append(got, string(b))
	}
	harness.SameMessages(t, "fetchmail", got, want, false)
	harness.NoSecrets(t, p, d)
}

// TestE2EPOP3Mpop: mpop with tls_starttls fetches every message into a
// Maildir.
func TestE2EPOP3Mpop(t *testing.T) {
	harness.Need(t, "mpop")
	d := startPOP3Dovecot(t)
	want := maildirMessages(t, d, 4)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: d.POP3LoginCmd()})
	dir := t.TempDir()
	md := filepath.Join(dir, "md")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(md, sub), 0o700)
	}
	rc := filepath.Join(dir, "mpoprc")
	conf := fmt.Sprintf(`account default
host localhost
port %d
timeout 20
tls on
tls_starttls on
tls_trust_file %s
auth user
user alice
password secret
keep on
received_header off
delivery maildir %s
`, p.Port, p.CA, md)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("mpop", "-C", rc, "-a")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	log, err := harness.RunBounded(t, cmd, 90*time.Second)
	if err != nil {
		t.Fatalf("mpop: %v\n%s\n%s\npipeline:\n%s", err, log, stderr.String(), p.Stderr())
	}
	files, _ := filepath.Glob(filepath.Join(md, "new", "*"))
	var got []string
	for _, f := range files {
		b, _ := os.ReadFile(f)
		got = append(got, string(b))
	}
	harness.SameMessages(t, "mpop", got, want, false)
	harness.NoSecrets(t, p, d)
}

// popSession is a raw POP3 client on the pipeline.
type popSession struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *popSession {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &popSession{t: t, conn: c, r: bufio.NewReader(c)}
}

func (s *popSession) send(text string) {
	if _, err := s.conn.Write([]byte(text)); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

func (s *popSession) line() string {
	l, err := s.r.ReadString('\n')
	if err != nil {
		s.t.Fatalf("read: %v (so far %q)", err, l)
	}
	return l
}

// TestE2EPOP3Attacks: through the real pipeline, nothing a client sends
// before STLS logs in or reaches Dovecot as USER, PASS, AUTH or STLS.
func TestE2EPOP3Attacks(t *testing.T) {
	d := startPOP3Dovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "pop3", Backend: d.RawPOP3LoginCmd()})
	const refused = "-ERR [AUTH] TLS is required: use STLS first\r\n"

	t.Run("USER PASS and AUTH before STLS", func(t *testing.T) {
		s := dialPOP3(t, p.Addr)
		s.line() // greeting
		for _, c := range []string{"USER alice\r\n", "PASS secret\r\n", "AUTH PLAIN AGFsaWNlAGFsaWNlAHNlY3JldA==\r\n",
			"APOP alice 0123456789abcdef0123456789abcdef\r\n", "AUTH\r\n"} {
			s.send(c)
			if l := s.line(); l != refused {
				t.Errorf("%q answered %q, want %q", c, l, refused)
			}
		}
		s.send("STLS now\r\n")
		if l := s.line(); l != "-ERR STLS takes no arguments\r\n" {
			t.Errorf("STLS with an argument: %q", l)
		}
		s.send("QUIT\r\n")
		if l := s.line(); !strings.HasPrefix(l, "+OK") {
			t.Errorf("QUIT: %q", l)
		}
	})
	t.Run("plaintext pipelined after STLS", func(t *testing.T) {
		s := dialPOP3(t, p.Addr)
		s.line()
		s.send("STLS\r\nUSER alice\r\nPASS secret\r\n")
		if l := s.line(); l != "+OK Begin TLS negotiation\r\n" {
			t.Errorf("STLS: %q", l)
		}
		rest := make([]byte, 100)
		if n, err := s.r.Read(rest); err == nil && n > 0 && rest[0] != 0x15 {
			t.Errorf("after plaintext following STLS: %q, want the end (or an alert)", rest[:n])
		}
	})
	t.Run("a line that never ends", func(t *testing.T) {
		s := dialPOP3(t, p.Addr)
		s.line()
		s.send(strings.Repeat("x", 70000))
		if l := s.line(); l != "-ERR Command line too long\r\n" {
			t.Errorf("endless line: %q", l)
		}
	})
	t.Run("a client that vanishes mid-command", func(t *testing.T) {
		s := dialPOP3(t, p.Addr)
		s.line()
		s.send("USE")
		s.conn.Close()
	})
	p.WaitLines(t, 4, 20*time.Second)
	log := p.Stderr()
	for _, want := range []string{"end=line-too-long", "end=handshake-failed", "warning: client sent plaintext after STLS: dropped",
		"warning: client sent USER before STLS: refused"} {
		if !strings.Contains(log, want) {
			t.Errorf("the pipeline's log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "auth=yes") {
		t.Errorf("a session logged in:\n%s", log)
	}
	raw := strings.ToUpper(d.Raw(t))
	for _, bad := range []string{"USER", "PASS", "AUTH", "APOP", "STLS"} {
		if strings.Contains(raw, bad) {
			t.Errorf("Dovecot received %s:\n%q", bad, raw)
		}
	}
	if strings.Contains(d.Log(t), "user=<alice>") {
		t.Errorf("Dovecot saw alice:\n%s", d.Log(t))
	}
	harness.NoSecrets(t, p, d)
}

// TestServicePOP3: POP3 services made by imap-tls-conf (STLS required
// and implicit TLS) under svscan, with Dovecot's POP3 login service
// behind: poplib retrieves every message, and multilog's log holds one
// line per connection with mode=pop3 or pop3s and auth=yes.
func TestServicePOP3(t *testing.T) {
	harness.Need(t, harness.Python, "/usr/lib/dovecot/pop3-login")
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "pop3", Mode: "pop3"}, harness.ServiceSpec{Name: "pop3s", Mode: "pop3s"})
	want := maildirMessages(t, tr.Dovecot, 3)
	for _, s := range tr.Services {
		s.WriteEnv(t, "IMAPD", strings.Join(tr.Dovecot.POP3LoginCmd(), " "))
		s.Restart(t)
		py := map[string]string{"pop3": "stls", "pop3s": "implicit"}[s.Mode]
		r := harness.RunPoplib(t, s.Port, tr.CA, py, func() string { return strings.Join(s.LogLines(t), "\n") })
		harness.SameMessages(t, "poplib through the "+s.Mode+" service", r.Messages, want, true)
		s.WaitConnLines(t, 1)
		found := false
		for _, l := range s.LogLines(t) {
			if harness.ConnLine.MatchString(l) && strings.Contains(l, " mode="+s.Mode+" ") && strings.Contains(l, " auth=yes ") {
				found = true
			}
			if strings.Contains(l, "secret") {
				t.Errorf("a password in the log: %q", l)
			}
		}
		if !found {
			t.Errorf("no mode=%s auth=yes line in the %s service's log:\n%s", s.Mode, s.Mode, strings.Join(s.LogLines(t), "\n"))
		}
	}
}
