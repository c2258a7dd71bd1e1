// End-to-end tests of the service: directories made by imap-tls-conf, run
// by the real svscan, supervise, multilog, softlimit and tcpserver, with a
// real Dovecot behind (its login server, through socat) and real clients
// in front: Python's imaplib, openssl s_client, curl and mbsync.
package tests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"

	"imap-tls/tests/harness"
)

// TestServiceClients: four real clients through the STARTTLS and the
// implicit-TLS service, each appending a message and fetching it back
// byte-identical; then the logs: tai64n-stamped, one line per connection
// with stunnel-imap's fields, no password.
func TestServiceClients(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	harness.Need(t, "/usr/bin/python3", "openssl", "curl", "mbsync")
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "starttls", Mode: "imap"}, harness.ServiceSpec{Name: "implicit", Mode: "imaps"})
	for _, s := range tr.Services {
		s := s
		t.Run(s.Mode, func(t *testing.T) {
			t.Run("python", func(t *testing.T) { tr.Python(t, s) })
			t.Run("openssl", func(t *testing.T) { tr.OpenSSL(t, s) })
			t.Run("curl", func(t *testing.T) { tr.Curl(t, s) })
			t.Run("mbsync", func(t *testing.T) { tr.Mbsync(t, s) })
		})
	}
	for _, s := range tr.Services {
		// One more connection, known by its client port: exactly one
		// line names it.
		c := s.Login(t, tr.CA)
		port := c.Conn.LocalAddr().(*net.TCPAddr).Port
		c.Cmd("b", "LOGOUT")
		c.Close()
		mine := regexp.MustCompile(`stunnel-imap: info: remote=127\.0\.0\.1:` + strconv.Itoa(port) + ` `)
		count := func() (n int) {
			for _, l := range s.LogLines(t) {
				if mine.MatchString(l) {
					if !harness.ConnLine.MatchString(l) {
						t.Errorf("%s: the connection's line lacks fields: %q", s.Mode, l)
					}
					n++
				}
			}
			return n
		}
		deadline := time.Now().Add(20 * time.Second)
		for count() == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		if n := count(); n != 1 {
			t.Errorf("%s: %d log lines for the connection from port %d, want 1", s.Mode, n, port)
		}
		if n := s.ConnLines(t); n < 8 {
			t.Errorf("%s: %d connection lines after at least 8 connections", s.Mode, n)
		}
		lines := s.LogLines(t)
		stamp := regexp.MustCompile(`^@4000[0-9a-f]{20} `)
		for _, l := range lines {
			if !stamp.MatchString(l) {
				t.Errorf("%s: a log line without a tai64n stamp: %q", s.Mode, l)
			}
		}
		all, _ := exec.Command("sh", "-c", "cat "+filepath.Join(s.Dir, "log", "main")+"/*").Output()
		if bytes.Contains(all, []byte("secret")) {
			t.Errorf("%s: the password is in the log", s.Mode)
		}
		for _, l := range lines {
			if harness.ConnLine.MatchString(l) {
				t.Logf("%s: a connection's log line: %s", s.Mode, l)
				break
			}
		}
	}
}

