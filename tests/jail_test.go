// End-to-end tests of the jail (issue 6), from outside and as root,
// against live connections through the pipeline the run file starts:
// tcpserver, makesock twice, setuidgid-chroot -r for the proxy
// (stunnel-imap -K 4) and for the key process (stunnel-imap -S -P 3), a
// private Dovecot behind. Each property is checked on the running
// processes (/proc), and each check has a control that shows it can fail.
package tests

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
	"imap-tls/internal/testkit/memscan"
)

// jailRange is the run file's default env/UIDRANGE.
const (
	jailRange = "2000000000:4194304"
	jailBase  = 2000000000
)

// startJail starts the run file's pipeline (key process, uid range) with
// Dovecot's login server as the backend unless o names another.
func startJail(t *testing.T, dc *dovecot, o pipelineOpts) *pipeline {
	t.Helper()
	o.UIDRange = jailRange
	if o.Backend == nil {
		o.Backend = dc.LoginCmd()
	}
	return startPipeline(t, o)
}

// connProcs are the processes of one live connection.
type connProcs struct{ proxy, key int }

func argvOf(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func hasEnv(pid int, kv string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return slices.Contains(strings.Split(string(b), "\x00"), kv)
}

// findConn waits until the proxy of the connection from client port
// (stunnel-imap with -K, tcpserver's child) and, when wantKey, its key
// process (stunnel-imap-key, the proxy's child) run: exec'd, no longer
// setuidgid-chroot.
func (p *pipeline) findConn(t *testing.T, port int, wantKey bool) connProcs {
	t.Helper()
	return findConn(t, p.children, port, wantKey)
}

// findConn is pipeline.findConn among the processes candidates lists.
func findConn(t *testing.T, candidates func() []int, port int, wantKey bool) connProcs {
	t.Helper()
	env := "TCPREMOTEPORT=" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var c connProcs
		for _, pid := range candidates() {
			argv := argvOf(pid)
			if len(argv) < 2 || !hasEnv(pid, env) {
				continue
			}
			switch filepath.Base(argv[0]) {
			case "stunnel-imap-key":
				c.key = pid
			case "stunnel-imap":
				if slices.Contains(argv, "-K") {
					c.proxy = pid
				}
			}
		}
		if c.proxy != 0 && (c.key != 0 || !wantKey) {
			if c.key != 0 {
				if st := procStat(c.key); len(st) < 2 || st[1] != strconv.Itoa(c.proxy) {
					t.Fatalf("key process %d is not the child of proxy %d: %v", c.key, c.proxy, st)
				}
			}
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection from port %d: proxy %d, key process %d after 20 s; processes: %s",
				port, c.proxy, c.key, describe(candidates()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie has ended).
func alive(pid int) bool { return procStat(pid) != nil }

func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still running after 20 s: %s", what, pid, cmdline(pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("unable to read %s: %v", path, err)
	}
	f := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			f[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return f
}

// checkJailed checks one jailed process from outside and returns its
// uid: uid = gid = base + pid (real, effective, saved, filesystem), no
// group but that gid, no capability, no_new_privs, the seccomp filter on
// every thread, no core limit, not dumpable (its /proc files are root's),
// root and working directory the jail.
func checkJailed(t *testing.T, what string, pid int, jail string) int {
	t.Helper()
	id := strconv.Itoa(jailBase + pid)
	return checkJailedAs(t, what, pid, jail, id, id)
}

// checkJailedAs is checkJailed for a process that must run as uid and
// gid (a fixed account: setuidgid-chroot -u).
func checkJailedAs(t *testing.T, what string, pid int, jail, uid, gid string) int {
	t.Helper()
	const noCaps = "0000000000000000"
	want := map[string]string{
		"Uid": strings.Repeat(uid+" ", 3) + uid, "Gid": strings.Repeat(gid+" ", 3) + gid, "Groups": gid, "NoNewPrivs": "1", "Seccomp": "2",
		"CapInh": noCaps, "CapPrm": noCaps, "CapEff": noCaps, "CapBnd": noCaps, "CapAmb": noCaps,
	}
	f := statusOf(t, fmt.Sprintf("/proc/%d/status", pid))
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s %d: /proc/%d/status %s: %q, want %q", what, pid, pid, k, f[k], v)
		}
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if len(tasks) == 0 {
		t.Errorf("%s %d: no threads in /proc", what, pid)
	}
	for _, task := range tasks {
		if tf := statusOf(t, task); tf["Seccomp"] != "2" || tf["NoNewPrivs"] != "1" {
			t.Errorf("%s %d: %s: Seccomp %q NoNewPrivs %q", what, pid, task, tf["Seccomp"], tf["NoNewPrivs"])
		}
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	m := regexp.MustCompile(`(?m)^Max core file size\s+(\S+)\s+(\S+)`).FindStringSubmatch(string(limits))
	if m == nil || m[1] != "0" || m[2] != "0" {
		t.Errorf("%s %d: core limit %q, want 0 0", what, pid, m)
	}
	for _, l := range []string{"root", "cwd"} {
		if got, err := os.Readlink(fmt.Sprintf("/proc/%d/%s", pid, l)); err != nil || got != jail {
			t.Errorf("%s %d: /proc/%d/%s is %q (%v), want the jail %s", what, pid, pid, l, got, err, jail)
		}
	}
	// An undumpable process's /proc files belong to root, not to it.
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/status", pid), &st); err != nil || st.Uid != 0 {
		t.Errorf("%s %d: /proc/%d/status owned by %d (%v): the process is dumpable", what, pid, pid, st.Uid, err)
	}
	t.Logf("%s %d: Uid %s Groups %s NoNewPrivs %s Seccomp %s CapBnd %s, %d threads, root %s",
		what, pid, f["Uid"], f["Groups"], f["NoNewPrivs"], f["Seccomp"], f["CapBnd"], len(tasks), jail)
	real, _ := strconv.Atoi(strings.Fields(f["Uid"] + " 0")[0])
	return real
}

// startTLSPending connects, reads the greeting and has STARTTLS answered,
// but sends no ClientHello yet: the key process waits for the server
// name. It returns the client and its local port.
func startTLSPending(t *testing.T, addr string) (*imapClient, int) {
	t.Helper()
	c := dialIMAP(t, addr)
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	if _, tagged := c.Cmd("s", "STARTTLS"); !strings.HasPrefix(tagged, "s OK") {
		t.Fatalf("STARTTLS: %q", tagged)
	}
	return c, localPort(c)
}

func localPort(c *imapClient) int { return c.conn.LocalAddr().(*net.TCPAddr).Port }

// keyScan is the private key of a PEM, ready for memscan.
type keyScan struct {
	name    string
	secrets map[string][]byte
	needles map[string][]byte
}

func loadKeyScan(t *testing.T, name, pem string) keyScan {
	t.Helper()
	b, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	s, err := memscan.SecretsPEM(b)
	if err != nil {
		t.Fatalf("%s: %v", pem, err)
	}
	return keyScan{name, s, memscan.Needles(s)}
}

// held returns which parts of the key pid's memory holds.
func (k keyScan) held(t *testing.T, pid int) []string {
	t.Helper()
	found, n, err := memscan.Scan(pid, k.needles)
	if err != nil {
		t.Fatalf("unable to scan the memory of %d: %v", pid, err)
	}
	if n < 1<<20 {
		t.Fatalf("read only %d bytes of %d's memory: the scan proves nothing", n, pid)
	}
	return memscan.Holds(found, k.secrets)
}

// TestJailProcesses: two connections mid-handshake (STARTTLS answered,
// no ClientHello yet), four processes: each proxy and each key process
// jailed, under a uid of its own (base + pid), all four different; then
// one handshake completes, its key process exits, and the proxy serves
// the session, still jailed.
func TestJailProcesses(t *testing.T) {
	dc := startDovecot(t)
	p := startJail(t, dc, pipelineOpts{Mode: "imap"})
	a, portA := startTLSPending(t, p.Addr)
	b, portB := startTLSPending(t, p.Addr)
	ca, cb := p.findConn(t, portA, true), p.findConn(t, portB, true)
	uids := map[int]string{}
	for _, x := range []struct {
		what string
		pid  int
	}{{"proxy A", ca.proxy}, {"key process A", ca.key}, {"proxy B", cb.proxy}, {"key process B", cb.key}} {
		uid := checkJailed(t, x.what, x.pid, p.Jail)
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
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", ca.key))
	channel, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", ca.key))
	for _, e := range ents {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", ca.key, e.Name()))
		if target == p.PEM || (strings.HasPrefix(target, "socket:") && target != channel) {
			t.Errorf("key process %d: fd %s is %s", ca.key, e.Name(), target)
		}
	}

	cfg := clientTLS(t, p.CA, "localhost")
	a.TLS(cfg)
	waitGone(t, ca.key, "key process A after its handshake")
	if _, tagged := a.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	if _, tagged := a.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT: %q", tagged)
	}
	checkJailed(t, "proxy A in session", ca.proxy, p.Jail)
	if !alive(cb.key) {
		t.Errorf("key process B %d ended with A's handshake", cb.key)
	}
	b.TLS(cfg)
	waitGone(t, cb.key, "key process B after its handshake")
	// Reaped, not a zombie of the proxy's for the life of the session
	// (the proxy ignores SIGCHLD).
	for _, pid := range []int{ca.key, cb.key} {
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
	p.waitNoChildren(t, 20*time.Second)
}

// TestJailKeyOutOfReach reads the whole memory of the live proxy through
// /proc/PID/mem, before and after the handshake, in STARTTLS, implicit
// and SNI mode, and finds no 24-byte run of the private key (scalar, in
// either byte order); the same scan of the key process, while it lives,
// finds it (the control).
func TestJailKeyOutOfReach(t *testing.T) {
	dc := startDovecot(t)
	for _, mode := range []string{"starttls", "implicit", "sni"} {
		t.Run(mode, func(t *testing.T) {
			o := pipelineOpts{Mode: "imap"}
			dir := t.TempDir()
			o.PEM, o.Backend = "", nil
			def, defCA := writeCert(t, dir)
			o.PEM = def
			keys := []keyScan{loadKeyScan(t, "default", def)}
			ca, name := defCA, "localhost"
			if mode == "implicit" {
				o.Mode = "imaps"
			}
			if mode == "sni" {
				sniDir := filepath.Join(dir, "sni")
				os.Mkdir(sniDir, 0o700)
				pem, sniCA := writeCert(t, sniDir, "mail.example.test")
				o.ExtraPEMs = []string{pem}
				keys = append(keys, loadKeyScan(t, "mail.example.test", pem))
				ca, name = sniCA, "mail.example.test"
			}
			p := startJail(t, dc, o)
			var c *imapClient
			var port int
			if mode == "implicit" {
				c = dialIMAP(t, p.Addr) // nothing sent: the proxy waits for the ClientHello
				port = localPort(c)
			} else {
				c, port = startTLSPending(t, p.Addr)
			}
			conn := p.findConn(t, port, true)
			for _, k := range keys {
				// The key process may still be loading its keys (found as
				// soon as it exists): the control waits for them a moment.
				held := k.held(t, conn.key)
				for deadline := time.Now().Add(5 * time.Second); len(held) != len(k.secrets) && time.Now().Before(deadline); {
					time.Sleep(50 * time.Millisecond)
					held = k.held(t, conn.key)
				}
				if len(held) != len(k.secrets) {
					t.Errorf("control: the key process %d holds %v of the %s key, want all of %d parts: the scan cannot see a key", conn.key, held, k.name, len(k.secrets))
				}
				if held := k.held(t, conn.proxy); len(held) != 0 {
					t.Errorf("before the handshake the proxy %d holds %v of the %s key", conn.proxy, held, k.name)
				}
			}
			st := c.TLS(clientTLS(t, ca, name))
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
			waitGone(t, conn.key, "key process after the handshake")
			checkJailed(t, "proxy", conn.proxy, p.Jail)
			for _, k := range keys {
				if held := k.held(t, conn.proxy); len(held) != 0 {
					t.Errorf("after the handshake the proxy %d holds %v of the %s key", conn.proxy, held, k.name)
				}
			}
			if _, tagged := c.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
				t.Errorf("SELECT: %q", tagged)
			}
			c.Cmd("z", "LOGOUT")
			c.Close()
			line := p.waitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port)+` `, 20*time.Second)
			if !strings.Contains(line, "auth=yes") || (mode == "sni" && !strings.Contains(line, "sni="+name)) {
				t.Errorf("log line: %s", line)
			}
		})
	}
}

