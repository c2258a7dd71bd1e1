package tests

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestBenchFakeimapdPOP3: fakeimapd -pop3 answers a POP3 session with
// the message of -s bytes, ended by a lone dot, and nothing after QUIT.
func TestBenchFakeimapdPOP3(t *testing.T) {
	cmd := exec.Command(harness.Bin(t, "fakeimapd"), "-s", "1000", "-pop3")
	cmd.Stdin = strings.NewReader("CAPA\r\nUSER a\r\nPASS b\r\nSTAT\r\nRETR 2\r\nRETR 1\r\nBOGUS\r\nQUIT\r\nNOOP\r\n")
	out, errOut, code := harness.ExitCode(t, cmd)
	if code != 0 || errOut != "" {
		t.Fatalf("fakeimapd -pop3 exited %d: %s", code, errOut)
	}
	head := "+OK fakeimapd ready\r\n+OK\r\nUSER\r\nTOP\r\nUIDL\r\nPIPELINING\r\n.\r\n+OK\r\n+OK\r\n+OK 1 1002\r\n-ERR no such message\r\n+OK 1002 octets\r\nFrom: "
	if !strings.HasPrefix(out, head) {
		t.Fatalf("fakeimapd -pop3 said %q, want it to start %q", out[:min(len(out), len(head)+20)], head)
	}
	msg, tail, ok := strings.Cut(out[len(head)-len("From: "):], "\r\n.\r\n")
	if !ok || len(msg)+2 != 1002 || tail != "-ERR unknown command\r\n+OK bye\r\n" {
		t.Errorf("message of %d bytes (want 1000 and its CRLF), then %q", len(msg), tail)
	}
}

// TestBenchLoadgenPOP3: loadgen -pop3 runs whole POP3 sessions (CAPA,
// USER, PASS, RETR 1, QUIT) against fakeimapd -pop3 under tcpserver and
// counts the message's bytes.
func TestBenchLoadgenPOP3(t *testing.T) {
	harness.Need(t, "tcpserver")
	p := &harness.Pipeline{}
	harness.StartTcpserver(t, p, false, nil, []string{harness.Bin(t, "fakeimapd"), "-s", "100k", "-pop3"})
	cmd := exec.Command(harness.Bin(t, "loadgen"), "-a", p.Addr, "-m", "plain", "-pop3", "-n", "5", "-fetch")
	out, err := harness.RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("loadgen -pop3: %v: %s", err, out)
	}
	m := regexp.MustCompile(`(?m)^result .*sessions=5 errors=0 .*bytes=(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("loadgen -pop3 said %q, want 5 sessions and no error", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n != 5*(100<<10+2) {
		t.Errorf("loadgen counted %d bytes, want 5 messages of %d", n, 100<<10+2)
	}
}