// TestServiceJail looks from outside at a live connection's proxy and key
// process while the client has STARTTLS answered but no handshake done
// (the key process lives until the handshake's one signature): each
// jailed under a uid of its own from env/UIDRANGE. Then it kills a
// connection's processes mid-session and checks the service goes on
// serving, and with env/UIDRANGE empty, that both run as acct.
func TestServiceJail(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	// The key process per connection (env/SIGNER empty); the signer,
	// the default, is TestServiceSigner's.
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "starttls", Mode: "imap", KeyProc: true})
	s := tr.Services[0]
	u, err := user.Lookup(harness.ServiceAcct)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(s.Dir, "env", "UIDRANGE")); string(b) != harness.JailRange+"\n" {
		t.Fatalf("env/UIDRANGE is %q, want %q", b, harness.JailRange)
	}
	tcpserver := s.Pid(t)
	if tcpserver == 0 {
		t.Fatal("the service is not up")
	}
	jail := filepath.Join(s.Dir, "jail")
	procs := func() []int { return harness.Descendants(tcpserver) }
	c, port := harness.StartTLSPending(t, s.Addr())
	other, otherPort := harness.StartTLSPending(t, s.Addr())
	mine, theirs := harness.FindConn(t, procs, port, true), harness.FindConn(t, procs, otherPort, true)
	uids := map[int]bool{}
	for _, pid := range []int{mine.Proxy, mine.Key, theirs.Proxy, theirs.Key} {
		what := "proxy"
		if pid == mine.Key || pid == theirs.Key {
			what = "key process"
		}
		uids[harness.CheckJailed(t, what, pid, jail)] = true
		// env/GOMAXPROCS reaches every Go program of the connection.
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), []byte("\x00GOMAXPROCS=1\x00")) {
			t.Errorf("%s %d: environment lacks GOMAXPROCS=1 (%v)", what, pid, err)
		}
	}
	if len(uids) != 4 {
		t.Errorf("two connections' proxies and key processes: %d different uids, want 4", len(uids))
	}
	other.Close()

	// The key file is readable neither by acct nor by a uid of the range,
	// from anywhere; env/PORT is (the control).
	pem := filepath.Join(s.Dir, "ssl", "stunnel.pem")
	port0 := filepath.Join(s.Dir, "env", "PORT")
	sgc := harness.Bin(t, "setuidgid-chroot")
	for _, as := range [][]string{{"setuidgid", harness.ServiceAcct}, {sgc, "-r", harness.JailRange}} {
		if out, err := exec.Command(as[0], append(as[1:], "cat", pem)...).CombinedOutput(); err == nil {
			t.Errorf("%s can read %s: %.40s", as, pem, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "cat", port0)...).CombinedOutput(); err != nil {
			t.Fatalf("%s cannot read env/PORT, so the key check above proves nothing: %v %s", as, err, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "ls", "-A", jail)...).CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("%s: the jail is not empty, or not readable: %v %s", as, err, out)
		}
		if out, err := exec.Command(as[0], append(as[1:], "touch", filepath.Join(jail, "x"))...).CombinedOutput(); err == nil {
			t.Errorf("%s can write into the jail: %s", as, out)
		}
	}

	// The handshake: the key process signs once and exits; the proxy
	// carries the session, still jailed.
	c.TLS(harness.ClientTLS(t, tr.CA, "localhost"))
	harness.WaitGone(t, mine.Key, "key process after the handshake")
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	harness.CheckJailed(t, "proxy in session", mine.Proxy, jail)
	if _, tagged := c.Cmd("b", "SELECT INBOX"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("SELECT: %q", tagged)
	}

	// kill every process of this connection mid-session
	conn := harness.Descendants(tcpserver)
	for _, pid := range conn {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if _, err := c.Rest(); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Logf("the killed session ended with %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(harness.Descendants(tcpserver)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := harness.Descendants(tcpserver); len(left) > 0 {
		t.Errorf("left after the kill: %s", harness.Describe(left))
	}
	if n := s.Session(t, tr.CA); n < 3 {
		t.Errorf("after the kill: SELECT found %d messages, want at least 3", n)
	}
	if got := s.Pid(t); got != tcpserver {
		t.Errorf("tcpserver changed from %d to %d: the kill took the service down", tcpserver, got)
	}

	// env/UIDRANGE empty: both processes run as acct, still jailed.
	s.WriteEnv(t, "UIDRANGE", "")
	s.Restart(t)
	tcpserver = s.Pid(t)
	c, port = harness.StartTLSPending(t, s.Addr())
	fixed := harness.FindConn(t, procs, port, true)
	harness.CheckJailedAs(t, "proxy as "+harness.ServiceAcct, fixed.Proxy, jail, u.Uid, u.Gid)
	harness.CheckJailedAs(t, "key process as "+harness.ServiceAcct, fixed.Key, jail, u.Uid, u.Gid)
	c.TLS(harness.ClientTLS(t, tr.CA, "localhost"))
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN as %s: %q", harness.ServiceAcct, tagged)
	}
	c.Cmd("z", "LOGOUT")
	c.Close()
}

