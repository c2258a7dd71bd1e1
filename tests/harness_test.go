// The shared harness of the end-to-end tests: the programs of the suite
// as static binaries, a private Dovecot, test certificates, and the whole
// pipeline under a real tcpserver. Every helper fails the test with a
// clear message instead of returning an error.
//
// No TestMain lives here (other files of the package may define one):
// binaries come from internal/testkit (built on the fly into
// /tmp/imap-tls-testkit-PID unless $IMAPTLS_BIN holds them).
package tests

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// repoRoot is the folder that holds go.mod (the tests run in tests/).
func repoRoot(t testing.TB) string { return testkit.RepoRoot(t) }

// bin returns the absolute path of a program of the suite
// (testkit.Bin: $IMAPTLS_BIN/name, or built once per test process) or of
// a test tool (fakeimapd, loadgen: always built, testkit.Build).
func bin(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case "fakeimapd", "loadgen":
		return testkit.Build(t, "imap-tls/tests/"+name)
	}
	return testkit.Bin(t, name)
}

// debianPackage names the Debian package that provides a command.
var debianPackage = map[string]string{
	"tcpserver": "ucspi-tcp", "tcpclient": "ucspi-tcp",
	"svscan": "daemontools", "supervise": "daemontools", "svc": "daemontools",
	"svok": "daemontools", "multilog": "daemontools", "softlimit": "daemontools",
	"envdir": "daemontools", "setuidgid": "daemontools", "envuidgid": "daemontools",
	"dovecot": "dovecot-imapd", "doveadm": "dovecot-core",
	"/usr/lib/dovecot/imap": "dovecot-imapd", "/usr/lib/dovecot/imap-login": "dovecot-imapd",
	"socat": "socat", "mbsync": "isync", "curl": "curl", "openssl": "openssl",
	"python3": "python3", "/usr/bin/python3": "python3",
	"stunnel4": "stunnel4", "stunnel": "stunnel4", "tlswrapper": "tlswrapper",
	"useradd": "passwd",
}

// need fails the test, naming the Debian package to install, when one
// of the commands (a name looked up in $PATH, or an absolute path) is
// missing.
func need(t testing.TB, commands ...string) {
	t.Helper()
	var missing []string
	for _, c := range commands {
		var err error
		if filepath.IsAbs(c) {
			_, err = os.Stat(c)
		} else {
			_, err = exec.LookPath(c)
		}
		if err != nil {
			pkg := debianPackage[c]
			if pkg == "" {
				pkg = "the package that provides " + c
			}
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", c, pkg))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing: %s", strings.Join(missing, ", "))
	}
}

// needRoot skips the test when not running as root: the pipeline
// chroots and changes uid.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not running as root: the pipeline needs chroot and setuid (run as root, e.g. sh redo.do test)")
	}
}

var accountMu sync.Mutex

