// End-to-end tests of the jail (issue 6), from outside and as root,
// against live connections through the pipeline the run file starts
// with env/SIGNER empty and the server a program (socat to Dovecot):
// tcpserver, makesock twice, setuidgid-chroot -r for the proxy
// (stunnel-imap -K 4) and for the key process (stunnel-imap -S -P 3), a
// private Dovecot behind. Each property is checked on the running
// processes (/proc), and each check has a control that shows it can fail.
package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"

	"imap-tls/tests/harness"
)

// TestJailProcesses: two connections mid-handshake (STARTTLS answered,
// no ClientHello yet), four processes: each proxy and each key process
// jailed, under a uid of its own (base + pid), all four different; then
// one handshake completes, its key process exits, and the proxy serves
// the session, still jailed.
func TestJailProcesses(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartJail(t, dc, harness.PipelineOpts{Mode: "imap"})
	a, portA := harness.StartTLSPending(t, p.Addr)
	b, portB := harness.StartTLSPending(t, p.Addr)
	ca, cb := p.FindConn(t, portA, true), p.FindConn(t, portB, true)
	uids := map[int]string{}
	for _, x := range []struct {
		what string
		pid  int
	}{{"proxy A", ca.Proxy}, {"key process A", ca.Key}, {"proxy B", cb.Proxy}, {"key process B", cb.Key}} {
		uid := harness.CheckJailed(t, x.what, x.pid, p.Jail)
		if other, dup := uids[uid]; dup {
			t.Errorf("%s and %s share uid %d", x.what, other, uid)
		}
		uids[uid] = x.what
	}
	if len(uids) != 4 {
		t.Errorf("%d different uids for 4 processes: %v", len(uids), uids)
	}
	// The key process has no socket but its channel to the proxy, and no
	// descriptor on the key file (closed after loading).
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", ca.Key))
	channel, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", ca.Key))
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", ca.Key, e.Name()))
		if target == p.PEM || (strings.HasPrefix(target, "socket:") && target != channel) {
			t.Errorf("key process %d: fd %s is %s", ca.Key, e.Name(), target)
		}
	}

	cfg := harness.ClientTLS(t, p.CA, "localhost")
	a.TLS(cfg)
	harness.WaitGone(t, ca.Key, "key process A after its handshake")
	if _, tagged := a.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	if _, tagged := a.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT: %q", tagged)
	}
	harness.CheckJailed(t, "proxy A in session", ca.Proxy, p.Jail)
	if !harness.Alive(cb.Key) {
		t.Errorf("key process B %d ended with A's handshake", cb.Key)
	}
	b.TLS(cfg)
	harness.WaitGone(t, cb.Key, "key process B after its handshake")
	// Reaped, not a zombie of the proxy's for the life of the session
	// (the proxy ignores SIGCHLD).
	for _, pid := range []int{ca.Key, cb.Key} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("key process %d not reaped: %s", pid, procStatLine(pid))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a.Cmd("z", "LOGOUT")
	b.Cmd("z", "LOGOUT")
	a.Close()
	b.Close()
	p.WaitNoChildren(t, 20*time.Second)
}

