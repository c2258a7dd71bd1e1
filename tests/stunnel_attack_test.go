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
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestE2EAttackPipelinedAfterStarttls: commands sent in the same write
// as STARTTLS (the CVE-2011-0411 shape), or right behind it, are never
// answered in plaintext and never reach Dovecot; the bytes after the
// STARTTLS line start (and here break) the handshake, or are dropped.
func TestE2EAttackPipelinedAfterStarttls(t *testing.T) {
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.RawLoginCmd()})
	for _, tc := range []struct{ name, first, second string }{
		{"one write", "a STARTTLS\r\nx CAPABILITY\r\ny LOGIN alice secret\r\n", ""},
		{"bare LF", "a STARTTLS\nx CAPABILITY\ny LOGIN alice secret\n", ""},
		{"two writes", "a STARTTLS\r\n", "x CAPABILITY\r\ny LOGIN alice secret\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialIMAP(t, p.Addr)
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
	p.waitLines(t, 3, 15*time.Second)
	p.waitNoChildren(t, 15*time.Second)
	raw := strings.ToUpper(d.Raw(t))
	for _, bad := range []string{"STARTTLS", "CAPABILITY", "LOGIN"} {
		if strings.Contains(raw, bad) {
			t.Errorf("Dovecot received %s:\n%q", bad, raw)
		}
	}
	if strings.Contains(d.Log(t), "user=<alice>") {
		t.Errorf("Dovecot's log shows alice:\n%s", d.Log(t))
	}
	noSecrets(t, p, d)
}

// TestE2EAttackPipelinedHandshake: a ClientHello pipelined right behind
// STARTTLS in the same write (RFC 9051 allows it) still gets a working
// session: the proxy hands those bytes to TLS, not to Dovecot.
func TestE2EAttackPipelinedHandshake(t *testing.T) {
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.RawLoginCmd()})
	c := dialIMAP(t, p.Addr)
	c.Line()
	// collect the ClientHello's first flight, and send it with STARTTLS
	pw := &prefixWriter{conn: c.conn, prefix: []byte("a STARTTLS\r\n")}
	tc := tls.Client(pw, clientTLS(t, p.CA, "localhost"))
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
	d := startDovecot(t)
	for _, mode := range []string{"imap", "imap-"} {
		t.Run(mode, func(t *testing.T) {
			p := startPipeline(t, pipelineOpts{Mode: mode, Backend: d.ImapCmd("alice")})
			c := dialIMAP(t, p.Addr)
			c.Send("a SELECT INBOX\r\n")
			rest, err := c.Rest()
			c.Close() // a real client closes on end of file; the proxy lingers for it
			if err != nil && !isReset(err) {
				t.Errorf("reading: %v", err)
			}
			if !strings.HasPrefix(rest, "* BYE") || strings.Contains(rest, "PREAUTH") || strings.Contains(rest, "EXISTS") || strings.Contains(rest, "a OK") {
				t.Errorf("client got %q: want * BYE and nothing of the PREAUTH session", rest)
			}
			p.waitLog(t, `stunnel-imap: warning: .*(?i)preauth`, 15*time.Second)
			p.waitLog(t, `stunnel-imap: info: `, 15*time.Second)
			p.waitNoChildren(t, 15*time.Second)
		})
	}
}

// isReset reports a connection reset, an acceptable way for a refused
// session to end.
func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestE2EAttackBackendDies: Dovecot's relay dies in the middle of an
// authenticated TLS session: the client gets a clean end of file, the
// proxy logs one line, and no process is left.
func TestE2EAttackBackendDies(t *testing.T) {
	d := startDovecot(t)
	pidDir := t.TempDir()
	backend := []string{"sh", "-c", `echo $$ > "$1/backend.pid"; exec socat -t 5 STDIO,shut-down "UNIX-CONNECT:$0"`, d.Socket, pidDir}
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: backend})
	c := dialIMAP(t, p.Addr)
	c.Line()
	c.StartTLS("a", clientTLS(t, p.CA, "localhost"))
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
	p.waitLog(t, `stunnel-imap: info: `, 15*time.Second)
	p.waitNoChildren(t, 15*time.Second)
	if n := strings.Count(p.Stderr(), "stunnel-imap: info:"); n != 1 {
		t.Errorf("%d info lines for one session:\n%s", n, p.Stderr())
	}
	noSecrets(t, p, d)
}

// TestE2EAttackEndlessLine: a command line that never ends is cut off
// before authentication with BAD or * BYE, and the session ends; Dovecot
// never receives it.
func TestE2EAttackEndlessLine(t *testing.T) {
	d := startDovecot(t)
	p := startPipeline(t, pipelineOpts{Mode: "imap", Backend: d.RawLoginCmd()})
	c := dialIMAP(t, p.Addr)
	c.Line()
	go func() {
		chunk := []byte("a NOOP " + strings.Repeat("x", 8185))
		for i := 0; i < 128; i++ { // 1 MiB at most, without a line end
			if _, err := c.conn.Write(chunk); err != nil {
				return
			}
			chunk = []byte(strings.Repeat("x", 8192))
		}
	}()
	rest, err := c.Rest()
	c.Close() // a real client closes on end of file; the proxy lingers for it
	if err != nil && !isReset(err) {
		t.Errorf("reading: %v", err)
	}
	if !strings.Contains(rest, " BAD") && !strings.HasPrefix(rest, "* BYE") {
		t.Errorf("an endless line got %q: want BAD or * BYE", rest)
	}
	p.waitLog(t, `stunnel-imap: info: `, 15*time.Second)
	p.waitNoChildren(t, 15*time.Second)
	if raw := d.Raw(t); strings.Contains(raw, "xxxxxxxx") {
		t.Errorf("Dovecot received %d bytes of the endless line", strings.Count(raw, "x"))
	}
}