// ensureAccount creates the system account name (no home, no shell)
// when it does not exist yet.
func ensureAccount(t testing.TB, name string) {
	t.Helper()
	accountMu.Lock()
	defer accountMu.Unlock()
	if exec.Command("id", "-u", name).Run() == nil {
		return
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
		"--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil && exec.Command("id", "-u", name).Run() != nil {
		t.Fatalf("unable to create account %s: %v: %s", name, err, out)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("unable to find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writeCert makes a test CA and a server certificate signed by it for
// names (DNS names or IP addresses; default "localhost" and 127.0.0.1),
// ECDSA P-256 (testkit.NewCert). It writes dir/server.pem (certificate
// chain, then the PKCS#8 private key; mode 0400, as a real key file) and
// dir/server-ca.crt (the CA certificate clients trust; mode 0644), and
// returns both paths.
func writeCert(t testing.TB, dir string, names ...string) (pemPath, caPath string) {
	t.Helper()
	return testkit.NewCert(t, testkit.CertOptions{Names: names}).Write(t, dir, "server")
}

// clientTLS returns a client configuration that trusts the CA in caPath
// and expects the server name serverName.
func clientTLS(t testing.TB, caPath, serverName string) *tls.Config {
	t.Helper()
	b, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatalf("unable to read %s: %v", caPath, err)
	}
	return testkit.ClientConfig(t, b, serverName)
}

// dovecot is a private, login-capable Dovecot started by tests/dovecot.sh:
// users alice (password secret, three messages in INBOX) and bob
// (password hunter2).
type dovecot struct {
	Dir    string // its directory: dovecot.conf, dovecot.log, home/USER/Maildir
	Socket string // the imap-login unix socket (plaintext IMAP, LOGIN works)
	script string // tests/dovecot.sh
}

// startDovecot starts a private Dovecot listening on a unix socket only,
// stopped and removed when the test ends.
func startDovecot(t testing.TB) *dovecot {
	t.Helper()
	needRoot(t)
	need(t, "dovecot", "doveadm", "socat", "setuidgid", "/usr/lib/dovecot/imap")
	// a short path of its own: unix socket paths are limited to 108 bytes,
	// and the mail account must be able to traverse it
	dir, err := os.MkdirTemp("/tmp", "imaptls-dc-")
	if err != nil {
		t.Fatalf("unable to create a directory: %v", err)
	}
	d := &dovecot{Dir: dir, Socket: filepath.Join(dir, "imap.sock"),
		script: filepath.Join(repoRoot(t), "tests", "dovecot.sh")}
	cmd := exec.Command("sh", d.script, "start", dir)
	cmd.WaitDelay = 5 * time.Second // in case a daemon keeps the output pipe
	out, err := cmd.CombinedOutput()
	if err != nil {
		exec.Command("sh", d.script, "stop", dir).Run()
		os.RemoveAll(dir)
		t.Fatalf("unable to start dovecot: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Dovecot's master takes about 2.5 s to exit (it waits for its
		// log process): the stop and the removal run detached, so that
		// the tests do not wait for it.
		cmd := exec.Command("sh", "-c", `sh "$0" stop "$1" >/dev/null 2>&1; rm -rf "$1"`, d.script, dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Errorf("unable to stop dovecot: %v", err)
			return
		}
		go cmd.Wait()
	})
	return d
}

// LoginCmd is the login-capable backend as makesock's second program:
// `sh tests/dovecot.sh login DIR` (socat to the unix socket).
func (d *dovecot) LoginCmd() []string { return []string{"sh", d.script, "login", d.Dir} }

// RawLoginCmd is LoginCmd that also records every byte the backend
// receives, one file DIR/raw.PID per connection (see Raw).
func (d *dovecot) RawLoginCmd() []string {
	return []string{"sh", "-c", `exec socat -t 5 -r "$0/raw.$$" STDIO,shut-down "UNIX-CONNECT:$0/imap.sock"`, d.Dir}
}

// Raw returns everything the RawLoginCmd backends received so far, all
// connections concatenated.
func (d *dovecot) Raw(t testing.TB) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Dir, "raw.*"))
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("unable to read %s: %v", f, err)
		}
		all = append(all, b...)
	}
	return string(all)
}

// ImapCmd is the pre-authenticated stdio backend (greets with PREAUTH):
// `sh tests/dovecot.sh imap DIR USER`.
func (d *dovecot) ImapCmd(user string) []string {
	return []string{"sh", d.script, "imap", d.Dir, user}
}

// Log returns Dovecot's log so far (logins, disconnections, errors).
func (d *dovecot) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	if err != nil {
		t.Fatalf("unable to read the dovecot log: %v", err)
	}
	b2, _ := os.ReadFile(filepath.Join(d.Dir, "imap.log"))
	return string(b) + string(b2)
}

// Maildir is the path of user's Maildir.
func (d *dovecot) Maildir(user string) string {
	return filepath.Join(d.Dir, "home", user, "Maildir")
}

// noSecrets fails when a password shows up in the pipeline's or
// Dovecot's logs.
func noSecrets(t *testing.T, p *pipeline, d *dovecot) {
	t.Helper()
	for _, pw := range []string{"secret", "hunter2"} {
		if strings.Contains(p.Stderr(), pw) {
			t.Errorf("the password %q is in the pipeline's log:\n%s", pw, p.Stderr())
		}
		if d != nil && strings.Contains(d.Log(t), pw) {
			t.Errorf("the password %q is in Dovecot's log", pw)
		}
	}
}