// TestJailKeyOutOfReach reads the whole memory of the live proxy through
// /proc/PID/mem, before and after the handshake, in STARTTLS, implicit
// and SNI mode, and finds no 24-byte run of the private key (scalar, in
// either byte order); the same scan of the key process, while it lives,
// finds it (the control).
func TestJailKeyOutOfReach(t *testing.T) {
	dc := harness.StartDovecot(t)
	for _, mode := range []string{"starttls", "implicit", "sni"} {
		t.Run(mode, func(t *testing.T) {
			o := harness.PipelineOpts{Mode: "imap"}
			dir := t.TempDir()
			o.PEM, o.Backend = "", nil
			def, defCA := harness.WriteCert(t, dir)
			o.PEM = def
			keys := []harness.KeyScan{harness.LoadKeyScan(t, "default", def)}
			ca, name := defCA, "localhost"
			if mode == "implicit" {
				o.Mode = "imaps"
			}
			if mode == "sni" {
				sniDir := filepath.Join(dir, "sni")
				os.Mkdir(sniDir, 0o700)
				pem, sniCA := harness.WriteCert(t, sniDir, "mail.example.test")
				o.ExtraPEMs = []string{pem}
				keys = append(keys, harness.LoadKeyScan(t, "mail.example.test", pem))
				ca, name = sniCA, "mail.example.test"
			}
			p := harness.StartJail(t, dc, o)
			var c *harness.IMAPClient
			var port int
			if mode == "implicit" {
				c = harness.DialIMAP(t, p.Addr) // nothing sent: the proxy waits for the ClientHello
				port = harness.LocalPort(c)
			} else {
				c, port = harness.StartTLSPending(t, p.Addr)
			}
			conn := p.FindConn(t, port, true)
			for _, k := range keys {
				// The key process may still be loading its keys (found as
				// soon as it exists): the control waits for them a moment.
				held := k.Held(t, conn.Key)
				for deadline := time.Now().Add(5 * time.Second); len(held) != len(k.Secrets) && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
					held = k.Held(t, conn.Key)
				}
				if len(held) != len(k.Secrets) {
					t.Errorf("control: the key process %d holds %v of the %s key, want all of %d parts: the scan cannot see a key", conn.Key, held, k.Name, len(k.Secrets))
				}
				if held := k.Held(t, conn.Proxy); len(held) != 0 {
					t.Errorf("before the handshake the proxy %d holds %v of the %s key", conn.Proxy, held, k.Name)
				}
			}
			st := c.TLS(harness.ClientTLS(t, ca, name))
			if got := st.PeerCertificates[0].Subject.CommonName; got != name {
				t.Errorf("certificate for %q, want %q", got, name)
			}
			if mode == "implicit" {
				if g := c.Line(); !strings.HasPrefix(g, "* OK") {
					t.Fatalf("greeting: %q", g)
				}
			}
			if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
				t.Fatalf("LOGIN: %q", tagged)
			}
			harness.WaitGone(t, conn.Key, "key process after the handshake")
			harness.CheckJailed(t, "proxy", conn.Proxy, p.Jail)
			for _, k := range keys {
				if held := k.Held(t, conn.Proxy); len(held) != 0 {
					t.Errorf("after the handshake the proxy %d holds %v of the %s key", conn.Proxy, held, k.Name)
				}
			}
			if _, tagged := c.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
				t.Errorf("SELECT: %q", tagged)
			}
			c.Cmd("z", "LOGOUT")
			c.Close()
			line := p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port)+` `, 20*time.Second)
			if !strings.Contains(line, "auth=yes") || (mode == "sni" && !strings.Contains(line, "sni="+name)) {
				t.Errorf("log line: %s", line)
			}
		})
	}
}

// TestJailNoCore: SIGABRT to the live proxy of an authenticated session,
// and to a key process mid-handshake, with GOTRACEBACK=crash (the Go
// runtime then aborts for a core dump): tcpserver sees the proxy killed
// by SIGABRT without the core flag, and no core file appears in the jail
// (the processes' working directory) or the service directories. A
// control shows that this system writes a core for a plain process.
func TestJailNoCore(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartJail(t, dc, harness.PipelineOpts{Mode: "imap", Verbose: true, Env: []string{"GOTRACEBACK=crash"}})
	if fi, err := os.Stat(p.Jail); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("the jail %s is not root's and closed to writers: %v %v", p.Jail, fi.Mode(), err)
	}
	cfg := harness.ClientTLS(t, p.CA, "localhost")

	// The key process, mid-handshake.
	k, kport := harness.StartTLSPending(t, p.Addr)
	kc := p.FindConn(t, kport, true)
	harness.CheckJailed(t, "key process", kc.Key, p.Jail)
	p.KillKeyPending(t, k, kc, syscall.SIGABRT, cfg)

	// The proxy, in session.
	c, port := harness.StartTLSPending(t, p.Addr)
	conn := p.FindConn(t, port, true)
	c.TLS(cfg)
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	harness.WaitGone(t, conn.Key, "key process after the handshake")
	harness.CheckJailed(t, "proxy", conn.Proxy, p.Jail)
	syscall.Kill(conn.Proxy, syscall.SIGABRT)
	st := syscall.WaitStatus(p.EndStatus(t, conn.Proxy))
	if !st.Signaled() || st.Signal() != syscall.SIGABRT {
		t.Errorf("the proxy after SIGABRT: wait status %#x, want killed by SIGABRT", uint32(st))
	}
	if st.CoreDump() {
		t.Errorf("the proxy dumped core (wait status %#x)", uint32(st))
	}
	c.Close()
	p.WaitNoChildren(t, 20*time.Second)
	for _, d := range []string{p.Jail, filepath.Dir(p.PEM)} {
		if ents, _ := os.ReadDir(d); d == p.Jail && len(ents) != 0 {
			t.Errorf("the jail holds %v after SIGABRT", ents)
		}
		if cores, _ := filepath.Glob(filepath.Join(d, "core*")); len(cores) != 0 {
			t.Errorf("core files: %v", cores)
		}
	}

	// The control: a plain process with a core limit, in a directory it
	// may write, leaves a core and the core flag.
	pattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	dir := t.TempDir()
	ctl := exec.Command("sh", "-c", "ulimit -c unlimited && exec sleep 60")
	ctl.Dir = dir
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasPrefix(harness.Cmdline(ctl.Process.Pid), "sleep") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	ctl.Process.Signal(syscall.SIGABRT)
	ctl.Wait()
	ws := ctl.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.CoreDump() {
		t.Errorf("control: a plain process did not dump core either (%v, core_pattern %q): the check proves nothing", ctl.ProcessState, pattern)
	}
	if len(pattern) > 0 && pattern[0] != '|' && !strings.Contains(string(pattern), "/") {
		if cores, _ := filepath.Glob(filepath.Join(dir, "core*")); len(cores) == 0 {
			t.Errorf("control: no core file in %s (core_pattern %q)", dir, pattern)
		}
	}
}

