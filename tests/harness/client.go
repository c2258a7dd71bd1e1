package harness

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os/exec"
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
