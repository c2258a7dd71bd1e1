// End-to-end tests of stunnel-imap: the real pipeline (tcpserver,
// makesock, setuidgid-chroot, stunnel-imap) in front of a real Dovecot,
// driven by real clients: Python's imaplib, openssl s_client, curl and
// mbsync. Run: go test ./tests/ -run E2E -v (as root).
package tests

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestE2EDovecotHarness checks the harness itself: the private Dovecot
// answers a LOGIN on its socket and alice has the three seed messages.
func TestE2EDovecotHarness(t *testing.T) {
	d := harness.StartDovecot(t)
	// As a client does: the greeting first (a fresh login process may
	// say "Waiting for authentication process to respond.." before its
	// real greeting), then the commands, then the answer to the last.
	conn, err := net.Dial("unix", d.Socket)
	if err != nil {
		t.Fatalf("unable to connect to %s: %v", d.Socket, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	var out strings.Builder
	until := func(prefix string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			out.WriteString(line)
			if err != nil {
				t.Fatalf("dovecot: %v after %q", err, out.String())
			}
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
	}
	until("* OK [CAPABILITY")
	io.WriteString(conn, "a LOGIN alice secret\r\nb SELECT INBOX\r\n")
	until("b ")
	conn.Close()
	s := out.String()
	for _, want := range []string{"* OK ", "a OK ", "* 3 EXISTS", "b OK "} {
		if !strings.Contains(s, want) {
			t.Errorf("dovecot answered without %q:\n%s", want, s)
		}
	}
	if !strings.Contains(d.Log(t), "Login: user=<alice>") {
		t.Errorf("dovecot's log lacks alice's login:\n%s", d.Log(t))
	}
	// the stdio backend greets PREAUTH
	argv := d.ImapCmd("alice")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader("a SELECT INBOX\r\nb LOGOUT\r\n")
	pre, err := harness.RunBounded(t, cmd, 30*time.Second)
	if err != nil || !strings.HasPrefix(string(pre), "* PREAUTH ") || !strings.Contains(string(pre), "* 3 EXISTS") {
		t.Errorf("dovecot.sh imap: %v:\n%s", err, pre)
	}
	// Stop: the master is gone when the script returns
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", "master.pid"))
	if err != nil {
		t.Fatalf("no master.pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if out, err := exec.Command("sh", d.Script, "stop", d.Dir).CombinedOutput(); err != nil {
		t.Errorf("dovecot.sh stop: %v: %s", err, out)
	}
	if pid <= 1 || syscall.Kill(pid, 0) == nil {
		t.Errorf("dovecot master %d still there after stop", pid)
	}
	// bad use of the script: usage, exit 100
	err = exec.Command("sh", d.Script, "start").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 100 {
		t.Errorf("dovecot.sh start without DIR: %v, want exit 100", err)
	}
}

// TestE2EPythonStarttls: imaplib through the required-STARTTLS pipeline
// to Dovecot's login server: the plaintext capability list, LOGIN
// refused before TLS, then STARTTLS, LOGIN, SELECT, APPEND of an 8-bit
// message and FETCH of it, byte for byte.
func TestE2EPythonStarttls(t *testing.T) {
	d := harness.StartDovecot(t)
	// -v: the verbose log too must hold no password
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.RawLoginCmd(), Args: []string{"-v"}})
	r := harness.RunPython(t, p, "starttls")
	if !strings.HasPrefix(r.Greeting, "* OK") {
		t.Errorf("greeting %q", r.Greeting)
	}
	if !harness.HasCap(r.CapsBefore, "STARTTLS") || !harness.HasCap(r.CapsBefore, "LOGINDISABLED") || harness.AnyAuth(r.CapsBefore) != "" {
		t.Errorf("capabilities before TLS %v: want STARTTLS and LOGINDISABLED, no AUTH=", r.CapsBefore)
	}
	if !strings.HasPrefix(r.LoginBefore, "NO") || !strings.Contains(r.LoginBefore, "[PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS answered %q, want NO [PRIVACYREQUIRED]", r.LoginBefore)
	}
	if harness.HasCap(r.CapsAfter, "STARTTLS") || harness.HasCap(r.CapsAfter, "LOGINDISABLED") || harness.AnyAuth(r.CapsAfter) == "" {
		t.Errorf("capabilities after TLS %v: want no STARTTLS, no LOGINDISABLED, Dovecot's AUTH=", r.CapsAfter)
	}
	if r.TLSVersion != "TLSv1.3" && r.TLSVersion != "TLSv1.2" {
		t.Errorf("TLS version %q", r.TLSVersion)
	}
	if r.Login != "OK" || r.Exists != 3 || !strings.HasPrefix(r.Append, "OK") || r.ExistsAfter != 4 || r.Logout != "BYE" {
		t.Errorf("session: %+v", r)
	}
	if !r.Identical {
		t.Errorf("fetched message differs from the appended one: sent %d bytes, got %d", r.SentLen, r.FetchedLen)
	}
	// Dovecot's first LOGIN is the one after TLS (the appended body
	// holds a LOGIN line too, inside a literal); before it, neither the
	// refused LOGIN nor the STARTTLS reached Dovecot
	raw := d.Raw(t)
	i := strings.Index(raw, "LOGIN")
	if i < 0 || !strings.HasPrefix(raw[i:], `LOGIN alice "secret"`) {
		t.Errorf("Dovecot's first LOGIN is not the one after TLS:\n%q", raw)
	} else if strings.Contains(strings.ToUpper(raw[:i]), "STARTTLS") {
		t.Errorf("Dovecot received the STARTTLS command:\n%q", raw[:i])
	}
	if n := strings.Count(d.Log(t), "Login: user=<alice>"); n != 1 {
		t.Errorf("Dovecot logged %d logins of alice, want 1:\n%s", n, d.Log(t))
	}
	harness.CheckSessionLog(t, p, harness.ClientPortFromLog(t, p), "imap", "yes", "yes")
	harness.NoSecrets(t, p, d)
}

