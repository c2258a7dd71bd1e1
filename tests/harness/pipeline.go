package harness

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PipelineOpts describes one pipeline for StartPipeline: the options of
// one imap-tls-server invocation, the way the run file gives them.
type PipelineOpts struct {
	// Mode is imap-tls-server's -n: "imap" (STARTTLS required), "imap-"
	// (STARTTLS offered) or "imaps" (implicit TLS).
	Mode string
	// Backend is the IMAP server, imap-tls-server's last arguments: a
	// command line, the plaintext IMAP server on stdin/stdout, makesock's
	// second program (e.g. Dovecot.LoginCmd()); or one address (a unix
	// socket path, IPv4:port, [IPv6]:port), which the proxy's
	// setuidgid-chroot connects onto fd 3 (-c 3:ADDRESS).
	Backend []string
	// PEM is the certificate chain and key, imap-tls-server -k PEM (the
	// key process's default certificate). Empty: a fresh one from
	// WriteCert, whose CA ends up in Pipeline.CA.
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
	// socket, a signer the test started: StartSigner) instead of -k:
	// the run file's default key side (with Backend one address, the
	// run file's default chain). PEM then only names the signer's
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

// Pipeline is a running imap-tls-server (IDS is -u ACCOUNT or -r
// UIDRANGE):
//
//	imap-tls-server -n MODE IDS -j EMPTYJAIL -k PEM [-k EXTRA ...] ARGS... 127.0.0.1 PORT BACKEND...
//
// which has exec'd into the chain it spells, the one the run file runs
// with env/SIGNER empty:
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
// With BACKEND one address there is no outer makesock: the proxy's
// setuidgid-chroot gets -c 3:BACKEND. With Signer set (-s SIGNER, the
// run file's default) there is no key process either, and with BACKEND
// one address no makesock at all:
//
//	tcpserver -R -H -l 0 -c 40 127.0.0.1 PORT
//	setuidgid-chroot -/ EMPTYJAIL IDS -c 3:BACKEND -s 4:SIGNER
//	  stunnel-imap -n MODE -F 3 -K 4 ARGS...
//
// Every program's stderr is captured.
type Pipeline struct {
	Addr   string // 127.0.0.1:PORT
	Host   string // the address listened on: 127.0.0.1 when empty
	Port   int
	CA     string // the CA file clients trust (when the PEM was generated)
	PEM    string // the certificate and key file in use
	Jail   string // the empty directory stunnel-imap is chrooted into
	Cmd    *exec.Cmd
	stderr *LockedBuffer
}

// StartPipeline starts the whole chain with imap-tls-server on a free
// loopback port and waits until it accepts connections. It is stopped
// (the whole process group killed) when the test ends.
func StartPipeline(t testing.TB, o PipelineOpts) *Pipeline {
	t.Helper()
	NeedRoot(t)
	Need(t, "tcpserver")
	if len(o.Backend) == 0 {
		t.Fatalf("StartPipeline: no backend")
	}
	if o.Mode == "" {
		t.Fatalf("StartPipeline: no mode (imap, imap- or imaps)")
	}
	if o.Account == "" {
		o.Account = "imaptls"
	}
	EnsureAccount(t, o.Account)
	p := &Pipeline{PEM: o.PEM, Host: o.Host}
	if p.PEM == "" {
		p.PEM, p.CA = WriteCert(t, t.TempDir())
	}
	p.Jail = t.TempDir()
	if err := os.Chmod(p.Jail, 0o755); err != nil {
		t.Fatalf("unable to chmod the jail: %v", err)
	}
	// The programs, under their own names, first in $PATH.
	path := t.TempDir()
	link := func(name, target string) {
		if target == "" {
			target = Bin(t, name)
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
	StartServer(t, p, env, func(port string) []string {
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

// StartTcpserver runs `tcpserver -R -H -l 0 [-v] 127.0.0.1 PORT prog...`
// as StartServer does: for the tests of a few programs of the chain.
func StartTcpserver(t testing.TB, p *Pipeline, verbose bool, env, prog []string) *Pipeline {
	t.Helper()
	return StartServer(t, p, env, func(port string) []string {
		args := []string{"tcpserver", "-R", "-H", "-l", "0"}
		if verbose {
			args = append(args, "-v")
		}
		args = append(args, "127.0.0.1", port)
		return append(args, prog...)
	})
}

// StartServer runs argv(PORT) (the first element looked up in $PATH as
// env, added to the environment, sets it), a command that becomes a
// tcpserver on 127.0.0.1:PORT for a free loopback PORT, in a process
// group of its own, with its output in p's stderr buffer; it fills in
// p.Port, p.Addr and p.cmd and returns p once tcpserver listens (up to
// three attempts: a free port can be taken between the look and the
// bind). Cleanup stops the whole group.
func StartServer(t testing.TB, p *Pipeline, env []string, argv func(port string) []string) *Pipeline {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p.stderr = &LockedBuffer{} // a fresh one for each attempt
		p.Port = Port(t)
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
		p.Cmd = cmd
		up := false
		deadline := time.Now().Add(15 * time.Second)
		for !up && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Time{}
				continue
			default:
			}
			if Listening(p.Port) {
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

// host is the address the pipeline listens on.
func (p *Pipeline) host() string {
	if p.Host == "" {
		return "127.0.0.1"
	}
	return p.Host
}

// Stderr returns everything the programs of the pipeline have written
// to stderr so far (stunnel-imap's one info line per connection,
// warnings, fatal lines).
func (p *Pipeline) Stderr() string { return p.stderr.String() }

// WaitLines waits until at least n lines are on stderr, or the timeout.
func (p *Pipeline) WaitLines(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.stderr.String(), "\n") < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitLog waits until a stderr line matches the regular expression re
// and returns that line; it fails the test after timeout.
func (p *Pipeline) WaitLog(t testing.TB, re string, timeout time.Duration) string {
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

// SessionEnd waits for stunnel-imap's info line of the pipeline's one
// session and for the session's processes to be gone (15 s each), fails
// the test unless there is exactly one info line, and returns it.
func (p *Pipeline) SessionEnd(t testing.TB) string {
	t.Helper()
	line := p.WaitLog(t, `stunnel-imap: info: `, 15*time.Second)
	p.WaitNoChildren(t, 15*time.Second)
	if n := strings.Count(p.Stderr(), "stunnel-imap: info:"); n != 1 {
		t.Errorf("%d info lines for one session:\n%s", n, p.Stderr())
	}
	return line
}

// Children returns the pids of the pipeline's processes other than
// tcpserver itself (its process group): after a session ends, none
// should be left. A zombie does not count: an orphan's zombie waits for
// init to reap it.
func (p *Pipeline) Children() []int { return ProcessGroup(p.Cmd.Process.Pid, true) }

// WaitNoChildren waits until the pipeline has no process left but
// tcpserver, and fails the test naming the leftovers after timeout.
func (p *Pipeline) WaitNoChildren(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := p.Children()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after the session: %s", Describe(left))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FindConn waits until the proxy of the connection from client port
// (stunnel-imap with -K, tcpserver's child) and, when wantKey, its key
// process (stunnel-imap-key, the proxy's child) run: exec'd, no longer
// setuidgid-chroot.
func (p *Pipeline) FindConn(t *testing.T, port int, wantKey bool) ConnProcs {
	t.Helper()
	return FindConn(t, p.Children, port, wantKey)
}

// EndStatus waits for tcpserver -v's end line for pid and returns the
// raw wait status it reports.
func (p *Pipeline) EndStatus(t *testing.T, pid int) int {
	t.Helper()
	line := p.WaitLog(t, `^tcpserver: end `+strconv.Itoa(pid)+` status \d+$`, 20*time.Second)
	n, _ := strconv.Atoi(line[strings.LastIndexByte(line, ' ')+1:])
	return n
}

// KillKeyPending kills conn's key process with sig while its client c
// (from StartTLSPending) has not sent its ClientHello yet: the client's
// handshake with cfg then fails, c is closed, and the proxy exits 0
// (tcpserver -v's end line).
func (p *Pipeline) KillKeyPending(t *testing.T, c *IMAPClient, conn ConnProcs, sig syscall.Signal, cfg *tls.Config) {
	t.Helper()
	syscall.Kill(conn.Key, sig)
	WaitGone(t, conn.Key, fmt.Sprintf("key process after signal %d", int(sig)))
	tc := tls.Client(c.Conn, cfg)
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err == nil {
		t.Fatalf("a handshake succeeded without the key process")
	}
	c.Close()
	if st := p.EndStatus(t, conn.Proxy); st != 0 {
		t.Errorf("the proxy whose key process died of signal %d: wait status %d, want exit 0", int(sig), st)
	}
}
