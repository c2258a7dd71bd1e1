// The STARTTLS attacks of issue 3, through the real pipeline with a raw
// TCP client and a real Dovecot behind it: what the client sends must
// never reach Dovecot as a command, and the client's connection must end
// cleanly with one log line and no process left behind.
package tests

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// rawSession starts a private Dovecot behind a required-STARTTLS
// pipeline (with more stunnel-imap options args) whose backend records
// every byte it receives (d.Raw), connects, and reads the greeting.
func rawSession(t *testing.T, args ...string) (*harness.Dovecot, *harness.Pipeline, *harness.IMAPClient) {
	t.Helper()
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.RawLoginCmd(), Args: args})
	c := harness.DialIMAP(t, p.Addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return d, p, c
}

// TestE2EAttackPipelinedAfterStarttls: commands sent in the same write
// as STARTTLS (the CVE-2011-0411 shape), or right behind it, are never
// answered in plaintext and never reach Dovecot; the bytes after the
// STARTTLS line start (and here break) the handshake, or are dropped.
func TestE2EAttackPipelinedAfterStarttls(t *testing.T) {
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.RawLoginCmd()})
	for _, tc := range []struct{ name, first, second string }{
		{"one write", "a STARTTLS\r\nx CAPABILITY\r\ny LOGIN alice secret\r\n", ""},
		{"bare LF", "a STARTTLS\nx CAPABILITY\ny LOGIN alice secret\n", ""},
		{"two writes", "a STARTTLS\r\n", "x CAPABILITY\r\ny LOGIN alice secret\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := harness.DialIMAP(t, p.Addr)
			if g := c.Line(); !strings.HasPrefix(g, "* OK") {
				t.Fatalf("greeting %q", g)
			}
			c.Send(tc.first)
			if tc.second != "" {
				c.Send(tc.second)
			}
			rest, _ := c.Rest()
			c.Close()
			if strings.HasPrefix(tc.first, "a STARTTLS\r\n") && !strings.HasPrefix(rest, "a OK") {
				t.Errorf("STARTTLS not answered OK: %q", rest)
			}
			for _, bad := range []string{"\nx ", "\ny ", "* CAPABILITY", "PRIVACYREQUIRED"} {
				if strings.Contains("\n"+rest, bad) {
					t.Errorf("a pipelined command was answered in plaintext (%q): %q", bad, rest)
				}
			}
		})
	}
	// the sessions end; what reached Dovecot holds none of it
	p.WaitLines(t, 3, 15*time.Second)
	p.WaitNoChildren(t, 15*time.Second)
	harness.NeverReachedDovecot(t, p, d, "STARTTLS", "CAPABILITY", "LOGIN")
}

// TestE2EAttackPipelinedHandshake: a ClientHello pipelined right behind
// STARTTLS in the same write (RFC 9051 allows it) still gets a working
// session: the proxy hands those bytes to TLS, not to Dovecot.
func TestE2EAttackPipelinedHandshake(t *testing.T) {
	d, p, c := rawSession(t)
	// collect the ClientHello's first flight, and send it with STARTTLS
	pw := &prefixWriter{conn: c.Conn, prefix: []byte("a STARTTLS\r\n")}
	tc := tls.Client(pw, harness.ClientTLS(t, p.CA, "localhost"))
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake behind a pipelined STARTTLS: %v\npipeline:\n%s", err, p.Stderr())
	}
	if string(pw.reply) != "a OK" && !strings.HasPrefix(string(pw.reply), "a OK") {
		t.Errorf("STARTTLS answer %q", pw.reply)
	}
	io.WriteString(tc, "b LOGIN alice secret\r\nc LOGOUT\r\n")
	b, _ := io.ReadAll(tc)
	if !strings.Contains(string(b), "b OK") {
		t.Errorf("LOGIN after a pipelined handshake: %q", b)
	}
	if raw := d.Raw(t); strings.Contains(strings.ToUpper(raw), "STARTTLS") || !strings.HasPrefix(raw, "b LOGIN") {
		t.Errorf("Dovecot received %q", raw)
	}
}

