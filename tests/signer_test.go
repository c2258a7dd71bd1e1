// End-to-end tests of the signer (issue 14), from outside and as root,
// against the run file's chain with the signer (imap-tls-server -s:
// setuidgid-chroot -r -s 4:SOCKET, stunnel-imap -K 4; here behind a
// makesock, the server a program, socat to Dovecot's login socket; the
// default, the server one address and no makesock, is TestSite's) and a
// signer run by the real supervise as imap-tls-conf's signer/run runs
// it (setuidgid-chroot -/ JAIL -r RANGE -o 3:PEM -l 4:SOCKET
// stunnel-imap-signer -P 3 -L 4), a private Dovecot behind.
package tests

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/keyproto"

	"imap-tls/tests/harness"
)

// startSigned is the run file's chain with the signer, s, in front of
// Dovecot's login socket through socat (a program: behind a makesock).
func startSigned(t *testing.T, dc *harness.Dovecot, s *harness.SignerService, o harness.PipelineOpts) *harness.Pipeline {
	t.Helper()
	o.Signer, o.PEM = s.Socket, s.PEM
	return harness.StartJail(t, dc, o)
}

// tcpInodes are the socket inodes of every TCP socket of the machine.
func tcpInodes() map[string]bool {
	in := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 9 {
				in[f[9]] = true
			}
		}
	}
	return in
}

// TestSignerJail: two connections mid-handshake through the default
// chain: each proxy jailed under a uid of its own, the signer jailed
// under a third, with no network socket; no byte of the key in either
// proxy's memory, before and after the handshake, while the same scan
// finds it in the signer (the control); then both sessions log in.
func TestSignerJail(t *testing.T) {
	dc := harness.StartDovecot(t)
	sig := harness.StartSigner(t)
	p := startSigned(t, dc, sig, harness.PipelineOpts{Mode: "imap"})
	key := harness.LoadKeyScan(t, "default", sig.PEM)
	a, portA := harness.StartTLSPending(t, p.Addr)
	b, portB := harness.StartTLSPending(t, p.Addr)
	ca, cb := p.FindConn(t, portA, false), p.FindConn(t, portB, false)
	spid := sig.Pid(t)
	uids := map[int]string{}
	for _, x := range []struct {
		what string
		pid  int
		jail string
	}{{"proxy A", ca.Proxy, p.Jail}, {"proxy B", cb.Proxy, p.Jail}, {"signer", spid, sig.Jail}} {
		uid := harness.CheckJailed(t, x.what, x.pid, x.jail)
		if other, dup := uids[uid]; dup {
			t.Errorf("%s and %s share uid %d", x.what, other, uid)
		}
		uids[uid] = x.what
	}
	// No per-connection key process: the proxy is tcpserver's child's
	// only Go program left, and it has no child.
	for _, c := range []harness.ConnProcs{ca, cb} {
		if c.Key != 0 {
			t.Errorf("proxy %d has a key process %d", c.Proxy, c.Key)
		}
	}
	// The signer: no network socket at all.
	tcp := tcpInodes()
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", spid))
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", spid, e.Name()))
		if in, ok := strings.CutPrefix(target, "socket:["); ok && tcp[strings.TrimSuffix(in, "]")] {
			t.Errorf("signer %d: fd %s is a TCP socket", spid, e.Name())
		}
	}
	if held := key.Held(t, spid); len(held) != len(key.Secrets) {
		t.Errorf("control: the signer %d holds %v of the key, want all %d parts: the scan cannot see a key", spid, held, len(key.Secrets))
	}
	for _, c := range []harness.ConnProcs{ca, cb} {
		if held := key.Held(t, c.Proxy); len(held) != 0 {
			t.Errorf("before the handshake the proxy %d holds %v of the key", c.Proxy, held)
		}
	}
	cfg := harness.ClientTLS(t, sig.CA, "localhost")
	for i, c := range []*harness.IMAPClient{a, b} {
		c.TLS(cfg)
		if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
			t.Fatalf("LOGIN %d: %q", i, tagged)
		}
	}
	for _, c := range []harness.ConnProcs{ca, cb} {
		harness.CheckJailed(t, "proxy in session", c.Proxy, p.Jail)
		if held := key.Held(t, c.Proxy); len(held) != 0 {
			t.Errorf("after the handshake the proxy %d holds %v of the key", c.Proxy, held)
		}
	}
	for _, c := range []*harness.IMAPClient{a, b} {
		c.Cmd("z", "LOGOUT")
		c.Close()
	}
	line := p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(portA)+` `, 20*time.Second)
	if !strings.Contains(line, "auth=yes") {
		t.Errorf("log line: %s", line)
	}
	if sig.Pid(t) != spid {
		t.Errorf("the signer changed during the test: %s", sig.Out.String())
	}
}