// TestE2EPythonImplicit: IMAP4_SSL through the implicit-TLS pipeline,
// once to Dovecot's login server (LOGIN) and once to its stdio imap
// (PREAUTH, relayed since the channel is already private).
func TestE2EPythonImplicit(t *testing.T) {
	d := harness.StartDovecot(t)
	t.Run("login", func(t *testing.T) {
		p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imaps", Backend: d.LoginCmd()})
		r := harness.RunPython(t, p, "implicit")
		if !strings.HasPrefix(r.Greeting, "* OK") || harness.HasCap(r.CapsAfter, "STARTTLS") || harness.HasCap(r.CapsAfter, "LOGINDISABLED") {
			t.Errorf("greeting %q, capabilities %v: want * OK, no STARTTLS, no LOGINDISABLED", r.Greeting, r.CapsAfter)
		}
		if r.Login != "OK" || r.Exists < 3 || !r.Identical || r.ExistsAfter != r.Exists+1 {
			t.Errorf("session: %+v", r)
		}
		harness.NoSecrets(t, p, d)
	})
	t.Run("preauth", func(t *testing.T) {
		p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imaps", Backend: d.ImapCmd("bob")})
		r := harness.RunPython(t, p, "preauth")
		if !strings.HasPrefix(r.Greeting, "* PREAUTH") {
			t.Errorf("greeting %q, want PREAUTH relayed under implicit TLS", r.Greeting)
		}
		if harness.HasCap(r.CapsAfter, "STARTTLS") {
			t.Errorf("capabilities %v hold STARTTLS under implicit TLS", r.CapsAfter)
		}
		if r.Exists != 0 || !r.Identical || r.ExistsAfter != 1 {
			t.Errorf("session: %+v", r)
		}
		// the message is in bob's Maildir, written by Dovecot
		files, _ := filepath.Glob(filepath.Join(d.Maildir("bob"), "*", "*"))
		found := false
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "Subject: binary-ish") {
				found = true
			}
		}
		if !found {
			t.Errorf("the appended message is not in bob's Maildir")
		}
	})
}