// prefixWriter is a net.Conn that sends prefix in the same write as the
// first bytes written to it, then reads and strips the plaintext line
// that answers the prefix.
type prefixWriter struct {
	conn   net.Conn
	prefix []byte
	sent   bool
	reply  []byte
	got    bool
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	if !w.sent {
		w.sent = true
		_, err := w.conn.Write(append(append([]byte{}, w.prefix...), b...))
		return len(b), err
	}
	return w.conn.Write(b)
}

func (w *prefixWriter) Read(b []byte) (int, error) {
	if !w.got {
		// the tagged OK, a byte at a time up to LF
		var one [1]byte
		for {
			if _, err := io.ReadFull(w.conn, one[:]); err != nil {
				return 0, err
			}
			if one[0] == '\n' {
				break
			}
			w.reply = append(w.reply, one[0])
		}
		w.got = true
	}
	return w.conn.Read(b)
}

func (w *prefixWriter) Close() error                       { return w.conn.Close() }
func (w *prefixWriter) LocalAddr() net.Addr                { return w.conn.LocalAddr() }
func (w *prefixWriter) RemoteAddr() net.Addr               { return w.conn.RemoteAddr() }
func (w *prefixWriter) SetDeadline(t time.Time) error      { return w.conn.SetDeadline(t) }
func (w *prefixWriter) SetReadDeadline(t time.Time) error  { return w.conn.SetReadDeadline(t) }
func (w *prefixWriter) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

// TestE2EAttackPreauthBackend: a backend that greets PREAUTH on a
// STARTTLS port (Dovecot's stdio imap) is never relayed: the client gets
// * BYE, the proxy logs a warning, the session ends.
func TestE2EAttackPreauthBackend(t *testing.T) {
	d := harness.StartDovecot(t)
	for _, mode := range []string{"imap", "imap-"} {
		t.Run(mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: d.ImapCmd("alice")})
			c := harness.DialIMAP(t, p.Addr)
			c.Send("a SELECT INBOX\r\n")
			rest := c.RestClosed()
			if !strings.HasPrefix(rest, "* BYE") || strings.Contains(rest, "PREAUTH") || strings.Contains(rest, "EXISTS") || strings.Contains(rest, "a OK") {
				t.Errorf("client got %q: want * BYE and nothing of the PREAUTH session", rest)
			}
			p.WaitLog(t, `stunnel-imap: warning: .*(?i)preauth`, 15*time.Second)
			p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
			p.WaitNoChildren(t, 15*time.Second)
		})
	}
}