// neverReachedDovecot fails when any of bad (upper case) is in what the
// RawLoginCmd backends received, when Dovecot's log shows a login
// attempt of alice, or when a password is in a log (noSecrets).
func neverReachedDovecot(t *testing.T, p *pipeline, d *dovecot, bad ...string) {
	t.Helper()
	raw := strings.ToUpper(d.Raw(t))
	for _, b := range bad {
		if strings.Contains(raw, b) {
			t.Errorf("Dovecot received %s:\n%q", b, raw)
		}
	}
	if strings.Contains(d.Log(t), "user=<alice>") {
		t.Errorf("Dovecot's log shows a login attempt of alice:\n%s", d.Log(t))
	}
	noSecrets(t, p, d)
}

// runBounded runs cmd and returns its stdout, killing it after limit (a
// hang guard) and failing the test with what it wrote so far (its stderr
// too, when cmd.Stderr is a buffer).
func runBounded(t *testing.T, cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	t.Helper()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(stdout.String()), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		stderr := ""
		if s, ok := cmd.Stderr.(fmt.Stringer); ok {
			stderr = "\nstderr:\n" + s.String()
		}
		t.Fatalf("%s did not finish within %v (hang guard); stdout so far:\n%s%s", cmd.Path, limit, stdout.String(), stderr)
		return nil, nil
	}
}

// lockedBuffer is testkit's buffer, safe for concurrent writers.
type lockedBuffer = testkit.LockedBuffer

// pipelineOpts describes one pipeline for startPipeline: the options of
// one imap-tls-server invocation, the way the run file gives them.
type pipelineOpts struct {
	// Mode is imap-tls-server's -n: "imap" (STARTTLS required), "imap-"
	// (STARTTLS offered) or "imaps" (implicit TLS).
	Mode string
	// Backend is the IMAP server's command line, imap-tls-server's last
	// arguments (makesock's second program): the plaintext IMAP server on
	// stdin/stdout (e.g. dovecot.LoginCmd()).
	Backend []string
	// PEM is the certificate chain and key, imap-tls-server -k PEM (the
	// key process's default certificate). Empty: a fresh one from
	// writeCert, whose CA ends up in pipeline.CA.
	PEM string
	// RemovePEM removes PEM once the pipeline listens: a key file gone
	// after imap-tls-server's start-time check, which every connection
	// then trips over.
	RemovePEM bool
	// Args are more imap-tls-server options, before the address (e.g.
	// "-T", "5": stunnel-imap's timeouts, -v, -q).
	Args []string
	// Account is the unprivileged account, -u Account (default
	// imaptls), unless UIDRange is set.
	Account string
	// UIDRange, when set, is -r UIDRange (a uid of its own for each
	// process) instead of -u Account.
	UIDRange string
	// ExtraPEMs are more -k files, for SNI: the key process gets them on
	// fd 5, 6, ...; PEM stays the default.
	ExtraPEMs []string
	// Signer, when set, is imap-tls-server -s Signer (the signer's
	// socket, a signer the test started: startSigner) instead of -k:
	// the run file's default chain. PEM then only names the signer's
	// certificate for the test.
	Signer string
	// Env is added to imap-tls-server's environment (and so to tcpserver
	// and every program of every connection).
	Env []string
	// Verbose is imap-tls-server -V (tcpserver -v): its status, pid and
	// end lines (with each child's raw wait status) join the captured
	// stderr.
	Verbose bool
	// Stunnel is the binary run as stunnel-imap, the proxy (default: the
	// suite's), e.g. a jailprobe build; KeyStunnel the one run as
	// stunnel-imap-key, the key process (default: the suite's). Each is
	// linked under its program's name into a directory that goes first
	// in $PATH, where imap-tls-server and setuidgid-chroot find it.
	Stunnel, KeyStunnel string
	// Host is the address tcpserver listens on: 127.0.0.1 when empty,
	// "::1" for IPv6 (ucspi-tcp-ipv6).
	Host string
}