// TestJailProbe runs a jailprobe build of stunnel-imap and of
// stunnel-imap-key (never a release build) through the real pipeline
// with IMAPTLS_JAILPROBE=1, one at a time, as the proxy and as the key
// process: each, once locked down, tries execve, open, socket and fork,
// and logs every one refused; and the session still works.
func TestJailProbe(t *testing.T) {
	dc := harness.StartDovecot(t)
	probes := map[string]string{}
	for _, prog := range []string{"stunnel-imap", "stunnel-imap-key"} {
		probes[prog] = testkit.Build(t, "imap-tls/"+prog, "jailprobe")
	}
	for _, who := range []string{"proxy", "key process"} {
		t.Run(strings.ReplaceAll(who, " ", "-"), func(t *testing.T) {
			o := harness.PipelineOpts{Mode: "imap", Env: []string{"IMAPTLS_JAILPROBE=1"}}
			refused := "stunnel-imap: info: jailprobe: execve=refused open=refused socket=refused fork=refused"
			if who == "proxy" {
				o.Stunnel = probes["stunnel-imap"]
			} else {
				o.KeyStunnel = probes["stunnel-imap-key"]
				refused = "stunnel-imap-key: info: jailprobe: execve=refused open=refused socket=refused fork=refused"
			}
			p := harness.StartJail(t, dc, o)
			c, port := harness.StartTLSPending(t, p.Addr)
			conn := p.FindConn(t, port, true)
			c.TLS(harness.ClientTLS(t, p.CA, "localhost"))
			if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
				t.Fatalf("LOGIN after the probe: %q", tagged)
			}
			c.Cmd("z", "LOGOUT")
			c.Close()
			p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port)+` `, 20*time.Second)
			var probes []string
			for _, l := range strings.Split(p.Stderr(), "\n") {
				if strings.Contains(l, "jailprobe") {
					probes = append(probes, l)
				}
			}
			if len(probes) != 1 || probes[0] != refused {
				t.Errorf("%s %d: jailprobe lines %q, want exactly %q", who, conn.Proxy, probes, refused)
			}
			t.Logf("%s: %s", who, strings.Join(probes, "; "))
		})
	}
}

// TestJailKeyDeath: the key process killed while the client has STARTTLS
// answered but has not sent its ClientHello: the handshake fails, the
// proxy ends its connection cleanly (exit 0) with one line naming it, no
// process of the connection is left, and the next connection is served.
func TestJailKeyDeath(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartJail(t, dc, harness.PipelineOpts{Mode: "imap", Verbose: true})
	c, port := harness.StartTLSPending(t, p.Addr)
	conn := p.FindConn(t, port, true)
	p.KillKeyPending(t, c, conn, syscall.SIGKILL, harness.ClientTLS(t, p.CA, "localhost"))
	p.WaitNoChildren(t, 20*time.Second)
	// Its lines: the warning that says why, and the connection's info
	// line; nothing else (the key process, killed, says nothing).
	var mine []string
	for _, l := range strings.Split(p.Stderr(), "\n") {
		if strings.HasPrefix(l, "stunnel-imap: ") {
			mine = append(mine, l)
		}
	}
	rx := regexp.MustCompile(`^stunnel-imap: info: remote=127\.0\.0\.1:` + strconv.Itoa(port) + ` mode=imap starttls=no tls=none .* end=handshake-failed$`)
	why := "stunnel-imap: warning: unable to complete tls handshake: key holder ended; remote=127.0.0.1:" + strconv.Itoa(port)
	if len(mine) != 2 || mine[0] != why || !rx.MatchString(mine[1]) {
		t.Errorf("stunnel-imap's lines: %q, want %q and one matching %s", mine, why, rx)
	}
	t.Logf("the proxy's line: %q", mine)

	// the service goes on
	c2, port2 := harness.StartTLSPending(t, p.Addr)
	c2.TLS(harness.ClientTLS(t, p.CA, "localhost"))
	if _, tagged := c2.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN on the next connection: %q", tagged)
	}
	c2.Cmd("z", "LOGOUT")
	c2.Close()
	p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port2)+` .*auth=yes`, 20*time.Second)
}

// procStatLine is /proc/PID/stat, for a failure message.
func procStatLine(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return strings.TrimSpace(string(b))
}