// TestServiceControl: svc -d stops accepting, svc -u resumes, svc -t
// restarts, a new env/PORT with svc -t moves the service, and a memory
// limit too small for a Go program is seen to fail (so the default one
// is known to be a real limit the pipeline lives under).
func TestServiceControl(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "starttls", Mode: "imap"})
	s := tr.Services[0]
	s.Session(t, tr.CA)
	first := s.Pid(t)

	s.Svc(t, "-d")
	s.WaitListening(t, s.Port, false)
	if c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second); err == nil {
		c.Close()
		t.Errorf("svc -d: %s still accepts", s.Addr())
	}
	s.Svc(t, "-u")
	s.WaitUp(t)
	s.Session(t, tr.CA)
	second := s.Pid(t)
	if second == first || second == 0 {
		t.Errorf("svc -d, -u: pid %d then %d", first, second)
	}

	s.Restart(t)
	if s.Pid(t) == second {
		t.Fatalf("svc -t: tcpserver %d still running", second)
	}
	s.Session(t, tr.CA)

	old := s.Port
	s.Port = harness.Port(t)
	s.WriteEnv(t, "PORT", strconv.Itoa(s.Port))
	s.Svc(t, "-t")
	s.WaitUp(t)
	s.WaitListening(t, old, false)
	s.Session(t, tr.CA)

	// Under a data limit of 50 bytes nothing can start, a Go program
	// least of all: the run file asks imap-tls-server -M before
	// softlimit, so the service does not start at all (no tcpserver,
	// nothing listens), and the log says why, with the fix. Back to the
	// default, it works again.
	def, _ := os.ReadFile(filepath.Join(s.Dir, "env", "MEMLIMIT"))
	s.WriteEnv(t, "MEMLIMIT", "50")
	s.Svc(t, "-t")
	s.WaitListening(t, s.Port, false)
	if c, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second); err == nil {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if rest, _ := io.ReadAll(c); strings.HasPrefix(string(rest), "* OK") {
			t.Errorf("under env/MEMLIMIT 50 the pipeline still greeted: %q", rest)
		}
		c.Close()
	}
	const refused = "imap-tls-server: fatal: env/MEMLIMIT 50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it"
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(strings.Join(s.LogLines(t), "\n"), refused) {
		if time.Now().After(deadline) {
			t.Fatalf("under env/MEMLIMIT 50: no %q in the log:\n%s", refused, strings.Join(s.LogLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.WriteEnv(t, "MEMLIMIT", strings.TrimSpace(string(def)))
	s.Restart(t)
	s.Session(t, tr.CA)

	// env/MODE imap-: STARTTLS offered, plaintext LOGIN relayed.
	s.WriteEnv(t, "MODE", "imap-")
	s.Restart(t)
	c := harness.DialIMAP(t, s.Addr())
	if g := c.Line(); !strings.Contains(g, "STARTTLS") {
		t.Errorf("MODE imap-: greeting %q does not offer STARTTLS", g)
	}
	if _, tagged := c.Cmd("a", "LOGIN alice secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Errorf("MODE imap-: plaintext LOGIN: %q", tagged)
	}
	c.Close()
	s.Session(t, tr.CA) // with STARTTLS too

	// env/MODE imaps: TLS from the first byte on the same port.
	s.WriteEnv(t, "MODE", "imaps")
	s.Restart(t)
	s.Mode = "imaps"
	s.Session(t, tr.CA)
}

// TestServiceConcurrency: with CONCURRENCY 3, three sessions held open
// and ten more started: the ten wait (tcpserver -c) with no proxy
// started for them, and are all served when the three leave.
func TestServiceConcurrency(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	const concurrency = 3
	tr := harness.StartServices(t, harness.ServiceSpec{Name: "starttls", Mode: "imap", Concurrency: concurrency})
	s := tr.Services[0]
	tcpserver := s.Pid(t)
	jail := filepath.Join(s.Dir, "jail")
	proxies := func() int { // stunnel-imap, jailed (not stunnel-imap-key)
		n := 0
		for _, pid := range harness.Descendants(tcpserver) {
			// a setuidgid-chroot between its chroot and its exec is in
			// the jail too: only the exec'd proxy counts
			if argv := harness.ArgvOf(pid); len(argv) < 2 || filepath.Base(argv[0]) != "stunnel-imap" {
				continue
			}
			if root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); root == jail {
				n++
			}
		}
		return n
	}
	var held []*harness.IMAPClient
	for i := 0; i < concurrency; i++ {
		held = append(held, s.Login(t, tr.CA))
	}
	if n := proxies(); n != concurrency {
		t.Fatalf("%d proxies for %d sessions", n, concurrency)
	}
	// The limit reached is in the log, tcpserver's own line (log/run
	// keeps it, and drops tcpserver's per-connection lines).
	limit := fmt.Sprintf("tcpserver: status: %d/%d", concurrency, concurrency)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(strings.Join(s.LogLines(t), "\n"), limit) {
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", limit, strings.Join(s.LogLines(t), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, l := range s.LogLines(t) {
		if strings.Contains(l, "tcpserver: pid ") || strings.Contains(l, "tcpserver: status: 1/") {
			t.Errorf("log/run kept a per-connection line of tcpserver's: %s", l)
		}
	}

	const extra = 10
	cfg := harness.ClientTLS(t, tr.CA, "localhost")
	var wg sync.WaitGroup
	var mu sync.Mutex
	greeted := 0
	errs := make(chan string, extra)
	for i := 0; i < extra; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", s.Addr(), 10*time.Second)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
			r := bufio.NewReader(c)
			g, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(g, "* OK") {
				errs <- fmt.Sprintf("greeting %q: %v", g, err)
				return
			}
			mu.Lock()
			greeted++
			mu.Unlock()
			ic := harness.NewIMAPClient(t, c)
			ic.Reader = r // the greeting is read already
			if _, tagged := ic.CmdNoFatal("s", "STARTTLS"); !strings.HasPrefix(tagged, "s OK") {
				errs <- "STARTTLS: " + tagged
				return
			}
			tc := tls.Client(c, cfg)
			if err := tc.Handshake(); err != nil {
				errs <- "handshake: " + err.Error()
				return
			}
			ic.Conn, ic.Reader = tc, bufio.NewReader(tc)
			for _, cmd := range []string{"LOGIN alice secret", "SELECT INBOX", "LOGOUT"} {
				if _, tagged := ic.CmdNoFatal("a", cmd); !strings.HasPrefix(tagged, "a OK") {
					errs <- cmd + ": " + tagged
					return
				}
			}
		}()
	}
	// While the three are held, the ten are accepted by the kernel only:
	// no proxy runs for them and none is greeted.
	time.Sleep(time.Second)
	mu.Lock()
	g := greeted
	mu.Unlock()
	if g != 0 || proxies() != concurrency {
		t.Errorf("with %d sessions held: %d extra clients greeted, %d proxies; want 0 and %d", concurrency, g, proxies(), concurrency)
	}
	for _, c := range held {
		c.Cmd("z", "LOGOUT")
		c.Close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	maxSeen := 0
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(20 * time.Millisecond):
			maxSeen = max(maxSeen, proxies())
		}
	}
	close(errs)
	for e := range errs {
		t.Errorf("an extra client failed: %s", e)
	}
	if greeted != extra {
		t.Errorf("%d of %d extra clients served", greeted, extra)
	}
	if maxSeen > concurrency {
		t.Errorf("%d proxies at once, more than CONCURRENCY %d", maxSeen, concurrency)
	}
	t.Logf("%d extra clients served, at most %d proxies at once", greeted, maxSeen)
}