// TestE2EAttackBackendDies: Dovecot's relay dies in the middle of an
// authenticated TLS session: the client gets a clean end of file, the
// proxy logs one line, and no process is left.
func TestE2EAttackBackendDies(t *testing.T) {
	d := harness.StartDovecot(t)
	pidDir := t.TempDir()
	backend := []string{"sh", "-c", `echo $$ > "$1/backend.pid"; exec socat -t 5 STDIO,shut-down "UNIX-CONNECT:$0"`, d.Socket, pidDir}
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: backend})
	c := harness.DialIMAP(t, p.Addr)
	c.Line()
	c.StartTLS("a", harness.ClientTLS(t, p.CA, "localhost"))
	if _, tagged := c.Cmd("b", "LOGIN alice secret"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	if _, tagged := c.Cmd("c", "SELECT INBOX"); !strings.HasPrefix(tagged, "c OK") {
		t.Fatalf("SELECT: %q", tagged)
	}
	b, err := os.ReadFile(filepath.Join(pidDir, "backend.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid <= 1 {
		t.Fatalf("backend pid %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("unable to kill the backend %d: %v", pid, err)
	}
	rest, err := c.Rest()
	c.Close() // a real client closes on end of file; the proxy lingers for it
	if err != nil {
		t.Errorf("client's end: %v (after %q); want a clean end of file", err, rest)
	}
	p.SessionEnd(t)
	harness.NoSecrets(t, p, d)
}

// TestE2EAttackEndlessLine: a command line that never ends is cut off
// before authentication with BAD or * BYE, and the session ends; Dovecot
// never receives it.
func TestE2EAttackEndlessLine(t *testing.T) {
	d, p, c := rawSession(t)
	go func() {
		chunk := []byte("a NOOP " + strings.Repeat("x", 8185))
		for i := 0; i < 128; i++ { // 1 MiB at most, without a line end
			if _, err := c.Conn.Write(chunk); err != nil {
				return
			}
			chunk = []byte(strings.Repeat("x", 8192))
		}
	}()
	rest := c.RestClosed()
	if !strings.Contains(rest, " BAD") && !strings.HasPrefix(rest, "* BYE") {
		t.Errorf("an endless line got %q: want BAD or * BYE", rest)
	}
	p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
	p.WaitNoChildren(t, 15*time.Second)
	if raw := d.Raw(t); strings.Contains(raw, "xxxxxxxx") {
		t.Errorf("Dovecot received %d bytes of the endless line", strings.Count(raw, "x"))
	}
}

// TestE2EAttackStarttlsArguments: STARTTLS with arguments gets BAD from
// the proxy, no TLS starts, the plaintext session goes on, and Dovecot
// never sees the command.
func TestE2EAttackStarttlsArguments(t *testing.T) {
	d, p, c := rawSession(t)
	if _, tagged := c.Cmd("a", "STARTTLS now"); !strings.HasPrefix(tagged, "a BAD") {
		t.Errorf("STARTTLS with arguments: %q, want a BAD", tagged)
	}
	if un, tagged := c.Cmd("b", "CAPABILITY"); !strings.HasPrefix(tagged, "b OK") || len(un) != 1 || !harness.HasCap(harness.CapsOf(un[0]), "STARTTLS") {
		t.Errorf("plaintext CAPABILITY after the refused STARTTLS: %q %q", un, tagged)
	}
	c.Cmd("c", "LOGOUT")
	c.Rest()
	c.Close()
	p.WaitLog(t, `stunnel-imap: info: .* starttls=no `, 15*time.Second)
	p.WaitLog(t, `stunnel-imap: warning: .*STARTTLS with arguments`, 15*time.Second)
	if raw := strings.ToUpper(d.Raw(t)); strings.Contains(raw, "STARTTLS") || !strings.Contains(raw, "B CAPABILITY\r\n") {
		t.Errorf("Dovecot received %q", raw)
	}
}

// TestE2EAttackStarttlsInLiteral: "STARTTLS" inside a literal, synchronizing
// ({n}, after the server's continuation) or not ({n+}), is data: the
// proxy does not answer it, Dovecot receives it as part of the command,
// and the session stays in plaintext. With -n imap-: with -n imap no
// literal reaches the server before TLS (issue 21; stunnel-imap's
// TestPhases and TestE2ELiteralGivenUpLate).
func TestE2EAttackStarttlsInLiteral(t *testing.T) {
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap-", Backend: d.RawLoginCmd()})
	c := harness.DialIMAP(t, p.Addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	// LITERAL+: all in one write
	c.Send("a ID (\"name\" {12+}\r\nb STARTTLS\r\n)\r\n")
	un, tagged := c.Until("a")
	if !strings.HasPrefix(tagged, "a OK") || len(un) != 1 || !strings.HasPrefix(un[0], "* ID ") {
		t.Errorf("ID with a non-synchronizing literal: %q %q", un, tagged)
	}
	// synchronizing: the server's + continuation comes through
	c.Send("c ID (\"name\" {12}\r\n")
	if l := c.Line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("no continuation for a synchronizing literal: %q", l)
	}
	c.Send("d STARTTLS\r\n)\r\n")
	un, tagged = c.Until("c")
	if !strings.HasPrefix(tagged, "c OK") || len(un) != 1 || !strings.HasPrefix(un[0], "* ID ") {
		t.Errorf("ID with a synchronizing literal: %q %q", un, tagged)
	}
	for _, l := range un {
		if strings.HasPrefix(l, "b ") || strings.HasPrefix(l, "d ") {
			t.Errorf("the STARTTLS inside a literal was answered: %q", l)
		}
	}
	// still plaintext: a CAPABILITY is answered in the clear
	if _, tagged := c.Cmd("e", "CAPABILITY"); !strings.HasPrefix(tagged, "e OK") {
		t.Errorf("plaintext CAPABILITY after the literals: %q", tagged)
	}
	c.Cmd("f", "LOGOUT")
	c.Rest()
	c.Close()
	p.WaitLog(t, `stunnel-imap: info: .* starttls=no `, 15*time.Second)
	raw := d.Raw(t)
	// the proxy may pass a {12+} literal on as {12} (it then takes the
	// server's continuation itself); the literal's bytes arrive as data
	for _, want := range []string{`a ID \("name" \{12\+?\}\r\nb STARTTLS\r\n\)\r\n`, `c ID \("name" \{12\}\r\nd STARTTLS\r\n\)\r\n`} {
		if !regexp.MustCompile(want).MatchString(raw) {
			t.Errorf("Dovecot did not receive %s whole:\n%q", want, raw)
		}
	}
}

// TestE2EAttackBackendAdvertisesStarttls: a backend that advertises
// STARTTLS (and LOGINDISABLED) itself: before TLS the client sees
// STARTTLS, after TLS neither STARTTLS nor LOGINDISABLED, in every
// capability list; under implicit TLS never STARTTLS, and STARTTLS gets
// BAD from the proxy; the backend's own STARTTLS is never reached.
func TestE2EAttackBackendAdvertisesStarttls(t *testing.T) {
	backend := []string{"sh", "-c", harness.FakeStarttlsBackend}
	check := func(t *testing.T, what string, caps []string, starttls bool) {
		t.Helper()
		if len(caps) == 0 {
			t.Errorf("%s: no capability list", what)
			return
		}
		if harness.HasCap(caps, "STARTTLS") != starttls || (!starttls && harness.HasCap(caps, "LOGINDISABLED")) {
			t.Errorf("%s: %v (STARTTLS wanted: %v; no LOGINDISABLED after TLS)", what, caps, starttls)
		}
	}
	t.Run("starttls", func(t *testing.T) {
		p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: backend})
		c := harness.DialIMAP(t, p.Addr)
		check(t, "greeting", harness.CapsOf(c.Line()), true)
		c.StartTLS("a", harness.ClientTLS(t, p.CA, "localhost"))
		un, tagged := c.Cmd("b", "CAPABILITY")
		if len(un) != 1 {
			t.Fatalf("CAPABILITY after TLS: %q %q", un, tagged)
		}
		check(t, "CAPABILITY after TLS", harness.CapsOf(un[0]), false)
		check(t, "tagged code after TLS", harness.CapsOf(tagged), false)
		if harness.AnyAuth(harness.CapsOf(un[0])) != "AUTH=PLAIN" {
			t.Errorf("the server's AUTH= was not kept after TLS: %q", un[0])
		}
		if _, tagged := c.Cmd("c", "STARTTLS"); !strings.HasPrefix(tagged, "c BAD") {
			t.Errorf("STARTTLS after TLS reached the backend: %q", tagged)
		}
		_, tagged = c.Cmd("d", "NOOP")
		check(t, "NOOP's tagged code after TLS", harness.CapsOf(tagged), false)
		c.Cmd("e", "LOGOUT")
		c.Rest()
		c.Close()
		p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
	})
	t.Run("implicit", func(t *testing.T) {
		p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imaps", Backend: backend})
		c := harness.DialIMAP(t, p.Addr)
		c.TLS(harness.ClientTLS(t, p.CA, "localhost"))
		check(t, "greeting", harness.CapsOf(c.Line()), false)
		un, tagged := c.Cmd("b", "CAPABILITY")
		if len(un) != 1 {
			t.Fatalf("CAPABILITY: %q %q", un, tagged)
		}
		check(t, "CAPABILITY", harness.CapsOf(un[0]), false)
		if _, tagged := c.Cmd("c", "STARTTLS"); !strings.HasPrefix(tagged, "c BAD") {
			t.Errorf("STARTTLS under implicit TLS: %q, want BAD from the proxy", tagged)
		}
		c.Cmd("e", "LOGOUT")
		c.Rest()
		c.Close()
		p.WaitLog(t, `stunnel-imap: info: .*mode=imaps `, 15*time.Second)
	})
}

