package harness

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// IMAPClient is a raw IMAP client for the tests: it writes exactly the
// bytes it is given and reads the answers a line at a time, so tests
// can send what no real client would.
type IMAPClient struct {
	t      testing.TB
	Conn   net.Conn
	Reader *bufio.Reader
}

// DialIMAP connects to addr with a 30 s deadline on the whole exchange
// (a hang guard, not a timing assertion); closed when the test ends.
func DialIMAP(t testing.TB, addr string) *IMAPClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("unable to connect to %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return NewIMAPClient(t, c)
}

// NewIMAPClient is an IMAPClient on conn, already connected (no
// deadline, no cleanup: the caller's).
func NewIMAPClient(t testing.TB, conn net.Conn) *IMAPClient {
	return &IMAPClient{t: t, Conn: conn, Reader: bufio.NewReader(conn)}
}

// Send writes s as it is, in one write.
func (c *IMAPClient) Send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("unable to send %q: %v", s, err)
	}
}

// Line reads one line and returns it without its CRLF.
func (c *IMAPClient) Line() string {
	c.t.Helper()
	l, err := c.Reader.ReadString('\n')
	if err != nil {
		c.t.Fatalf("unable to read a line (got %q): %v", l, err)
	}
	return strings.TrimRight(l, "\r\n")
}

// Cmd sends "tag command\r\n" and reads up to the tagged response,
// returning the untagged lines and the tagged line.
func (c *IMAPClient) Cmd(tag, command string) (untagged []string, tagged string) {
	c.t.Helper()
	c.Send(tag + " " + command + "\r\n")
	return c.Until(tag)
}

