// End-to-end tests of stunnel-imap: the real pipeline (tcpserver,
// makesock, setuidgid-chroot, stunnel-imap) in front of a real Dovecot,
// driven by real clients: Python's imaplib, openssl s_client, curl and
// mbsync. Run: go test ./tests/ -run E2E -v (as root).
package tests

import (
	"bufio"
	"encoding/json"
	"io"
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
)

// python is Debian's interpreter (a pyenv one may come first in PATH).
const python = "/usr/bin/python3"

// pyClient drives imaplib. Modes: starttls (IMAP4 + starttls, LOGIN),
// implicit (IMAP4_SSL, LOGIN), preauth (IMAP4_SSL, greeted PREAUTH).
// It appends a message with an 8-bit body and fetches it back, and
// prints what it saw as JSON for the test to judge.
const pyClient = `
import imaplib, json, re, ssl, sys

host, port, ca, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
ctx = ssl.create_default_context(cafile=ca)
if mode == "starttls":
    M = imaplib.IMAP4(host, port, timeout=20)
    out["greeting"] = M.welcome.decode()
    out["caps_before"] = list(M.capabilities)
    try:
        typ, dat = M._simple_command("LOGIN", "alice", "secret")
        out["login_before"] = typ + " " + b" ".join(d for d in dat if d).decode()
    except M.error as e:
        out["login_before"] = "error " + str(e)
    M.starttls(ssl_context=ctx)
else:
    M = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=20)
    out["greeting"] = M.welcome.decode()
out["caps_after"] = list(M.capabilities)
out["tls_version"] = M.sock.version()
if mode != "preauth":
    typ, dat = M.login("alice", "secret")
    out["login"] = typ
typ, dat = M.select("INBOX")
out["exists"] = int(dat[0])
lines = [b"From: Alice <alice@example.org>", b"To: Bob <bob@example.org>",
         b"Subject: binary-ish", b"MIME-Version: 1.0",
         b"Content-Type: application/octet-stream", b"Content-Transfer-Encoding: 8bit", b""]
raw = bytes(b for b in range(1, 256) if b not in (10, 13))
for i in range(0, 64):
    lines.append(raw[(i * 7) % len(raw):] [:61] + b"\t" + bytes([0xff - i]))
lines += [b"x STARTTLS", b"y LOGIN alice secret", b"* PREAUTH not really", b"{5}", b"."]
msg = b"\r\n".join(lines) + b"\r\n"
typ, dat = M.append("INBOX", None, None, msg)
out["append"] = typ + " " + dat[-1].decode()
m = re.search(r"APPENDUID \d+ (\d+)", dat[-1].decode())
uid = m.group(1) if m else str(out["exists"] + 1)
M.noop()  # a server may announce the new message only now (Courier does)
typ, dat = M.uid("FETCH", uid, "(BODY.PEEK[])")
fetched = dat[0][1] if dat and isinstance(dat[0], tuple) else b""
out["sent_len"] = len(msg)
out["fetched_len"] = len(fetched)
out["identical"] = fetched == msg
typ, dat = M.select("INBOX")
out["exists_after"] = int(dat[0])
typ, dat = M.logout()
out["logout"] = typ
print(json.dumps(out))
`

// pyResult is what pyClient prints.
type pyResult struct {
	Greeting    string   `json:"greeting"`
	CapsBefore  []string `json:"caps_before"`
	LoginBefore string   `json:"login_before"`
	CapsAfter   []string `json:"caps_after"`
	TLSVersion  string   `json:"tls_version"`
	Login       string   `json:"login"`
	Exists      int      `json:"exists"`
	Append      string   `json:"append"`
	SentLen     int      `json:"sent_len"`
	FetchedLen  int      `json:"fetched_len"`
	Identical   bool     `json:"identical"`
	ExistsAfter int      `json:"exists_after"`
	Logout      string   `json:"logout"`
}

// runPython runs pyClient against p in mode and decodes its report.
func runPython(t *testing.T, p *pipeline, mode string) pyResult {
	t.Helper()
	need(t, python)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pyClient), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, "localhost", strconv.Itoa(p.Port), p.CA, mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := runBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("python imaplib (%s) failed: %v\n%s\npipeline stderr:\n%s", mode, err, stderr.String(), p.Stderr())
	}
	var r pyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("python printed %q: %v", out, err)
	}
	return r
}

// hasCap reports whether the capability list caps holds c (any case).
func hasCap(caps []string, c string) bool {
	for _, x := range caps {
		if strings.EqualFold(x, c) {
			return true
		}
	}
	return false
}