// TestE2EAttackOversizedLiteral: a literal over 64 KiB announced before
// authentication gets BAD or * BYE and the end, and is never passed on.
func TestE2EAttackOversizedLiteral(t *testing.T) {
	d := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.RawLoginCmd()})
	for _, lit := range []string{"{70000}", "{70000+}", "{99999999999999999999}"} {
		t.Run(lit, func(t *testing.T) {
			c := harness.DialIMAP(t, p.Addr)
			c.Line()
			c.Send("a ID (\"name\" " + lit + "\r\n")
			go c.Conn.Write([]byte(strings.Repeat("y", 70000)))
			rest := c.RestClosed()
			if !strings.Contains(rest, " BAD") && !strings.HasPrefix(rest, "* BYE") {
				t.Errorf("an oversized literal got %q: want BAD or * BYE, then the end", rest)
			}
			if strings.HasPrefix(rest, "+") {
				t.Errorf("an oversized literal got a continuation: %q", rest)
			}
		})
	}
	p.WaitLines(t, 6, 15*time.Second)
	p.WaitNoChildren(t, 15*time.Second)
	if raw := d.Raw(t); strings.Contains(raw, "ID") || strings.Contains(raw, "yyyy") {
		t.Errorf("Dovecot received part of an oversized literal: %d bytes", len(raw))
	}
}