// endStatus waits for tcpserver -v's end line for pid and returns the
// raw wait status it reports.
func (p *pipeline) endStatus(t *testing.T, pid int) int {
	t.Helper()
	line := p.waitLog(t, `^tcpserver: end `+strconv.Itoa(pid)+` status \d+$`, 20*time.Second)
	n, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
	return n
}

// killKeyPending kills conn's key process with sig while its client c
// (from startTLSPending) has not sent its ClientHello yet: the client's
// handshake with cfg then fails, c is closed, and the proxy exits 0
// (tcpserver -v's end line).
func (p *pipeline) killKeyPending(t *testing.T, c *imapClient, conn connProcs, sig syscall.Signal, cfg *tls.Config) {
	t.Helper()
	syscall.Kill(conn.key, sig)
	waitGone(t, conn.key, fmt.Sprintf("key process after signal %d", int(sig)))
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatalf("a handshake succeeded without the key process")
	}
	c.Close()
	if st := p.endStatus(t, conn.proxy); st != 0 {
		t.Errorf("the proxy whose key process died of signal %d: wait status %d, want exit 0", int(sig), st)
	}
}

// TestJailNoCore: SIGABRT to the live proxy of an authenticated session,
// and to a key process mid-handshake, with GOTRACEBACK=crash (the Go
// runtime then aborts for a core dump): tcpserver sees the proxy killed
// by SIGABRT without the core flag, and no core file appears in the jail
// (the processes' working directory) or the service directories. A
// control shows that this system writes a core for a plain process.
func TestJailNoCore(t *testing.T) {
	dc := startDovecot(t)
	p := startJail(t, dc, pipelineOpts{Mode: "imap", Verbose: true, Env: []string{"GOTRACEBACK=crash"}})
	if fi, err := os.Stat(p.Jail); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
		t.Fatalf("the jail %s is not root's and closed to writers: %v %v", p.Jail, fi.Mode(), err)
	}
	cfg := clientTLS(t, p.CA, "localhost")

	// The key process, mid-handshake.
	k, kport := startTLSPending(t, p.Addr)
	kc := p.findConn(t, kport, true)
	checkJailed(t, "key process", kc.key, p.Jail)
	p.killKeyPending(t, k, kc, syscall.SIGABRT, cfg)

	// The proxy, in session.
	c, port := startTLSPending(t, p.Addr)
	conn := p.findConn(t, port, true)
	c.TLS(cfg)
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	waitGone(t, conn.key, "key process after the handshake")
	checkJailed(t, "proxy", conn.proxy, p.Jail)
	syscall.Kill(conn.proxy, syscall.SIGABRT)
	st := syscall.WaitStatus(p.endStatus(t, conn.proxy))
	if !st.Signaled() || st.Signal() != syscall.SIGABRT {
		t.Errorf("the proxy after SIGABRT: wait status %#x, want killed by SIGABRT", uint32(st))
	}
	if st.CoreDump() {
		t.Errorf("the proxy dumped core (wait status %#x)", uint32(st))
	}
	c.Close()
	p.waitNoChildren(t, 20*time.Second)
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
	for !strings.HasPrefix(cmdline(ctl.Process.Pid), "sleep") && time.Now().Before(deadline) {
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
	dc := startDovecot(t)
	probes := map[string]string{}
	for _, prog := range []string{"stunnel-imap", "stunnel-imap-key"} {
		probes[prog] = testkit.Build(t, "imap-tls/"+prog, "jailprobe")
	}
	for _, who := range []string{"proxy", "key process"} {
		t.Run(strings.ReplaceAll(who, " ", "-"), func(t *testing.T) {
			o := pipelineOpts{Mode: "imap", Env: []string{"IMAPTLS_JAILPROBE=1"}}
			refused := "stunnel-imap: info: jailprobe: execve=refused open=refused socket=refused fork=refused"
			if who == "proxy" {
				o.Stunnel = probes["stunnel-imap"]
			} else {
				o.KeyStunnel = probes["stunnel-imap-key"]
				refused = "stunnel-imap-key: info: jailprobe: execve=refused open=refused socket=refused fork=refused"
			}
			p := startJail(t, dc, o)
			c, port := startTLSPending(t, p.Addr)
			conn := p.findConn(t, port, true)
			c.TLS(clientTLS(t, p.CA, "localhost"))
			if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
				t.Fatalf("LOGIN after the probe: %q", tagged)
			}
			c.Cmd("z", "LOGOUT")
			c.Close()
			p.waitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port)+` `, 20*time.Second)
			var probes []string
			for _, l := range strings.Split(p.Stderr(), "\n") {
				if strings.Contains(l, "jailprobe") {
					probes = append(probes, l)
				}
			}
			if len(probes) != 1 || probes[0] != refused {
				t.Errorf("%s %d: jailprobe lines %q, want exactly %q", who, conn.proxy, probes, refused)
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
	dc := startDovecot(t)
	p := startJail(t, dc, pipelineOpts{Mode: "imap", Verbose: true})
	c, port := startTLSPending(t, p.Addr)
	conn := p.findConn(t, port, true)
	p.killKeyPending(t, c, conn, syscall.SIGKILL, clientTLS(t, p.CA, "localhost"))
	p.waitNoChildren(t, 20*time.Second)
	// Its lines: the warning that says why, and the connection's info
	// line; nothing else (the key process, killed, says nothing).
	var mine []string
	for _, l := range strings.Split(p.Stderr(), "\n") {
		if strings.HasPrefix(l, "stunnel-imap: ") {
			mine = append(mine, l)
		}
	}
	rx := regexp.MustCompile(`^stunnel-imap: info: remote=127\.0\.0\.1:` + strconv.Itoa(port) + ` mode=imap starttls=no tls=none .* end=handshake-failed$`)
	why := "stunnel-imap: warning: unable to complete tls handshake: key process ended; remote=127.0.0.1:" + strconv.Itoa(port)
	if len(mine) != 2 || mine[0] != why || !rx.MatchString(mine[1]) {
		t.Errorf("stunnel-imap's lines: %q, want %q and one matching %s", mine, why, rx)
	}
	t.Logf("the proxy's line: %q", mine)

	// the service goes on
	c2, port2 := startTLSPending(t, p.Addr)
	c2.TLS(clientTLS(t, p.CA, "localhost"))
	if _, tagged := c2.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN on the next connection: %q", tagged)
	}
	c2.Cmd("z", "LOGOUT")
	c2.Close()
	p.waitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(port2)+` .*auth=yes`, 20*time.Second)
}

// procStatLine is /proc/PID/stat, for a failure message.
func procStatLine(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return strings.TrimSpace(string(b))
}
