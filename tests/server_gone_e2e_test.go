// A server gone after its greeting and before login, through the real
// chain (tcpserver, makesock, setuidgid-chroot, stunnel-imap, the key
// process): a python stdio server greets, reads one command and exits
// without a word. The client is told (* BYE [UNAVAILABLE], -ERR
// [SYS/TEMP]), read here by Python's imaplib and poplib, in TLS; the log
// line says why. The controls: a server that says its own BYE, and a
// POP3 server that drops an idle client with its own -ERR, get nothing
// added. Run: go test ./tests/ -run TestE2EServerGone -v (as root).
package tests

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// goneServer is a stdio IMAP (argv[1] imap) or POP3 (pop3) server that
// greets, answers argv[3] commands (default 0: a client's CAPABILITY or
// CAPA before STARTTLS), and then, by argv[2]: none, reads one command
// and exits without a word; bye, reads one command, says * BYE and
// exits; idle (POP3), reads nothing, drops the client after 0.5 s with
// its own -ERR.
const goneServer = `import sys, time
proto, word = sys.argv[1], sys.argv[2]
answer = int(sys.argv[3]) if len(sys.argv) > 3 else 0
inp, out = sys.stdin.buffer, sys.stdout.buffer
def say(b):
    out.write(b)
    out.flush()
say(b"* OK [CAPABILITY IMAP4rev1] gone soon\r\n" if proto == "imap" else b"+OK gone soon\r\n")
for i in range(answer):
    cmd = inp.readline()
    if proto == "imap":
        say(b"* CAPABILITY IMAP4rev1\r\n" + cmd.split(b" ")[0] + b" OK done\r\n")
    else:
        say(b"+OK\r\nUSER\r\n.\r\n" if cmd.upper().startswith(b"CAPA") else b"+OK\r\n")
if word == "idle":
    time.sleep(0.5)
    say(b"-ERR Disconnected for inactivity.\r\n")
    sys.exit(0)
inp.readline()
if word == "bye":
    say(b"* BYE Going away\r\n")
`

// goneClient logs in as far as it can with imaplib or poplib (proto;
// implicit TLS when mode ends in s, else STARTTLS or STLS first, trusting
// ca) and prints the exception it raised, or what it got, then where it
// read it: the TLS version of its socket after STARTTLS (STLS), or
// implicit.
const goneClient = `
import imaplib, poplib, ssl, sys
proto, mode, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
implicit = mode.endswith('s')
c = None
try:
    if proto == 'imap':
        c = imaplib.IMAP4_SSL('localhost', port, ssl_context=ctx, timeout=20) if implicit else imaplib.IMAP4('localhost', port, timeout=20)
        if not implicit:
            c.starttls(ssl_context=ctx)  # then CAPABILITY: the server's one command
        print('answer ' + repr(c.noop()))
    else:
        c = poplib.POP3_SSL('localhost', port, context=ctx, timeout=20) if implicit else poplib.POP3('localhost', port, timeout=20)
        if not implicit:
            c.stls(context=ctx)
        print('answer ' + repr(c.user('alice')))  # the server's one command
except Exception as e:
    print(type(e).__name__ + ': ' + str(e))
sock = getattr(c, 'sock', None)
print('tls ' + ('implicit' if implicit else str(sock.version() if hasattr(sock, 'version') else None)))
`

// startGone starts the pipeline of mode in front of goneServer.
func startGone(t *testing.T, mode, proto, word, answer string) *harness.Pipeline {
	t.Helper()
	harness.Need(t, "python3")
	script := filepath.Join(t.TempDir(), "goneserver.py")
	if err := os.WriteFile(script, []byte(goneServer), 0o644); err != nil {
		t.Fatal(err)
	}
	return harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: []string{"python3", script, proto, word, answer}})
}