// capsOf returns the capabilities in an untagged CAPABILITY line or in a
// [CAPABILITY ...] response code.
func capsOf(line string) []string {
	if i := strings.Index(strings.ToUpper(line), "[CAPABILITY "); i >= 0 {
		rest := line[i+len("[CAPABILITY "):]
		if j := strings.IndexByte(rest, ']'); j >= 0 {
			return strings.Fields(rest[:j])
		}
	}
	if f := strings.Fields(line); len(f) > 2 && f[0] == "*" && strings.EqualFold(f[1], "CAPABILITY") {
		return f[2:]
	}
	return nil
}

// anyAuth returns the first AUTH= capability, or "".
func anyAuth(caps []string) string {
	for _, c := range caps {
		if strings.HasPrefix(strings.ToUpper(c), "AUTH=") {
			return c
		}
	}
	return ""
}

// logFields parses the key=value fields of a log line.
func logFields(line string) map[string]string {
	f := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			f[k] = v
		}
	}
	return f
}

// checkSessionLog finds the info line of the session that came from
// local port clientPort and checks its fields (remote, mode, starttls,
// tls, auth, in, out: stunnel-imap's one line per connection).
func checkSessionLog(t *testing.T, p *pipeline, clientPort int, mode, starttls, auth string) map[string]string {
	t.Helper()
	line := p.waitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(clientPort)+` `, 15*time.Second)
	f := logFields(line)
	if f["mode"] != mode {
		t.Errorf("log line: mode %q, want %q: %s", f["mode"], mode, line)
	}
	if f["starttls"] != starttls {
		t.Errorf("log line: starttls %q, want %q: %s", f["starttls"], starttls, line)
	}
	if v := f["tls"]; v != "1.2" && v != "1.3" {
		t.Errorf("log line: tls %q, want 1.2 or 1.3: %s", v, line)
	}
	if f["auth"] != auth {
		t.Errorf("log line: auth %q, want %q: %s", f["auth"], auth, line)
	}
	for _, k := range []string{"in", "out"} {
		if n, err := strconv.Atoi(f[k]); err != nil || n <= 0 {
			t.Errorf("log line: %s=%q, want a byte count: %s", k, f[k], line)
		}
	}
	if f["cipher"] == "" || f["cipher"] == "none" {
		t.Errorf("log line: no cipher: %s", line)
	}
	return f
}

// TestE2EDovecotHarness checks the harness itself: the private Dovecot
// answers a LOGIN on its socket and alice has the three seed messages.
func TestE2EDovecotHarness(t *testing.T) {
	d := startDovecot(t)
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
	pre, err := runBounded(t, cmd, 30*time.Second)
	if err != nil || !strings.HasPrefix(string(pre), "* PREAUTH ") || !strings.Contains(string(pre), "* 3 EXISTS") {
		t.Errorf("dovecot.sh imap: %v:\n%s", err, pre)
	}
	// stop: the master is gone when the script returns
	b, err := os.ReadFile(filepath.Join(d.Dir, "run", "master.pid"))
	if err != nil {
		t.Fatalf("no master.pid: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if out, err := exec.Command("sh", d.script, "stop", d.Dir).CombinedOutput(); err != nil {
		t.Errorf("dovecot.sh stop: %v: %s", err, out)
	}
	if pid <= 1 || syscall.Kill(pid, 0) == nil {
		t.Errorf("dovecot master %d still there after stop", pid)
	}
	// bad use of the script: usage, exit 100
	err = exec.Command("sh", d.script, "start").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 100 {
		t.Errorf("dovecot.sh start without DIR: %v, want exit 100", err)
	}
}

// TestE2EPythonStarttls: imaplib through the required-STARTTLS pipeline
// to Dovecot's login server: the plaintext capability list, LOGIN
// refused before TLS, then STARTTLS, LOGIN, SELECT, APPEND of an 8-bit
// message and FETCH of it, byte for byte.
func TestE2EPythonStarttls(t *testing.T) {
	d := startDovecot(t)
	// -v: the verbose log too must hold no password
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.RawLoginCmd(), Args: []string{"-v"}})
	r := runPython(t, p, "starttls")
	if !strings.HasPrefix(r.Greeting, "* OK") {
		t.Errorf("greeting %q", r.Greeting)
	}
	if !hasCap(r.CapsBefore, "STARTTLS") || !hasCap(r.CapsBefore, "LOGINDISABLED") || anyAuth(r.CapsBefore) != "" {
		t.Errorf("capabilities before TLS %v: want STARTTLS and LOGINDISABLED, no AUTH=", r.CapsBefore)
	}
	if !strings.HasPrefix(r.LoginBefore, "NO") || !strings.Contains(r.LoginBefore, "[PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS answered %q, want NO [PRIVACYREQUIRED]", r.LoginBefore)
	}
	if hasCap(r.CapsAfter, "STARTTLS") || hasCap(r.CapsAfter, "LOGINDISABLED") || anyAuth(r.CapsAfter) == "" {
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
	checkSessionLog(t, p, clientPortFromLog(t, p), "imap", "yes", "yes")
	noSecrets(t, p, d)
}

