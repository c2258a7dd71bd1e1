// Issue 21 through the real chain (tcpserver, makesock, setuidgid-chroot,
// stunnel-imap, the key process): a well-behaved client and a server that
// gives up on a literal late. With -n imap no literal reaches the server
// before TLS, so the client's octets can never become its commands; with
// -n imap- they still can, as the page says.
package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// lateServer is a stdio IMAP server that records every byte it reads
// (into the file named by its argument) and gives up on every literal
// late: it sends "+" for {n} (none for {n+}), waits 0.3 s, so that the
// client's octets have arrived, answers the command with a tagged NO
// without reading the literal, and reads on as if the literal's octets
// were commands. Every other line gets a tagged OK.
const lateServer = `import re, sys, time
rec = open(sys.argv[1], "ab", buffering=0)
inp, out = sys.stdin.buffer, sys.stdout.buffer
def say(b):
    out.write(b)
    out.flush()
say(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] late ready\r\n")
while True:
    line = inp.readline()
    if not line:
        break
    rec.write(line)
    tag = line.split(b" ", 1)[0]
    m = re.search(rb"\{(\d+)(\+?)\}\r?\n$", line)
    if m:
        if not m.group(2):
            say(b"+ go\r\n")
        time.sleep(0.3)
        say(tag + b" NO given up on the literal\r\n")
        continue
    say(tag + b" OK done\r\n")
`

// startLate starts the pipeline of mode in front of lateServer and
// returns it with the path of the server's recorded input.
func startLate(t *testing.T, mode string) (*harness.Pipeline, string) {
	t.Helper()
	harness.Need(t, "python3")
	dir := t.TempDir()
	script := filepath.Join(dir, "lateimapd.py")
	if err := os.WriteFile(script, []byte(lateServer), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "input")
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: []string{"python3", script, rec}})
	return p, rec
}

// serverInput is what the server read, once the session has ended.
func serverInput(t *testing.T, p *harness.Pipeline, rec string) string {
	t.Helper()
	p.SessionEnd(t)
	b, err := os.ReadFile(rec)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestE2ELiteralGivenUpLate: with -n imap, before TLS, the client's
// literal commands get the proxy's BAD ({n}: no "+", so the client sends
// no octets; {n+}: the octets it sends anyway are dropped), the server
// reads none of it, `b LOGIN` never reaches it, and the warning is
// logged once and counted twice.
func TestE2ELiteralGivenUpLate(t *testing.T) {
	p, rec := startLate(t, "imap")
	c := harness.DialIMAP(t, p.Addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	// RFC 9051 §4.3: the line, then the octets only after a "+".
	c.Send("a NOOP {20}\r\n")
	const bad = " BAD [PRIVACYREQUIRED] No literals before TLS: use STARTTLS first"
	if l := c.Line(); l != "a"+bad {
		t.Fatalf("the literal's line got %q, want %q", l, "a"+bad)
	}
	// LITERAL+ (the greeting advertises it): the octets follow at once.
	c.Send("b NOOP {22+}\r\nc LOGIN alice secret\r\n\r\n")
	if l := c.Line(); l != "b"+bad {
		t.Fatalf("the {n+} literal's line got %q, want %q", l, "b"+bad)
	}
	// The server is there, and reads the next command.
	if _, tagged := c.Cmd("d", "NOOP"); tagged != "d OK done" {
		t.Fatalf("d NOOP got %q", tagged)
	}
	c.Close()
	in := serverInput(t, p, rec)
	if in != "d NOOP\r\n" {
		t.Errorf("the server read %q, want only %q", in, "d NOOP\r\n")
	}
	log := p.Stderr()
	if n := strings.Count(log, "stunnel-imap: warning: client sent a literal before STARTTLS: refused; remote=127.0.0.1:"); n != 1 {
		t.Errorf("%d literal warnings, want 1:\n%s", n, log)
	}
	if !strings.Contains(log, " warnings=2 ") || !strings.Contains(log, " end=client-eof") {
		t.Errorf("the session's line lacks warnings=2 or end=client-eof:\n%s", log)
	}
}

// TestE2ELiteralGivenUpLateOptional is the control, and what imap-tls's
// page says of -n imap-: the same late server gets the client's literal
// as a command, a LOGIN in plaintext here. (It shows that lateServer
// really gives up late through the chain, so the test above can fail.)
func TestE2ELiteralGivenUpLateOptional(t *testing.T) {
	p, rec := startLate(t, "imap-")
	c := harness.DialIMAP(t, p.Addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	c.Send("a NOOP {20}\r\n")
	if l := c.Line(); l != "+ go" {
		t.Fatalf("the literal's line got %q, want the server's +", l)
	}
	c.Send("b LOGIN alice secret\r\n")
	if _, tagged := c.Until("a"); tagged != "a NO given up on the literal" {
		t.Fatalf("a NOOP got %q", tagged)
	}
	// The server took the literal's octets for a command and answered
	// it; the proxy relays that answer and reads the next command.
	c.Conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, tagged := c.Until("b"); tagged != "b OK done" {
		t.Fatalf("the literal, as a command, got %q", tagged)
	}
	c.Close()
	if in := serverInput(t, p, rec); !strings.Contains(in, "\nb LOGIN alice secret\r\n") {
		t.Errorf("the server read %q: the late give-up did not happen", in)
	}
}