// TestE2EServerGone: imaplib and poplib, on each kind of port, read the
// proxy's BYE (-ERR) in TLS after the server went without a word, and
// the session's log line has the reason. On the STARTTLS ports the
// server first answers the client's CAPABILITY (CAPA), so that it goes
// after the client's STARTTLS (STLS): the BYE in TLS.
func TestE2EServerGone(t *testing.T) {
	const (
		bye = "abort: command: CAPABILITY => [UNAVAILABLE] Mail server unavailable, try again later" // imaplib's CAPABILITY at connect, or after STARTTLS
		err = "error_proto: b'-ERR [SYS/TEMP] Mail server unavailable, try again later'"             // the answer to USER
	)
	for _, tc := range []struct{ mode, proto, answer, told, tls string }{
		{"imap", "imap", "1", bye, "TLSv1.3"},
		{"imaps", "imap", "0", bye, "implicit"},
		{"pop3", "pop3", "1", err, "TLSv1.3"},
		{"pop3s", "pop3", "0", err, "implicit"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p := startGone(t, tc.mode, tc.proto, "none", tc.answer)
			out := harness.RunClient(t, "python3 "+tc.proto+"lib", 60*time.Second, nil, "python3", "-c", goneClient, tc.proto, tc.mode, strconv.Itoa(p.Port), p.CA)
			if want := tc.told + "\ntls " + tc.tls + "\n"; out != want {
				t.Errorf("python read:\n%s\nwant:\n%s", out, want)
			}
			line := p.SessionEnd(t)
			if !strings.Contains(line, " mode="+tc.mode+" ") || !strings.Contains(line, " auth=no ") || !strings.HasSuffix(line, ` reason="server closed the connection before login" end=server-eof`) {
				t.Errorf("the log line: %s\nwant ... reason=\"server closed the connection before login\" end=server-eof", line)
			}
		})
	}
}

// TestE2EServerGoneControls: a server that said its own last word gets
// nothing added, read with a raw client to the end of file: an IMAP
// server's * BYE after a command (before TLS on -n imap: NOOP needs
// none), a POP3 server's -ERR that drops an idle client. The log line
// then has no reason.
func TestE2EServerGoneControls(t *testing.T) {
	t.Run("imap BYE", func(t *testing.T) {
		p := startGone(t, "imap", "imap", "bye", "0")
		c := harness.DialIMAP(t, p.Addr)
		if g := c.Line(); !strings.HasPrefix(g, "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] gone soon") {
			t.Fatalf("greeting %q", g)
		}
		c.Send("a NOOP\r\n")
		if rest := c.RestClosed(); rest != "* BYE Going away\r\n" {
			t.Errorf("after the server's BYE the client read %q, want only the BYE", rest)
		}
		line := p.SessionEnd(t)
		if strings.Contains(line, "reason=") || !strings.HasSuffix(line, " end=server-eof") {
			t.Errorf("the log line: %s\nwant no reason, end=server-eof", line)
		}
	})
	t.Run("pop3 -ERR to an idle client", func(t *testing.T) {
		p := startGone(t, "pop3", "pop3", "idle", "0")
		c := harness.DialIMAP(t, p.Addr)
		if g := c.Line(); g != "+OK gone soon" {
			t.Fatalf("greeting %q", g)
		}
		if rest := c.RestClosed(); rest != "-ERR Disconnected for inactivity.\r\n" {
			t.Errorf("after the server's -ERR the client read %q, want only that -ERR", rest)
		}
		line := p.SessionEnd(t)
		if strings.Contains(line, "reason=") || !strings.HasSuffix(line, " end=server-eof") {
			t.Errorf("the log line: %s\nwant no reason, end=server-eof", line)
		}
	})
	// The same raw client, the server gone without a word: the BYE,
	// in plaintext before STARTTLS (the test above can fail).
	t.Run("imap without a word", func(t *testing.T) {
		p := startGone(t, "imap", "imap", "none", "0")
		c := harness.DialIMAP(t, p.Addr)
		c.Line()
		c.Send("a NOOP\r\n")
		if rest, want := c.RestClosed(), "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"; rest != want {
			t.Errorf("the client read %q, want %q", rest, want)
		}
		if line := p.SessionEnd(t); !strings.HasSuffix(line, ` reason="server closed the connection before login" end=server-eof`) {
			t.Errorf("the log line: %s", line)
		}
	})
}