// pipeline is a running imap-tls-server (IDS is -u ACCOUNT or -r
// UIDRANGE):
//
//	imap-tls-server -n MODE IDS -j EMPTYJAIL -k PEM [-k EXTRA ...] ARGS... 127.0.0.1 PORT BACKEND...
//
// which has exec'd into the chain it spells, the one the run file runs:
//
//	tcpserver -R -H -l 0 -c 40 127.0.0.1 PORT
//	makesock
//	  makesock -d 4
//	    setuidgid-chroot -/ EMPTYJAIL IDS
//	      stunnel-imap -n MODE -F 3 -K 4 ARGS...
//	  -makesock_connect_to
//	    setuidgid-chroot -/ EMPTYJAIL IDS -o 3:PEM [-o 5:EXTRA ...]
//	      stunnel-imap-key -P 3 [-P 5 ...]
//	-makesock_connect_to BACKEND...
//
// with every program's stderr captured.
type pipeline struct {
	Addr   string // 127.0.0.1:PORT
	Host   string // the address listened on: 127.0.0.1 when empty
	Port   int
	CA     string // the CA file clients trust (when the PEM was generated)
	PEM    string // the certificate and key file in use
	Jail   string // the empty directory stunnel-imap is chrooted into
	cmd    *exec.Cmd
	stderr *lockedBuffer
}

// startPipeline starts the whole chain with imap-tls-server on a free
// loopback port and waits until it accepts connections. It is stopped
// (the whole process group killed) when the test ends.
func startPipeline(t testing.TB, o pipelineOpts) *pipeline {
	t.Helper()
	needRoot(t)
	need(t, "tcpserver")
	if len(o.Backend) == 0 {
		t.Fatalf("startPipeline: no backend")
	}
	if o.Mode == "" {
		t.Fatalf("startPipeline: no mode (imap, imap- or imaps)")
	}
	if o.Account == "" {
		o.Account = "imaptls"
	}
	ensureAccount(t, o.Account)
	p := &pipeline{PEM: o.PEM, Host: o.Host}
	if p.PEM == "" {
		p.PEM, p.CA = writeCert(t, t.TempDir())
	}
	p.Jail = t.TempDir()
	if err := os.Chmod(p.Jail, 0o755); err != nil {
		t.Fatalf("unable to chmod the jail: %v", err)
	}
	// The programs, under their own names, first in $PATH.
	path := t.TempDir()
	link := func(name, target string) {
		if target == "" {
			target = bin(t, name)
		}
		if err := os.Symlink(target, filepath.Join(path, name)); err != nil {
			t.Fatalf("unable to link %s: %v", name, err)
		}
	}
	for _, name := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "proxy-server"} {
		link(name, "")
	}
	link("stunnel-imap", o.Stunnel)
	link("stunnel-imap-key", o.KeyStunnel)
	args := []string{"-n", o.Mode, "-u", o.Account}
	if o.UIDRange != "" {
		args = []string{"-n", o.Mode, "-r", o.UIDRange}
	}
	args = append(args, "-j", p.Jail)
	if o.Signer != "" {
		args = append(args, "-s", o.Signer)
	} else {
		args = append(args, "-k", p.PEM)
		for _, extra := range o.ExtraPEMs {
			args = append(args, "-k", extra)
		}
	}
	if o.Verbose {
		args = append(args, "-V")
	}
	args = append(args, o.Args...)
	env := append([]string{"PATH=" + path + ":" + os.Getenv("PATH")}, o.Env...)
	startServer(t, p, env, func(port string) []string {
		a := append([]string{"imap-tls-server"}, args...)
		a = append(a, "--", p.host(), port)
		return append(a, o.Backend...)
	})
	if o.RemovePEM {
		if err := os.Remove(p.PEM); err != nil {
			t.Fatalf("unable to remove %s: %v", p.PEM, err)
		}
	}
	return p
}

// startTcpserver runs `tcpserver -R -H -l 0 [-v] 127.0.0.1 PORT prog...`
// as startServer does: for the tests of a few programs of the chain.
func startTcpserver(t testing.TB, p *pipeline, verbose bool, env, prog []string) *pipeline {
	t.Helper()
	return startServer(t, p, env, func(port string) []string {
		args := []string{"tcpserver", "-R", "-H", "-l", "0"}
		if verbose {
			args = append(args, "-v")
		}
		args = append(args, "127.0.0.1", port)
		return append(args, prog...)
	})
}