// Until reads lines up to the one tagged tag.
func (c *IMAPClient) Until(tag string) (untagged []string, tagged string) {
	c.t.Helper()
	for {
		l := c.Line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// StartTLS runs "tag STARTTLS", expects OK, and does the handshake with
// cfg; the client speaks TLS from then on.
func (c *IMAPClient) StartTLS(tag string, cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	if _, tagged := c.Cmd(tag, "STARTTLS"); !strings.HasPrefix(tagged, tag+" OK") {
		c.t.Fatalf("STARTTLS refused: %q", tagged)
	}
	if c.Reader.Buffered() != 0 {
		c.t.Fatalf("%d plaintext bytes after the STARTTLS OK", c.Reader.Buffered())
	}
	return c.TLS(cfg)
}

// TLS does a TLS handshake on the connection with cfg (implicit TLS, or
// after STARTTLS) and returns the connection state.
func (c *IMAPClient) TLS(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	tc := tls.Client(c.Conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake failed: %v", err)
	}
	c.Conn = tc
	c.Reader = bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

// Rest reads until end of file and returns what came, with the error
// that ended it (nil for a clean EOF).
func (c *IMAPClient) Rest() (string, error) {
	b, err := io.ReadAll(c.Reader)
	return string(b), err
}

// RestClosed reads until the proxy ends the connection, closes it (a
// real client closes on end of file; the proxy lingers for it) and
// returns what came. A reset is an acceptable end for a refused session;
// any other error (DialIMAP's deadline: the proxy never ended it) fails
// the test.
func (c *IMAPClient) RestClosed() string {
	c.t.Helper()
	rest, err := c.Rest()
	c.Close()
	if err != nil && !isReset(err) {
		c.t.Errorf("the connection did not end cleanly: %v (after %q)", err, rest)
	}
	return rest
}

// isReset reports a connection reset, an acceptable way for a refused
// session to end.
func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// Close closes the connection.
func (c *IMAPClient) Close() { c.Conn.Close() }

// SClient runs openssl s_client against the pipeline, with -starttls
// proto (imap, pop3; "" for implicit TLS), verifying the certificate for
// localhost, and types input; it returns what s_client printed, and
// fails the test when s_client fails.
func SClient(t *testing.T, p *Pipeline, proto, input string) string {
	t.Helper()
	Need(t, "openssl")
	args := []string{"s_client"}
	if proto != "" {
		args = append(args, "-starttls", proto)
	}
	args = append(args, "-connect", p.Addr, "-CAfile", p.CA, "-verify_return_error",
		"-verify_hostname", "localhost", "-servername", "localhost", "-crlf", "-ign_eof")
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = strings.NewReader(input)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s\n%s\npipeline:\n%s", err, out, stderr.String(), p.Stderr())
	}
	return string(out)
}

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

// DialFrom connects to addr from the local address src (127.0.0.x, ::1).
func DialFrom(t testing.TB, src, addr string) *IMAPClient {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("unable to connect to %s from %s: %v", addr, src, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	return NewIMAPClient(t, c)
}

// Login connects from src, gets to TLS as mode wants it (STARTTLS, or
// implicit), logs in as user and returns the tagged answer and the
// time from sending LOGIN to it.
func Login(t testing.TB, p *Pipeline, mode, src, addr, user, pass string) (string, time.Duration) {
	t.Helper()
	c := DialFrom(t, src, addr)
	defer c.Close()
	cfg := ClientTLS(t, p.CA, "localhost")
	if mode == "imaps" {
		c.TLS(cfg)
	}
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if mode == "imap" {
		c.StartTLS("s", cfg)
	}
	start := time.Now()
	_, tagged := c.Cmd("a", "LOGIN "+user+" "+pass)
	took := time.Since(start)
	c.Cmd("z", "LOGOUT")
	return tagged, took
}

// NewMessage is a message with a unique Message-ID, CRLF line ends, a
// long line and 8-bit text, as clients append it.
func NewMessage(id string) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\n")
	b.WriteString("To: Bob <bob@example.org>\r\n")
	b.WriteString("Subject: through imap-tls " + id + "\r\n")
	b.WriteString("Date: Thu, 26 Nov 2026 23:00:00 +0000\r\n")
	b.WriteString("Message-ID: <" + id + "@imap-tls.test>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString("Grüße aus dem Tunnel.\r\n")
	b.WriteString(strings.Repeat("0123456789", 90) + "\r\n")
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "line %d of the body, some padding to make it longer than one TLS record\r\n", i)
	}
	return []byte(b.String())
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

// RunClient runs the client argv with stdin, bounded by timeout (see
// RunBounded), and returns its stdout; it fails the test, naming the
// client name, when the client fails.
func RunClient(t *testing.T, name string, timeout time.Duration, stdin []byte, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := RunBounded(t, cmd, timeout)
	if err != nil {
		t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", name, err, out, errb.String())
	}
	return string(out)
}

// CmdNoFatal is Cmd for goroutines: errors come back as the tagged text.
func (c *IMAPClient) CmdNoFatal(tag, command string) ([]string, string) {
	if _, err := c.Conn.Write([]byte(tag + " " + command + "\r\n")); err != nil {
		return nil, err.Error()
	}
	var untagged []string
	for {
		l, err := c.Reader.ReadString('\n')
		if err != nil {
			return untagged, fmt.Sprintf("%q: %v", l, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// FakeStarttlsBackend is a tiny stdio IMAP server (sh) that advertises
// STARTTLS and LOGINDISABLED itself, in its greeting, in CAPABILITY and
// in tagged [CAPABILITY] codes, and answers OK to everything, STARTTLS
// included: only the proxy's rewriting keeps them from the client.
const FakeStarttlsBackend = `printf '* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] fake\r\n'
while IFS= read -r line; do
	tag=${line%% *}
	case $line in
	*[Cc][Aa][Pp][Aa][Bb]*) printf '* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\n%s OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] done\r\n' "$tag" ;;
	*[Ll][Oo][Gg][Oo][Uu][Tt]*) printf '* BYE fake\r\n%s OK bye\r\n' "$tag"; exit 0 ;;
	*) printf '%s OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] fine\r\n' "$tag" ;;
	esac
done`

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