// TestServiceDemo runs tests/demo.sh twice on free ports: in its check
// mode (start everything, pass three real clients, stop), and as a user
// would, in the foreground, serving a client until Ctrl-C (SIGINT to its
// process group). Both times nothing may be left running or on disk, and
// the demo's site (its env/PROXYFIREWALL its own, whatever TestMain's
// PROXYFIREWALL=no) loads the firewall rule for its private Dovecot's two
// PROXY ports where nft works, and removes those two chains at the end.
func TestServiceDemo(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "tcpserver", "dovecot", "socat", "openssl", "curl", "python3", "setsid", "pgrep")
	conf := harness.Bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		harness.Bin(t, p)
	}
	demo := func(t *testing.T, env ...string) (*exec.Cmd, *harness.LockedBuffer, chan error, int, int) {
		ps := []int{harness.Port(t), harness.Port(t), harness.Port(t), harness.Port(t)}
		p1, p2 := ps[0], ps[1]
		cmd := exec.Command("sh", filepath.Join(harness.RepoRoot(t), "tests", "demo.sh"))
		cmd.Env = append(os.Environ(), "IMAPTLS_BIN="+filepath.Dir(conf),
			"DEMO_STARTTLS_PORT="+strconv.Itoa(p1), "DEMO_IMPLICIT_PORT="+strconv.Itoa(p2),
			"DEMO_POP3_PORT="+strconv.Itoa(ps[2]), "DEMO_POP3S_PORT="+strconv.Itoa(ps[3]))
		cmd.Env = append(cmd.Env, env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // a terminal's foreground group of its own
		out := &harness.LockedBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		// A signal ignored by this process would stay ignored in the demo
		// (go test run in the background ignores SIGINT), and a shell
		// cannot trap it then: catching it here for the moment makes the
		// demo start with the default disposition, as from a terminal.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT)
		err := cmd.Start()
		signal.Stop(sigs)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() {
			select {
			case <-done:
			default:
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		})
		return cmd, out, done, p1, p2
	}
	wait := func(t *testing.T, done chan error, out *harness.LockedBuffer) error {
		select {
		case err := <-done:
			return err
		case <-time.After(120 * time.Second): // a hang guard
			t.Fatalf("demo.sh still running after 120 s:\n%s", out.String())
			return nil
		}
	}
	nftWorks := exec.Command("nft", "list", "tables").Run() == nil
	nothingLeft := func(t *testing.T, out string, ports ...int) {
		if !strings.Contains(out, "nothing left running") {
			t.Errorf("demo.sh did not say it stopped everything:\n%s", out)
		}
		if nftWorks {
			m := regexp.MustCompile(`firewall: removed the chains the demo caused: (proxyport_\d+) (proxyport_\d+)( and the table inet imaptls, empty now)?\n`).FindStringSubmatch(out)
			if m == nil {
				t.Errorf("demo.sh did not say it removed its two firewall chains:\n%s", out)
				m = []string{"", "", "", ""}
			}
			for _, c := range m[1:3] {
				if err := exec.Command("nft", "list", "chain", "inet", "imaptls", c).Run(); err == nil {
					t.Errorf("chain inet imaptls %s still there after the demo", c)
				}
			}
			// The table too, when the demo made it and says it removed it.
			if m[3] != "" && exec.Command("nft", "list", "table", "inet", "imaptls").Run() == nil {
				t.Errorf("demo.sh said it removed table inet imaptls, but it is still there")
			}
		} else if !strings.Contains(out, "PROXYFIREWALL is no") {
			t.Errorf("demo.sh without a working nft did not say env/PROXYFIREWALL is no:\n%s", out)
		}
		m := regexp.MustCompile(`tree: (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("demo.sh did not say where its tree is:\n%s", out)
		}
		if _, err := os.Stat(m[1]); err == nil {
			t.Errorf("demo.sh left %s behind", m[1])
		}
		var left []int
		for _, pid := range harness.AllPids() {
			cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			if strings.Contains(harness.Cmdline(pid), m[1]) || strings.HasPrefix(cwd, m[1]) {
				left = append(left, pid)
			}
		}
		if len(left) > 0 {
			t.Errorf("demo.sh left processes running: %s", harness.Describe(left))
		}
		for _, p := range ports {
			if harness.Listening(p) {
				t.Errorf("port %d still listening after the demo", p)
			}
		}
	}

	t.Run("check", func(t *testing.T) {
		_, out, done, p1, p2 := demo(t, "DEMO_CHECK=1")
		if err := wait(t, done, out); err != nil {
			t.Fatalf("demo.sh: %v\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "all checks passed") {
			t.Errorf("demo.sh:\n%s", out.String())
		}
		want := []string{"ok: no socat under the fronts during an IMAP and a POP3 session, no makesock (", "ok: Dovecot's log: rip=127.0.0.1 and secured"}
		if n := strings.Count(out.String(), "ok: firewall: chain inet imaptls proxyport_"); nftWorks && n != 2 {
			t.Errorf("the demo's check: %d firewall chains that refuse another account, want 2 (IMAP's and POP3's):\n%s", n, out.String())
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("the demo's check lacks %q:\n%s", w, out.String())
			}
		}
		nothingLeft(t, out.String(), p1, p2)
		t.Logf("demo.sh:\n%s", out.String())
	})

	t.Run("ctrl-c", func(t *testing.T) {
		cmd, out, done, p1, _ := demo(t)
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "Ctrl-C stops everything") {
			select {
			case err := <-done:
				t.Fatalf("demo.sh exited: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo.sh not ready after 60 s:\n%s", out.String())
			}
		}
		// the printed curl command, as a user would paste it
		m := regexp.MustCompile(`(?m)^  (curl --ssl-reqd --cacert \S+ 'imap://alice:secret@127\.0\.0\.1:\d+/INBOX;MAILINDEX=1')$`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no curl command in:\n%s", out.String())
		}
		got := harness.RunClient(t, "curl", 60*time.Second, nil, "sh", "-c", m[1])
		if !strings.Contains(got, "Subject: seed message 1") {
			t.Errorf("%s: %q", m[1], got)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		err := wait(t, done, out)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("demo.sh after Ctrl-C: %v, want exit 130", err)
		}
		nothingLeft(t, out.String(), p1)
	})
}

// TestServiceChain: the run file imap-tls-conf writes runs
// imap-tls-server, and the chain that starts is the one on the pages;
// with a softlimit in env/PATH that adds imap-tls-server's -x (print the
// chain instead of running it), the real run file, envdir and
// imap-tls-server (with setuidgid-chroot's real range check) print it.
// A setting that would fail every connection stops the start instead,
// with one line: env/MODE implicit (now imaps), a uid range
// setuidgid-chroot refuses, no ssl/stunnel.pem.
func TestServiceChain(t *testing.T) {
	t.Parallel() // independent: own directories
	harness.NeedRoot(t)
	harness.Need(t, "envdir")
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	conf := harness.Bin(t, "imap-tls-conf")
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key"} {
		harness.Bin(t, p)
	}
	dir := filepath.Join(t.TempDir(), "svc")
	if out, err := exec.Command(conf, harness.ServiceAcct, harness.ServiceLogAcct, dir).CombinedOutput(); err != nil {
		t.Fatalf("imap-tls-conf: %v: %s", err, out)
	}
	// The chain with a key process per connection (env/SIGNER empty),
	// which checks the key at start; the signer's, the default, at the
	// end (its service: TestServiceSigner).
	signer, err := os.ReadFile(filepath.Join(dir, "env", "SIGNER"))
	if err != nil || string(signer) != "./signer/socket\n" {
		t.Fatalf("env/SIGNER: %q %v, want imap-tls-conf's ./signer/socket", signer, err)
	}
	(&harness.Service{Dir: dir}).WriteEnv(t, "SIGNER", "")
	fake := t.TempDir()
	os.WriteFile(filepath.Join(fake, "softlimit"), []byte("#!/bin/sh\nshift 2\nprog=$1\nshift\nexec \"$prog\" -x \"$@\"\n"), 0o755)
	path, err := os.ReadFile(filepath.Join(dir, "env", "PATH"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "env", "PATH"), []byte(fake+":"+string(path)), 0o644)
	runFile := func() (string, int) {
		t.Helper()
		cmd := exec.Command("sh", "./run")
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}
		out, err := harness.RunBounded(t, cmd, 30*time.Second)
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("sh ./run: %v", err)
		}
		return string(out), 0
	}

	// Without the key: refused, nothing started.
	if out, code := runFile(); code != 111 || out != "imap-tls-server: fatal: unable to read certificate file ./ssl/stunnel.pem: file does not exist\n" {
		t.Errorf("without ssl/stunnel.pem: exit %d %q, want 111 naming it", code, out)
	}
	// with its intermediate, as a real chain: no warning at start
	key := testkit.NewCert(t, testkit.CertOptions{Intermediate: true}).PEM
	if err := os.WriteFile(filepath.Join(dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	want := func(mode, ids string) string {
		return strings.Join(strings.Fields(`
tcpserver -R -H -l 0 -c 500 -v 0.0.0.0 143
makesock -d 4
  setuidgid-chroot -/ ./jail `+ids+` -c 3:127.0.0.1:10143
    stunnel-imap -n `+mode+` -F 3 -K 4 -H
-makesock_connect_to
  setuidgid-chroot -/ ./jail `+ids+` -o 3:./ssl/stunnel.pem
    stunnel-imap-key -P 3:./ssl/stunnel.pem`), "\n") + "\n"
	}
	for _, mode := range []string{"imap", "imap-", "imaps"} {
		s := &harness.Service{Dir: dir}
		s.WriteEnv(t, "MODE", mode)
		if out, code := runFile(); code != 0 || out != want(mode, "-r "+harness.JailRange) {
			t.Errorf("MODE %s: exit %d\n got %q\nwant %q", mode, code, out, want(mode, "-r "+harness.JailRange))
		}
	}
	s := &harness.Service{Dir: dir}
	s.WriteEnv(t, "UIDRANGE", "")
	if out, code := runFile(); code != 0 || out != want("imaps", "-u "+harness.ServiceAcct) {
		t.Errorf("UIDRANGE empty: exit %d\n got %q\nwant %q", code, out, want("imaps", "-u "+harness.ServiceAcct))
	}
	// The default chain, the signer's with the server one address: the
	// proxy's setuidgid-chroot connects both as root, the server onto
	// fd 3 and the signer onto fd 4, and execs stunnel-imap: no makesock
	// at all, two Go starts per connection.
	s.WriteEnv(t, "SIGNER", strings.TrimSpace(string(signer)))
	s.WriteEnv(t, "UIDRANGE", harness.JailRange)
	wantSigner := strings.Join(strings.Fields(`
tcpserver -R -H -l 0 -c 500 -v 0.0.0.0 143
setuidgid-chroot -/ ./jail -r `+harness.JailRange+` -c 3:127.0.0.1:10143 -s 4:./signer/socket
  stunnel-imap -n imaps -F 3 -K 4 -H`), "\n") + "\n"
	if out, code := runFile(); code != 0 || out != wantSigner || strings.Contains(out, "makesock") {
		t.Errorf("the default chain (the signer): exit %d\n got %q\nwant %q", code, out, wantSigner)
	}
	for _, c := range []struct {
		env, value string
		code       int
		msg        string
	}{
		{"MODE", "implicit", 100, "imap-tls-server: fatal: mode implicit is now called imaps: write imaps (in env/MODE for a service)\n"},
		{"MODE", "", 100, "imap-tls-server: fatal: mode \"\" is not imap, imap-, imaps, pop3, pop3- or pop3s\n"},
		{"UIDRANGE", "1:2:3", 100, "imap-tls-server: fatal: uid range \"1:2:3\" is not base:count\n"},
		{"UIDRANGE", "1 -u root:5", 100, "imap-tls-server: fatal: uid range \"1 -u root:5\" is not base:count\n"},
		{"UIDRANGE", "1:1", 100, "imap-tls-server: fatal: setuidgid-chroot refuses -r 1:1\n"},
		{"CONCURRENCY", "many", 100, "imap-tls-server: fatal: bad value for -c: \"many\" (not a number of at least 1)\n"},
	} {
		s.WriteEnv(t, "MODE", "imap")
		s.WriteEnv(t, "UIDRANGE", harness.JailRange)
		s.WriteEnv(t, "CONCURRENCY", "40")
		s.WriteEnv(t, c.env, c.value)
		out, code := runFile()
		// setuidgid-chroot's own line comes first when it refuses, the
		// usage line after a bad option
		if code != c.code || !strings.Contains(out, c.msg) || strings.Contains(out, "tcpserver") {
			t.Errorf("%s %q: exit %d %q, want %d ending %q", c.env, c.value, code, out, c.code, c.msg)
		}
	}
}

// TestServiceConfRefuses runs the real binary on bad arguments: a clear
// message and exit 100, nothing made.
func TestServiceConfRefuses(t *testing.T) {
	t.Parallel() // independent: own directories, ports, Dovecot and svscan
	harness.NeedRoot(t)
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	conf := harness.Bin(t, "imap-tls-conf")
	dir := t.TempDir()
	svcDir := filepath.Join(dir, "svc")
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "imap-tls-conf: usage: imap-tls-conf [ -m mode[,mode...] ] acct logacct dir [ ip [ port ] ]\n"},
		{[]string{"root", harness.ServiceLogAcct, svcDir}, "imap-tls-conf: fatal: acct root is root"},
		{[]string{harness.ServiceAcct, "nosuchaccount", svcDir}, "imap-tls-conf: fatal: logacct nosuchaccount does not exist"},
		{[]string{harness.ServiceAcct, harness.ServiceLogAcct, dir}, "imap-tls-conf: fatal: " + dir + " exists"},
		{[]string{harness.ServiceAcct, harness.ServiceLogAcct, svcDir, "127.0.0.256"}, "is not an IPv4 or IPv6 address"},
		{[]string{harness.ServiceAcct, harness.ServiceLogAcct, svcDir, "127.0.0.1", "99999"}, "is not a number from 1 to 65535"},
	} {
		out, err := exec.Command(conf, c.args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 100 || !strings.Contains(string(out), c.want) {
			t.Errorf("imap-tls-conf %q: %v %q, want exit 100 and %q", c.args, err, out, c.want)
		}
	}
	if _, err := os.Stat(svcDir); err == nil {
		t.Errorf("a refused imap-tls-conf made %s", svcDir)
	}
}