// TestE2EPythonImplicit: IMAP4_SSL through the implicit-TLS pipeline,
// once to Dovecot's login server (LOGIN) and once to its stdio imap
// (PREAUTH, relayed since the channel is already private).
func TestE2EPythonImplicit(t *testing.T) {
	d := startDovecot(t)
	t.Run("login", func(t *testing.T) {
		p := startPipeline(t, pipelineOpts{Mode: "imaps", Backend: d.LoginCmd()})
		r := runPython(t, p, "implicit")
		if !strings.HasPrefix(r.Greeting, "* OK") || hasCap(r.CapsAfter, "STARTTLS") || hasCap(r.CapsAfter, "LOGINDISABLED") {
			t.Errorf("greeting %q, capabilities %v: want * OK, no STARTTLS, no LOGINDISABLED", r.Greeting, r.CapsAfter)
		}
		if r.Login != "OK" || r.Exists < 3 || !r.Identical || r.ExistsAfter != r.Exists+1 {
			t.Errorf("session: %+v", r)
		}
		noSecrets(t, p, d)
	})
	t.Run("preauth", func(t *testing.T) {
		p := startPipeline(t, pipelineOpts{Mode: "imaps", Backend: d.ImapCmd("bob")})
		r := runPython(t, p, "preauth")
		if !strings.HasPrefix(r.Greeting, "* PREAUTH") {
			t.Errorf("greeting %q, want PREAUTH relayed under implicit TLS", r.Greeting)
		}
		if hasCap(r.CapsAfter, "STARTTLS") {
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
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.RawLoginCmd(), Args: []string{"-v"}})
	c := dialIMAP(t, p.Addr)
	g := c.Line()
	caps := capsOf(g)
	if !strings.HasPrefix(g, "* OK") || !hasCap(caps, "STARTTLS") || !hasCap(caps, "LOGINDISABLED") || anyAuth(caps) != "" {
		t.Errorf("greeting %q: want * OK [CAPABILITY ... STARTTLS LOGINDISABLED], no AUTH=", g)
	}
	un, tagged := c.Cmd("a", "CAPABILITY")
	if !strings.HasPrefix(tagged, "a OK") || len(un) != 1 {
		t.Fatalf("CAPABILITY: %q %q", un, tagged)
	}
	caps = capsOf(un[0])
	if !hasCap(caps, "STARTTLS") || !hasCap(caps, "LOGINDISABLED") || anyAuth(caps) != "" || !hasCap(caps, "IMAP4rev1") {
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
	line := p.waitLog(t, `stunnel-imap: info: remote=`, 15*time.Second)
	if f := logFields(line); f["starttls"] != "no" || f["auth"] != "no" {
		t.Errorf("log line without starttls=no: %s", line)
	}
	if raw := strings.ToUpper(d.Raw(t)); !strings.Contains(raw, "D NOOP\r\n") {
		t.Errorf("Dovecot did not receive the NOOP (relay broken?):\n%q", raw)
	}
	neverReachedDovecot(t, p, d, "LOGIN", "AUTHENTICATE", "AGFSAWNLAHNLY3JLDA")
}

// TestE2EGoClientLog: a Go client through STARTTLS, LOGIN, SELECT and
// LOGOUT; then the session's log line: remote address and port, mode,
// starttls, TLS version, authentication, bytes each way.
func TestE2EGoClientLog(t *testing.T) {
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	c := dialIMAP(t, p.Addr)
	cport := c.conn.LocalAddr().(*net.TCPAddr).Port
	c.Line()
	st := c.StartTLS("a", clientTLS(t, p.CA, "localhost"))
	if un, tagged := c.Cmd("b", "CAPABILITY"); !strings.HasPrefix(tagged, "b OK") || len(un) != 1 || hasCap(capsOf(un[0]), "STARTTLS") || hasCap(capsOf(un[0]), "LOGINDISABLED") || anyAuth(capsOf(un[0])) == "" {
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
	f := checkSessionLog(t, p, cport, "imap", "yes", "yes")
	want := map[uint16]string{0x0303: "1.2", 0x0304: "1.3"}[st.Version]
	if f["tls"] != want {
		t.Errorf("log line TLS version %q, the client negotiated %s", f["tls"], want)
	}
	if lines := strings.Count(p.Stderr(), "stunnel-imap: info:"); lines != 1 {
		t.Errorf("%d info lines for one session:\n%s", lines, p.Stderr())
	}
	p.waitNoChildren(t, 15*time.Second)
	noSecrets(t, p, d)
}

// TestE2EOpenssl: openssl s_client -starttls imap verifies the chain,
// sees a capability list without STARTTLS and LOGINDISABLED, and logs in.
func TestE2EOpenssl(t *testing.T) {
	need(t, "openssl")
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	s := sClient(t, p, "imap", "a CAPABILITY\nb LOGIN alice secret\nc SELECT INBOX\nd LOGOUT\n")
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
	caps := capsOf(capLine)
	if len(caps) == 0 || hasCap(caps, "STARTTLS") || hasCap(caps, "LOGINDISABLED") || anyAuth(caps) == "" {
		t.Errorf("capability after TLS %q: want no STARTTLS, no LOGINDISABLED, an AUTH=", capLine)
	}
	for _, want := range []string{"b OK ", "* 3 EXISTS", "c OK ", "* BYE", "d OK "} {
		if !strings.Contains(s, want) {
			t.Errorf("s_client session lacks %q:\n%s", want, s)
		}
	}
	checkSessionLog(t, p, clientPortFromLog(t, p), "imap", "yes", "yes")
	noSecrets(t, p, d)
}

// clientPortFromLog returns the remote port in the first info line (for
// clients whose local port the test cannot see).
func clientPortFromLog(t *testing.T, p *pipeline) int {
	t.Helper()
	line := p.waitLog(t, `stunnel-imap: info: .*127\.0\.0\.1:[0-9]+`, 15*time.Second)
	m := regexp.MustCompile(`127\.0\.0\.1:([0-9]+)`).FindStringSubmatch(line)
	n, _ := strconv.Atoi(m[1])
	return n
}

// seedMessage returns the bytes of alice's seed message number n as
// Dovecot stores them.
func seedMessage(t *testing.T, d *dovecot, n int) []byte {
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
	need(t, "curl")
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
	base := "imap://localhost:" + strconv.Itoa(p.Port)
	curl := func(args ...string) string {
		t.Helper()
		a := append([]string{"-sS", "--ssl-reqd", "--cacert", p.CA, "--max-time", "30", "-u", "alice:secret"}, args...)
		cmd := exec.Command("curl", a...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := runBounded(t, cmd, 60*time.Second)
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
	if _, err := runBounded(t, cmd, 60*time.Second); err == nil {
		t.Errorf("curl without TLS logged in through a required-STARTTLS port")
	}
	if n := strings.Count(d.Log(t), "Login: user=<alice>"); n != 2 {
		t.Errorf("Dovecot logged %d logins of alice, want 2 (the two TLS sessions):\n%s", n, d.Log(t))
	}
	p.waitLines(t, 3, 15*time.Second)
	noSecrets(t, p, d)
}

// TestE2EMbsync: mbsync syncs alice's INBOX into a local Maildir, over
// STARTTLS and over implicit TLS.
func TestE2EMbsync(t *testing.T) {
	need(t, "mbsync")
	d := startDovecot(t)
	for _, tc := range []struct{ name, mode, tlsType string }{
		{"starttls", "imap", "STARTTLS"},
		{"implicit", "imaps", "IMAPS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startPipeline(t, pipelineOpts{Mode: tc.mode, Backend: d.LoginCmd()})
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
			out, err := runBounded(t, cmd, 60*time.Second)
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
					// mbsync stores lines with LF
					if strings.Contains(string(b), "Subject: seed message "+strconv.Itoa(n)+"\n") {
						seeds++
					}
				}
			}
			if seeds != 3 {
				t.Errorf("%d of the 3 seed messages arrived", seeds)
			}
			mode := tc.mode
			line := p.waitLog(t, `stunnel-imap: info: `, 15*time.Second)
			f := logFields(line)
			if mode != "" && f["mode"] != mode {
				t.Errorf("log line mode: %s", line)
			}
			noSecrets(t, p, d)
		})
	}
}