// frame is one raw frame of the key process's protocol.
func frame(typ byte, payload []byte) []byte {
	return append([]byte{keyproto.Version, typ, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// signerConn connects to the signer as each proxy's setuidgid-chroot
// does (as root) and reads the ready frame.
func signerConn(t *testing.T, s *harness.SignerService) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("unix", s.Socket, 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the signer: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var buf [keyproto.MaxFrame]byte
	if rep, err := keyproto.ReadReply(r, &buf); err != nil || rep.Type != keyproto.TypeReady {
		t.Fatalf("the signer's first frame: %v %v, want ready", rep.Type, err)
	}
	return c, r
}

// closed reports whether the signer ends the connection without another
// frame.
func closed(r *bufio.Reader) error {
	var buf [keyproto.MaxFrame]byte
	rep, err := keyproto.ReadReply(r, &buf)
	if err == nil {
		return fmt.Errorf("got a frame of type %c", rep.Type)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	return err
}

// TestSignerOneSignature speaks to the signer's socket directly, as a
// compromised setuidgid-chroot would have to (only root can connect): one
// chain and one signature per connection; a second signature request, a
// request before the name, a bad version, an oversized frame, an unknown
// type are each answered by closing the connection, with a log line; the
// signer lives on and serves the next connection.
func TestSignerOneSignature(t *testing.T) {
	sig := harness.StartSigner(t)
	spid := sig.Pid(t)
	name, _ := keyproto.EncodeRequest(keyproto.Request{Type: keyproto.TypeName, Name: "localhost"})
	d := sha256.Sum256([]byte("transcript"))
	sign, _ := keyproto.EncodeRequest(keyproto.Request{Type: keyproto.TypeSign, Hash: 5 /* crypto.SHA256 */, Digest: d[:]})
	var buf [keyproto.MaxFrame]byte

	// The whole session, then a second signature: refused.
	c, r := signerConn(t, sig)
	c.Write(name)
	if rep, err := keyproto.ReadReply(r, &buf); err != nil || rep.Type != keyproto.TypeChain {
		t.Fatalf("after the name: %c %v, want the chain", rep.Type, err)
	}
	c.Write(sign)
	if rep, err := keyproto.ReadReply(r, &buf); err != nil || rep.Type != keyproto.TypeSig {
		t.Fatalf("after the sign request: %c %v, want a signature", rep.Type, err)
	}
	c.Write(sign)
	if err := closed(r); err != nil {
		t.Errorf("a second signature on one connection: %v, want the connection closed", err)
	}
	c.Close()

	for _, bad := range []struct {
		what      string
		afterName bool // sent after a good name and its chain
		send      []byte
	}{
		{"a sign request before the name", false, sign},
		{"a bad version", false, []byte{9, keyproto.TypeName, 0, 0}},
		{"an oversized name (64 KiB announced, none sent)", false, []byte{keyproto.Version, keyproto.TypeName, 0xff, 0xff}},
		{"a second name", true, name},
		{"an oversized sign request", true, frame(keyproto.TypeSign, make([]byte, keyproto.MaxSign+1))},
		{"an unknown type", true, frame('X', nil)},
		{"a malformed sign request", true, frame(keyproto.TypeSign, []byte{5, 0, 1, 2})},
	} {
		c, r := signerConn(t, sig)
		if bad.afterName {
			c.Write(name)
			if rep, err := keyproto.ReadReply(r, &buf); err != nil || rep.Type != keyproto.TypeChain {
				t.Fatalf("%s: after the name: %c %v", bad.what, rep.Type, err)
			}
		}
		c.Write(bad.send)
		start := time.Now()
		if err := closed(r); err != nil {
			t.Errorf("%s: %v, want the connection closed", bad.what, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: closed after %v: the signer waited for bytes it should have refused", bad.what, d)
		}
		c.Close()
	}
	// Still the same signer, serving.
	c, r = signerConn(t, sig)
	c.Write(name)
	if rep, err := keyproto.ReadReply(r, &buf); err != nil || rep.Type != keyproto.TypeChain {
		t.Fatalf("after the refusals: %c %v, want the chain", rep.Type, err)
	}
	c.Close()
	if got := sig.Pid(t); got != spid {
		t.Errorf("the signer changed from %d to %d: a bad request ended it", spid, got)
	}
	if n := strings.Count(sig.Out.String(), "stunnel-imap-signer: warning: refused a proxy: "); n != 7 {
		// The second signature request gets no line: the signer closes
		// the connection as soon as it has sent the one signature.
		t.Errorf("%d refusal lines, want 7, one for each bad request:\n%s", n, sig.Out.String())
	}
	t.Logf("signer log:\n%s", sig.Out.String())
}

// TestSignerDown: the signer killed while a connection waits for its
// handshake ends that connection cleanly (the handshake fails, the proxy
// exits 0 with its log line); supervise starts a new signer, which
// serves the next connection. With the signer's service down, the
// client is told (* BYE [UNAVAILABLE] in place of the greeting),
// setuidgid-chroot's warning names the socket and the proxy's line the
// reason, and the service is back with svc -u.
func TestSignerDown(t *testing.T) {
	dc := harness.StartDovecot(t)
	sig := harness.StartSigner(t)
	p := startSigned(t, dc, sig, harness.PipelineOpts{Mode: "imap", Verbose: true})
	cfg := harness.ClientTLS(t, sig.CA, "localhost")

	c, port := harness.StartTLSPending(t, p.Addr)
	conn := p.FindConn(t, port, false)
	old := sig.Pid(t)
	syscall.Kill(old, syscall.SIGKILL)
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatalf("a handshake succeeded with the signer killed")
	}
	c.Close()
	if st := p.EndStatus(t, conn.Proxy); st != 0 {
		t.Errorf("the proxy whose signer was killed: wait status %d, want exit 0", st)
	}
	line := p.WaitLog(t, `stunnel-imap: .*remote=127\.0\.0\.1:`+strconv.Itoa(port)+` `, 20*time.Second)
	t.Logf("the connection whose signer died: %s", line)

	// supervise starts it again; the next connection is served.
	now := sig.NewPID(t, old)
	sig.WaitReady(t, 2)
	if n := session(t, p.Addr, cfg); n != "localhost" {
		t.Errorf("after the restart: certificate %q", n)
	}
	t.Logf("signer %d killed, %d serves", old, now)

	// Down: the connection ends at once, the client told, the log
	// saying why.
	exec.Command("svc", "-d", sig.Dir).Run()
	harness.WaitGone(t, now, "the signer after svc -d")
	d := harness.DialIMAP(t, p.Addr)
	start := time.Now()
	rest, _ := d.Rest()
	d.Close()
	if want := "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"; rest != want {
		t.Errorf("with the signer down the client got %q, want %q", rest, want)
	}
	t.Logf("with the signer down the connection closed after %v", time.Since(start))
	reach := `unable to reach the signer at ` + regexp.QuoteMeta(sig.Socket) + `: (connection refused|file does not exist) \(is the signer service linked and up\?\)`
	p.WaitLog(t, `^setuidgid-chroot: warning: `+reach+`; remote=\S+:\d+$`, 20*time.Second)
	p.WaitLog(t, `^stunnel-imap: info: .* reason="`+reach+`" end=key-process-failed$`, 20*time.Second)
	exec.Command("svc", "-u", sig.Dir).Run()
	sig.WaitReady(t, 3)
	if n := session(t, p.Addr, cfg); n != "localhost" {
		t.Errorf("after svc -u: certificate %q", n)
	}
}

// Session runs one STARTTLS session with LOGIN and returns the common
// name of the certificate it was served.
func session(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c := harness.DialIMAP(t, addr)
	defer c.Close()
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	st := c.StartTLS("s", cfg)
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	c.Cmd("z", "LOGOUT")
	return st.PeerCertificates[0].Subject.CommonName
}

// served is the serial number of the certificate a STARTTLS handshake
// gets, trusting any.
func served(t *testing.T, addr string) string {
	t.Helper()
	c := harness.DialIMAP(t, addr)
	defer c.Close()
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	st := c.StartTLS("s", &tls.Config{InsecureSkipVerify: true})
	return st.PeerCertificates[0].SerialNumber.String()
}

// TestSignerRenewal: a certificate rewritten in place is read again by
// the running signer (the same process); one replaced (renamed over) makes
// the signer exit, supervise start it again, and the new one is served:
// no restart of the service, no failed connection.
func TestSignerRenewal(t *testing.T) {
	dc := harness.StartDovecot(t)
	sig := harness.StartSigner(t)
	p := startSigned(t, dc, sig, harness.PipelineOpts{Mode: "imap"})
	first := served(t, p.Addr)
	spid := sig.Pid(t)
	tcpserver := p.Cmd.Process.Pid

	waitServed := func(what, not string) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if s := served(t, p.Addr); s != not {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the old certificate is still served after 20 s: %s", what, sig.Out.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// In place: the same file, new bytes.
	pem2, _ := harness.WriteCert(t, t.TempDir())
	b, _ := os.ReadFile(pem2)
	if err := os.WriteFile(sig.PEM, b, 0o600); err != nil {
		t.Fatal(err)
	}
	second := waitServed("rewritten in place", first)
	if got := sig.Pid(t); got != spid {
		t.Errorf("rewritten in place: the signer changed from %d to %d, want it to read the file again", spid, got)
	}
	if !strings.Contains(sig.Out.String(), "stunnel-imap-signer: info: certificates read again: 1") {
		t.Errorf("no line for the reload: %s", sig.Out.String())
	}

	// Replaced: renamed over, as install(1) and certbot hooks do.
	pem3, _ := harness.WriteCert(t, t.TempDir())
	tmp := sig.PEM + ".new"
	b, _ = os.ReadFile(pem3)
	os.WriteFile(tmp, b, 0o600)
	if err := os.Rename(tmp, sig.PEM); err != nil {
		t.Fatal(err)
	}
	third := waitServed("replaced", second)
	if third == first {
		t.Errorf("replaced: the first certificate again")
	}
	sig.NewPID(t, spid)
	if !strings.Contains(sig.Out.String(), "was replaced on disk: exiting") {
		t.Errorf("no line for the replacement: %s", sig.Out.String())
	}
	if p.Cmd.Process.Pid != tcpserver || !harness.Listening(p.Port) {
		t.Errorf("the service restarted")
	}
	if strings.Contains(p.Stderr(), "fatal") {
		t.Errorf("a connection failed during the renewals:\n%s", p.Stderr())
	}
}