// TestE2EAttackStalledHandshake: a client that says STARTTLS (or opens
// an implicit-TLS connection) and then sends nothing is cut off after the
// handshake timeout (-T 1 here), with one log line saying so.
func TestE2EAttackStalledHandshake(t *testing.T) {
	d := harness.StartDovecot(t)
	for _, mode := range []string{"imap", "imaps"} {
		name := mode
		if name == "imaps" {
			name = "implicit"
		}
		t.Run(name, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Backend: d.LoginCmd(), Args: []string{"-T", "1"}})
			c := harness.DialIMAP(t, p.Addr)
			if mode != "imaps" {
				c.Line()
				c.Send("a STARTTLS\r\n")
				if l := c.Line(); !strings.HasPrefix(l, "a OK") {
					t.Fatalf("STARTTLS: %q", l)
				}
			}
			rest := c.RestClosed() // hang guard: DialIMAP's 30 s deadline
			if rest != "" {
				t.Errorf("a stalled handshake got %q", rest)
			}
			line := p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
			if f := harness.LogFields(line); f["end"] != "handshake-timeout" || f["tls"] != "none" {
				t.Errorf("log line: %s, want end=handshake-timeout tls=none", line)
			}
			p.WaitNoChildren(t, 15*time.Second)
		})
	}
}

// TestE2EAttackDripFed: a command sent a byte at a time, each byte well
// within the command timeout (-t 1 here), does not keep the connection
// open: the whole command must arrive in time.
func TestE2EAttackDripFed(t *testing.T) {
	d, p, c := rawSession(t, "-t", "1")
	// 40 bytes, one every 250 ms: 10 s in all, ten times the limit
	cmd := "a NOOP " + strings.Repeat("z", 31) + "\r\n"
	cut := false
	for i := 0; i < len(cmd); i++ {
		if _, err := c.Conn.Write([]byte{cmd[i]}); err != nil {
			cut = true
			break
		}
		time.Sleep(250 * time.Millisecond)
		c.Conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Reader.Peek(1); err == nil || !isTimeout(err) {
			cut = true
			break
		}
		c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	}
	if !cut {
		t.Fatalf("a command drip-fed over 10 s was not cut off with -t 1")
	}
	c.Conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, _ := c.Rest()
	c.Close()
	if rest != "" && !strings.HasPrefix(rest, "* BYE") {
		t.Errorf("a drip-fed command got %q: want * BYE or just the end", rest)
	}
	p.WaitLog(t, `stunnel-imap: warning: .*took more than`, 15*time.Second)
	line := p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
	if f := harness.LogFields(line); f["end"] != "timeout" {
		t.Errorf("log line: %s, want end=timeout", line)
	}
	p.WaitNoChildren(t, 15*time.Second)
	if raw := d.Raw(t); strings.Contains(raw, "NOOP") {
		t.Errorf("Dovecot received the drip-fed command: %q", raw)
	}
}