// TestE2ERequiredPlaintext: what a client sees before TLS in required
// mode, with a raw client: the greeting's and CAPABILITY's lists carry
// STARTTLS and LOGINDISABLED and no AUTH=; LOGIN and AUTHENTICATE get
// NO [PRIVACYREQUIRED] from the proxy and never reach Dovecot.
func TestE2ERequiredPlaintext(t *testing.T) {
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.RawLoginCmd(), Args: []string{"-v"}})
	c := harness.DialIMAP(t, p.Addr)
	g := c.Line()
	caps := harness.CapsOf(g)
	if !strings.HasPrefix(g, "* OK") || !harness.HasCap(caps, "STARTTLS") || !harness.HasCap(caps, "LOGINDISABLED") || harness.AnyAuth(caps) != "" {
		t.Errorf("greeting %q: want * OK [CAPABILITY ... STARTTLS LOGINDISABLED], no AUTH=", g)
	}
	un, tagged := c.Cmd("a", "CAPABILITY")
	if !strings.HasPrefix(tagged, "a OK") || len(un) != 1 {
		t.Fatalf("CAPABILITY: %q %q", un, tagged)
	}
	caps = harness.CapsOf(un[0])
	if !harness.HasCap(caps, "STARTTLS") || !harness.HasCap(caps, "LOGINDISABLED") || harness.AnyAuth(caps) != "" || !harness.HasCap(caps, "IMAP4rev1") {
		t.Errorf("CAPABILITY before TLS %q: want IMAP4rev1 STARTTLS LOGINDISABLED, no AUTH=", un[0])
	}
	if _, tagged := c.Cmd("b", "LOGIN alice secret"); !strings.HasPrefix(tagged, "b NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS: %q, want b NO [PRIVACYREQUIRED]", tagged)
	}
	if _, tagged := c.Cmd("c", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA=="); !strings.HasPrefix(tagged, "c NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before TLS: %q, want c NO [PRIVACYREQUIRED]", tagged)
	}
	if _, tagged := c.Cmd("d", "NOOP"); !strings.HasPrefix(tagged, "d OK") {
		t.Errorf("NOOP: %q", tagged)
	}
	if un, tagged := c.Cmd("e", "LOGOUT"); !strings.HasPrefix(tagged, "e OK") || len(un) == 0 || !strings.HasPrefix(un[0], "* BYE") {
		t.Errorf("LOGOUT: %q %q", un, tagged)
	}
	if rest, err := c.Rest(); err != nil || rest != "" {
		t.Errorf("after LOGOUT: %q, %v; want a clean end of file", rest, err)
	}
	c.Close()
	line := p.WaitLog(t, `stunnel-imap: info: remote=`, 15*time.Second)
	if f := harness.LogFields(line); f["starttls"] != "no" || f["auth"] != "no" {
		t.Errorf("log line without starttls=no: %s", line)
	}
	if raw := strings.ToUpper(d.Raw(t)); !strings.Contains(raw, "D NOOP\r\n") {
		t.Errorf("Dovecot did not receive the NOOP (relay broken?):\n%q", raw)
	}
	harness.NeverReachedDovecot(t, p, d, "LOGIN", "AUTHENTICATE", "AGFSAWNLAHNLY3JLDA")
}

