package harness

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SameMessages fails unless got (in any order) are the Maildir's
// messages, byte for byte; crlf false compares with LF line ends (what a
// local delivery writes).
func SameMessages(t *testing.T, what string, got, want []string, crlf bool) {
	t.Helper()
	norm := func(s string) string {
		if !crlf {
			s = strings.ReplaceAll(s, "\r\n", "\n")
		}
		return s
	}
	g := make([]string, len(got))
	for i := range got {
		g[i] = norm(got[i])
	}
	w := make([]string, len(want))
	for i := range want {
		w[i] = norm(want[i])
	}
	sort.Strings(g)
	sort.Strings(w)
	if strings.Join(g, "\x00") != strings.Join(w, "\x00") {
		t.Errorf("%s: the messages differ from the Maildir's\ngot  %q\nwant %q", what, g, w)
	}
}

// pyPOP3 drives poplib: stls (POP3 + stls, USER tried before) or
// implicit (POP3_SSL); it retrieves every message and prints JSON.
const pyPOP3 = `
import poplib, json, ssl, sys
host, port, ca, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
ctx = ssl.create_default_context(cafile=ca)
if mode == "stls":
    M = poplib.POP3(host, port, timeout=20)
    out["greeting"] = M.getwelcome().decode()
    out["capa_before"] = sorted(M.capa().keys())
    try:
        out["user_before"] = M.user("alice").decode()
    except poplib.error_proto as e:
        out["user_before"] = "error " + str(e)
    M.stls(context=ctx)
else:
    M = poplib.POP3_SSL(host, port, context=ctx, timeout=20)
    out["greeting"] = M.getwelcome().decode()
out["tls_version"] = M.sock.version()
out["capa_after"] = sorted(M.capa().keys())
M.user("alice")
out["pass"] = M.pass_("secret").decode()
n, size = M.stat()
out["count"] = n
msgs = []
for i in range(1, n + 1):
    resp, lines, octets = M.retr(i)
    msgs.append((b"\r\n".join(lines) + b"\r\n").decode("latin-1"))
out["messages"] = msgs
out["quit"] = M.quit().decode()
print(json.dumps(out))
`

type PyPOP3Result struct {
	Greeting   string   `json:"greeting"`
	CapaBefore []string `json:"capa_before"`
	UserBefore string   `json:"user_before"`
	TLSVersion string   `json:"tls_version"`
	CapaAfter  []string `json:"capa_after"`
	Pass       string   `json:"pass"`
	Count      int      `json:"count"`
	Messages   []string `json:"messages"`
	Quit       string   `json:"quit"`
}

// RunPoplib runs pyPOP3 in mode (stls or implicit) against port, trusting
// ca; logs, when it fails, says what the server side logged.
func RunPoplib(t *testing.T, port int, ca, mode string, logs func() string) PyPOP3Result {
	t.Helper()
	Need(t, Python)
	script := filepath.Join(t.TempDir(), "pop.py")
	if err := os.WriteFile(script, []byte(pyPOP3), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python, script, "localhost", strconv.Itoa(port), ca, mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("python poplib (%s): %v\n%s\nserver side:\n%s", mode, err, stderr.String(), logs())
	}
	var r PyPOP3Result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("poplib's report %q: %v", out, err)
	}
	for i, m := range r.Messages {
		r.Messages[i] = latin1(m)
	}
	return r
}

func latin1(s string) string { // JSON's text of latin-1 bytes, back to bytes
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}

func Has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const pythonClient = `
import imaplib, re, ssl, sys
mode, port, ca, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = open(path, 'rb').read()
ctx = ssl.create_default_context(cafile=ca)
if mode == 'imaps':
    c = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx)
else:
    c = imaplib.IMAP4('localhost', port)
    c.starttls(ctx)
c.login('alice', 'secret')
typ, data = c.select('INBOX')
assert typ == 'OK', data
typ, data = c.append('INBOX', None, None, msg)
assert typ == 'OK', data
uid = re.search(rb'APPENDUID \d+ (\d+)', data[0]).group(1).decode()
typ, data = c.uid('FETCH', uid, '(BODY.PEEK[])')
assert typ == 'OK', data
body = data[0][1]
c.logout()
sys.stdout.write('same' if body == msg else 'differ: %r' % body[:300])
`

// Python is Debian's interpreter (a pyenv one may come first in PATH).
const Python = "/usr/bin/python3"

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

// PyResult is what pyClient prints.
type PyResult struct {
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

// RunPython runs pyClient against p in mode and decodes its report.
func RunPython(t *testing.T, p *Pipeline, mode string) PyResult {
	t.Helper()
	Need(t, Python)
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(pyClient), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(Python, script, "localhost", strconv.Itoa(p.Port), p.CA, mode)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("python imaplib (%s) failed: %v\n%s\npipeline stderr:\n%s", mode, err, stderr.String(), p.Stderr())
	}
	var r PyResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("python printed %q: %v", out, err)
	}
	return r
}

// HasCap reports whether the capability list caps holds c (any case).
func HasCap(caps []string, c string) bool {
	for _, x := range caps {
		if strings.EqualFold(x, c) {
			return true
		}
	}
	return false
}

// CapsOf returns the capabilities in an untagged CAPABILITY line or in a
// [CAPABILITY ...] response code.
func CapsOf(line string) []string {
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

// AnyAuth returns the first AUTH= capability, or "".
func AnyAuth(caps []string) string {
	for _, c := range caps {
		if strings.HasPrefix(strings.ToUpper(c), "AUTH=") {
			return c
		}
	}
	return ""
}