// isTimeout reports a deadline error.
func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// clientHello returns the first flight of a TLS client (a ClientHello
// record) for addr's certificate name, made without any network.
func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, cfg).Handshake()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatalf("no ClientHello: %v", err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatalf("short ClientHello: %v", err)
	}
	return append(hdr, body...)
}

// TestE2EAttackClientGoneMidHandshake: a client that sends half a
// ClientHello after STARTTLS and vanishes: the proxy ends with one log
// line and no process left, and Dovecot saw nothing but the greeting's
// connection.
func TestE2EAttackClientGoneMidHandshake(t *testing.T) {
	d, p, c := rawSession(t)
	hello := clientHello(t, harness.ClientTLS(t, p.CA, "localhost"))
	c.Send("a STARTTLS\r\n")
	if l := c.Line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	c.Send(string(hello[:len(hello)/2]))
	c.Close()
	line := p.SessionEnd(t)
	if f := harness.LogFields(line); f["tls"] != "none" || f["auth"] != "no" || (f["end"] != "client-eof" && f["end"] != "handshake-failed") {
		t.Errorf("log line: %s, want tls=none auth=no end=client-eof or handshake-failed", line)
	}
	if raw := d.Raw(t); raw != "" {
		t.Errorf("Dovecot received %q", raw)
	}
}

// TestE2EAttackClientVanishes: a logged-in client in IDLE that vanishes,
// with a plain close or a reset, and one that vanishes in the middle of
// a command line: the proxy ends the session with one log line (auth=yes,
// the client's end), Dovecot sees the disconnection, and no process of
// the connection is left.
func TestE2EAttackClientVanishes(t *testing.T) {
	d := harness.StartDovecot(t)
	ended := regexp.MustCompile(`(?m)imap\(alice\).*: Disconnected: `) // Dovecot's end of a session
	for _, tc := range []struct {
		name, last string // last: bytes written before vanishing
		reset      bool
		end        string // the log line's end=
	}{
		{"close in IDLE", "c IDLE\r\n", false, "client-eof"},
		{"reset in IDLE", "c IDLE\r\n", true, "client-error"},
		{"reset mid-line", "c SELECT INB", true, "client-error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Backend: d.LoginCmd()})
			before := len(ended.FindAllString(d.Log(t), -1))
			c := harness.DialIMAP(t, p.Addr)
			port := harness.LocalPort(c)
			c.Line()
			c.StartTLS("a", harness.ClientTLS(t, p.CA, "localhost"))
			if _, tagged := c.Cmd("b", "LOGIN alice secret"); !strings.HasPrefix(tagged, "b OK") {
				t.Fatalf("LOGIN: %q", tagged)
			}
			c.Send(tc.last)
			if strings.HasSuffix(tc.last, "IDLE\r\n") {
				if l := c.Line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("IDLE: %q", l)
				}
			}
			if tc.reset {
				// the TCP connection under TLS: a reset, no close_notify
				tcp := c.Conn.(*tls.Conn).NetConn().(*net.TCPConn)
				tcp.SetLinger(0)
				tcp.Close()
			} else {
				c.Close()
			}
			line := p.SessionEnd(t)
			if f := harness.LogFields(line); f["remote"] != "127.0.0.1:"+strconv.Itoa(port) || f["auth"] != "yes" || f["tls"] == "none" || f["end"] != tc.end {
				t.Errorf("log line: %s, want remote=127.0.0.1:%d, auth=yes, a TLS version and end=%s", line, port, tc.end)
			}
			if strings.Contains(p.Stderr(), "fatal") {
				t.Errorf("a fatal line:\n%s", p.Stderr())
			}
			// Dovecot's session of alice ends too
			deadline := time.Now().Add(15 * time.Second)
			for len(ended.FindAllString(d.Log(t), -1)) <= before {
				if time.Now().After(deadline) {
					t.Fatalf("Dovecot's session of alice did not end:\n%s", d.Log(t))
				}
				time.Sleep(20 * time.Millisecond)
			}
			harness.NoSecrets(t, p, d)
		})
	}
}