// TestE2EGoClientLog: a Go client through STARTTLS, LOGIN, SELECT and
// LOGOUT; then the session's log line: remote address and port, mode,
// starttls, TLS version, authentication, bytes each way.
func TestE2EGoClientLog(t *testing.T) {
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	c := harness.DialIMAP(t, p.Addr)
	cport := c.Conn.LocalAddr().(*net.TCPAddr).Port
	c.Line()
	st := c.StartTLS("a", harness.ClientTLS(t, p.CA, "localhost"))
	if un, tagged := c.Cmd("b", "CAPABILITY"); !strings.HasPrefix(tagged, "b OK") || len(un) != 1 || harness.HasCap(harness.CapsOf(un[0]), "STARTTLS") || harness.HasCap(harness.CapsOf(un[0]), "LOGINDISABLED") || harness.AnyAuth(harness.CapsOf(un[0])) == "" {
		t.Errorf("CAPABILITY after TLS: %q %q", un, tagged)
	}
	if _, tagged := c.Cmd("c", "STARTTLS"); !strings.HasPrefix(tagged, "c BAD") {
		t.Errorf("a second STARTTLS: %q, want BAD", tagged)
	}
	if _, tagged := c.Cmd("d", `LOGIN "alice" {6+}`+"\r\nsecret"); !strings.HasPrefix(tagged, "d OK") {
		t.Errorf("LOGIN with a literal password after TLS: %q", tagged)
	}
	if un, tagged := c.Cmd("e", "SELECT INBOX"); !strings.HasPrefix(tagged, "e OK") || !strings.Contains(strings.Join(un, "\n"), "* 3 EXISTS") {
		t.Errorf("SELECT: %q %q", un, tagged)
	}
	c.Cmd("f", "LOGOUT")
	if rest, err := c.Rest(); err != nil || rest != "" {
		t.Errorf("after LOGOUT: %q, %v; want a clean end of file", rest, err)
	}
	c.Close()
	f := harness.CheckSessionLog(t, p, cport, "imap", "yes", "yes")
	want := map[uint16]string{0x0303: "1.2", 0x0304: "1.3"}[st.Version]
	if f["tls"] != want {
		t.Errorf("log line TLS version %q, the client negotiated %s", f["tls"], want)
	}
	if lines := strings.Count(p.Stderr(), "stunnel-imap: info:"); lines != 1 {
		t.Errorf("%d info lines for one session:\n%s", lines, p.Stderr())
	}
	p.WaitNoChildren(t, 15*time.Second)
	harness.NoSecrets(t, p, d)
}

// TestE2EOpenssl: openssl s_client -starttls imap verifies the chain,
// sees a capability list without STARTTLS and LOGINDISABLED, and logs in.
func TestE2EOpenssl(t *testing.T) {
	harness.Need(t, "openssl")
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	s := harness.SClient(t, p, "imap", "a CAPABILITY\nb LOGIN alice secret\nc SELECT INBOX\nd LOGOUT\n")
	if !strings.Contains(s, "Verify return code: 0 (ok)") {
		t.Errorf("the certificate did not verify:\n%s", s)
	}
	// the first capability list after TLS: the answer to "a CAPABILITY"
	var capLine string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "* CAPABILITY ") && capLine == "" {
			capLine = strings.TrimSpace(l)
		}
	}
	caps := harness.CapsOf(capLine)
	if len(caps) == 0 || harness.HasCap(caps, "STARTTLS") || harness.HasCap(caps, "LOGINDISABLED") || harness.AnyAuth(caps) == "" {
		t.Errorf("capability after TLS %q: want no STARTTLS, no LOGINDISABLED, an AUTH=", capLine)
	}
	for _, want := range []string{"b OK ", "* 3 EXISTS", "c OK ", "* BYE", "d OK "} {
		if !strings.Contains(s, want) {
			t.Errorf("s_client session lacks %q:\n%s", want, s)
		}
	}
	harness.CheckSessionLog(t, p, harness.ClientPortFromLog(t, p), "imap", "yes", "yes")
	harness.NoSecrets(t, p, d)
}

// seedMessage returns the bytes of alice's seed message number n as
// Dovecot stores them.
func seedMessage(t *testing.T, d *harness.Dovecot, n int) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Maildir("alice"), "*", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), "Subject: seed message "+strconv.Itoa(n)+"\r\n") {
			return b
		}
	}
	t.Fatalf("seed message %d not found in %s", n, d.Maildir("alice"))
	return nil
}