// startServer runs argv(PORT) (the first element looked up in $PATH as
// env, added to the environment, sets it), a command that becomes a
// tcpserver on 127.0.0.1:PORT for a free loopback PORT, in a process
// group of its own, with its output in p's stderr buffer; it fills in
// p.Port, p.Addr and p.cmd and returns p once tcpserver listens (up to
// three attempts: a free port can be taken between the look and the
// bind). Cleanup stops the whole group.
func startServer(t testing.TB, p *pipeline, env []string, argv func(port string) []string) *pipeline {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p.stderr = &lockedBuffer{} // a fresh one for each attempt
		p.Port = freePort(t)
		p.Addr = net.JoinHostPort(p.host(), strconv.Itoa(p.Port))
		args := argv(strconv.Itoa(p.Port))
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), env...)
		for _, kv := range env {
			if path, ok := strings.CutPrefix(kv, "PATH="); ok {
				if found, err := lookPathIn(args[0], path); err == nil {
					cmd.Path, cmd.Err = found, nil
				}
			}
		}
		cmd.Stdout = p.stderr
		cmd.Stderr = p.stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 2 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatalf("unable to start %s: %v", args[0], err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		p.cmd = cmd
		up := false
		deadline := time.Now().Add(15 * time.Second)
		for !up && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			if listening(p.Port) {
				up = true
			} else {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if up {
			t.Cleanup(func() {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(3 * time.Second):
				}
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			})
			return p
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		// Only a port taken meanwhile is worth another attempt: a
		// refusal of imap-tls-server's would be the same again.
		if attempt >= 2 || !strings.Contains(p.stderr.String(), "unable to bind") {
			t.Fatalf("%s did not accept on %s: %s", args[0], p.Addr, p.stderr.String())
		}
	}
}