// TestE2ECurl: curl imap:// with --ssl-reqd (STARTTLS, then its own
// choice of LOGIN or AUTHENTICATE) lists the mailboxes and fetches a
// message, identical to the one in the Maildir.
func TestE2ECurl(t *testing.T) {
	harness.Need(t, "curl")
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	base := "imap://localhost:" + strconv.Itoa(p.Port)
	curl := func(args ...string) string {
		t.Helper()
		a := append([]string{"-sS", "--ssl-reqd", "--cacert", p.CA, "--max-time", "30", "-u", "alice:secret"}, args...)
		cmd := exec.Command("curl", a...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := harness.RunBounded(t, cmd, 60*time.Second)
		if err != nil {
			t.Fatalf("curl %v: %v: %s\npipeline:\n%s", args, err, stderr.String(), p.Stderr())
		}
		return string(out)
	}
	if list := curl(base + "/"); !strings.Contains(list, "INBOX") {
		t.Errorf("curl LIST lacks INBOX: %q", list)
	}
	got := curl(base + "/INBOX;UID=2")
	if want := string(seedMessage(t, d, 2)); got != want {
		t.Errorf("curl fetched\n%q\nwant\n%q", got, want)
	}
	// plain imap:// without TLS to a required-STARTTLS port: LOGIN is
	// refused, curl fails, Dovecot never sees alice
	cmd := exec.Command("curl", "-sS", "--max-time", "30", "-u", "alice:secret", base+"/")
	if _, err := harness.RunBounded(t, cmd, 60*time.Second); err == nil {
		t.Errorf("curl without TLS logged in through a required-STARTTLS port")
	}
	if n := strings.Count(d.Log(t), "Login: user=<alice>"); n != 2 {
		t.Errorf("Dovecot logged %d logins of alice, want 2 (the two TLS sessions):\n%s", n, d.Log(t))
	}
	p.WaitLines(t, 3, 15*time.Second)
	harness.NoSecrets(t, p, d)
}

// TestE2EMbsync: mbsync syncs alice's INBOX into a local Maildir, over
// STARTTLS and over implicit TLS.
func TestE2EMbsync(t *testing.T) {
	harness.Need(t, "mbsync")
	d := harness.StartDovecot(t)
	for _, tc := range []struct{ name, mode, tlsType string }{
		{"starttls", "imap", "STARTTLS"},
		{"implicit", "imaps", "IMAPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: tc.mode, Backend: d.LoginCmd()})
			dir := t.TempDir()
			local := filepath.Join(dir, "local")
			rc := filepath.Join(dir, "mbsyncrc")
			if err := os.Mkdir(local, 0o700); err != nil {
				t.Fatal(err)
			}
			conf := strings.Join([]string{
				"IMAPAccount alice",
				"Host localhost",
				"Port " + strconv.Itoa(p.Port),
				"User alice",
				"Pass secret",
				"SSLType " + tc.tlsType,
				"CertificateFile " + p.CA,
				"",
				"IMAPStore alice-far",
				"Account alice",
				"",
				"MaildirStore alice-near",
				"Path " + local + "/",
				"Inbox " + local + "/INBOX",
				"",
				"Channel alice",
				"Far :alice-far:",
				"Near :alice-near:",
				"Patterns INBOX",
				"Create Near",
				"SyncState *",
				"",
			}, "\n")
			if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("mbsync", "-c", rc, "-a")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := harness.RunBounded(t, cmd, 60*time.Second)
			if err != nil {
				t.Fatalf("mbsync: %v\n%s\n%s\npipeline:\n%s", err, out, stderr.String(), p.Stderr())
			}
			var got []string
			for _, sub := range []string{"new", "cur"} {
				files, _ := filepath.Glob(filepath.Join(local, "INBOX", sub, "*"))
				got = append(got, files...)
			}
			if len(got) < 3 {
				t.Fatalf("mbsync brought %d messages, want 3 or more", len(got))
			}
			seeds := 0
			for _, f := range got {
				b, _ := os.ReadFile(f)
				for n := 1; n <= 3; n++ {
					// Mbsync stores lines with LF
					if strings.Contains(string(b), "Subject: seed message "+strconv.Itoa(n)+"\n") {
						seeds++
					}
				}
			}
			if seeds != 3 {
				t.Errorf("%d of the 3 seed messages arrived", seeds)
			}
			mode := tc.mode
			line := p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
			f := harness.LogFields(line)
			if mode != "" && f["mode"] != mode {
				t.Errorf("log line mode: %s", line)
			}
			harness.NoSecrets(t, p, d)
		})
	}
}