// lookPathIn finds name in the directories of path, as execvp would.
func lookPathIn(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// listening reports whether something listens on 127.0.0.1:port, from
// /proc/net/tcp, without connecting (a probe connection would start a
// session and a log line).
func listening(port int) bool {
	b, _ := os.ReadFile("/proc/net/tcp")
	b6, _ := os.ReadFile("/proc/net/tcp6") // ::1 too
	want := fmt.Sprintf("0100007F:%04X", port)
	want6 := fmt.Sprintf("00000000000000000000000001000000:%04X", port)
	for _, line := range strings.Split(string(b)+string(b6), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && (f[1] == want || f[1] == want6) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// host is the address the pipeline listens on.
func (p *pipeline) host() string {
	if p.Host == "" {
		return "127.0.0.1"
	}
	return p.Host
}

// Stderr returns everything the programs of the pipeline have written
// to stderr so far (stunnel-imap's one info line per connection,
// warnings, fatal lines).
func (p *pipeline) Stderr() string { return p.stderr.String() }

// waitLines waits until at least n lines are on stderr, or the timeout.
func (p *pipeline) waitLines(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.stderr.String(), "\n") < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until a stderr line matches the regular expression re
// and returns that line; it fails the test after timeout.
func (p *pipeline) waitLog(t testing.TB, re string, timeout time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		for sc.Scan() {
			if rx.MatchString(sc.Text()) {
				return sc.Text()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %q after %v; stderr:\n%s", re, timeout, p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionEnd waits for stunnel-imap's info line of the pipeline's one
// session and for the session's processes to be gone (15 s each), fails
// the test unless there is exactly one info line, and returns it.
func (p *pipeline) sessionEnd(t testing.TB) string {
	t.Helper()
	line := p.waitLog(t, `stunnel-imap: info: `, 15*time.Second)
	p.waitNoChildren(t, 15*time.Second)
	if n := strings.Count(p.Stderr(), "stunnel-imap: info:"); n != 1 {
		t.Errorf("%d info lines for one session:\n%s", n, p.Stderr())
	}
	return line
}

// children returns the pids of the pipeline's processes other than
// tcpserver itself (its process group): after a session ends, none
// should be left. A zombie does not count: an orphan's zombie waits for
// init to reap it.
func (p *pipeline) children() []int { return processGroup(p.cmd.Process.Pid, true) }

// processGroup lists the processes of group pgid (without its leader
// when skipLeader).
func processGroup(pgid int, skipLeader bool) []int {
	var pids []int
	for _, pid := range allPids() {
		if skipLeader && pid == pgid {
			continue
		}
		if st := procStat(pid); len(st) > 2 && st[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allPids lists every process.
func allPids() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat returns the fields of /proc/PID/stat after the command name:
// state, ppid, pgrp, ...
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	f := strings.Fields(s[i+1:])
	if len(f) > 0 && f[0] == "Z" {
		return nil // a zombie is already gone
	}
	return f
}

// cmdline is pid's command line, for a message.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// describe names each of pids with its command line, for a message.
func describe(pids []int) string {
	var s []string
	for _, pid := range pids {
		s = append(s, fmt.Sprintf("%d %s", pid, cmdline(pid)))
	}
	return strings.Join(s, "; ")
}

// waitNoChildren waits until the pipeline has no process left but
// tcpserver, and fails the test naming the leftovers after timeout.
func (p *pipeline) waitNoChildren(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := p.children()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after the session: %s", describe(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// imapClient is a raw IMAP client for the tests: it writes exactly the
// bytes it is given and reads the answers a line at a time, so tests
// can send what no real client would.
type imapClient struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// dialIMAP connects to addr with a 30 s deadline on the whole exchange
// (a hang guard, not a timing assertion); closed when the test ends.
func dialIMAP(t testing.TB, addr string) *imapClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("unable to connect to %s: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &imapClient{t: t, conn: c, r: bufio.NewReader(c)}
}

// Send writes s as it is, in one write.
func (c *imapClient) Send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("unable to send %q: %v", s, err)
	}
}

// Line reads one line and returns it without its CRLF.
func (c *imapClient) Line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("unable to read a line (got %q): %v", l, err)
	}
	return strings.TrimRight(l, "\r\n")
}

// Cmd sends "tag command\r\n" and reads up to the tagged response,
// returning the untagged lines and the tagged line.
func (c *imapClient) Cmd(tag, command string) (untagged []string, tagged string) {
	c.t.Helper()
	c.Send(tag + " " + command + "\r\n")
	return c.Until(tag)
}

// Until reads lines up to the one tagged tag.
func (c *imapClient) Until(tag string) (untagged []string, tagged string) {
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
func (c *imapClient) StartTLS(tag string, cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	if _, tagged := c.Cmd(tag, "STARTTLS"); !strings.HasPrefix(tagged, tag+" OK") {
		c.t.Fatalf("STARTTLS refused: %q", tagged)
	}
	if c.r.Buffered() != 0 {
		c.t.Fatalf("%d plaintext bytes after the STARTTLS OK", c.r.Buffered())
	}
	return c.TLS(cfg)
}

// TLS does a TLS handshake on the connection with cfg (implicit TLS, or
// after STARTTLS) and returns the connection state.
func (c *imapClient) TLS(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	tc := tls.Client(c.conn, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake failed: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

// Rest reads until end of file and returns what came, with the error
// that ended it (nil for a clean EOF).
func (c *imapClient) Rest() (string, error) {
	b, err := io.ReadAll(c.r)
	return string(b), err
}

// RestClosed reads until the proxy ends the connection, closes it (a
// real client closes on end of file; the proxy lingers for it) and
// returns what came. A reset is an acceptable end for a refused session;
// any other error (dialIMAP's deadline: the proxy never ended it) fails
// the test.
func (c *imapClient) RestClosed() string {
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
func (c *imapClient) Close() { c.conn.Close() }

// sClient runs openssl s_client against the pipeline, with -starttls
// proto (imap, pop3; "" for implicit TLS), verifying the certificate for
// localhost, and types input; it returns what s_client printed, and
// fails the test when s_client fails.
func sClient(t *testing.T, p *pipeline, proto, input string) string {
	t.Helper()
	need(t, "openssl")
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
	out, err := runBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s\n%s\npipeline:\n%s", err, out, stderr.String(), p.Stderr())
	}
	return string(out)
}
