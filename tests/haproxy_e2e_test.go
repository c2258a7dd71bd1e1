package tests

// Real HAProxy (Debian's haproxy, mode tcp) in front of two imap-tls
// services under supervise, each with proxy-server (-L) in its chain and
// -H to a Dovecot that takes the client's address from it.

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

// supervised is one imap-tls service run by the real supervise.
type supervised struct {
	dir  string
	port int
	out  *testkit.LockedBuffer
}

// superviseService starts supervise on a service directory whose run
// file execs imap-tls-server with args on 127.0.0.1:port.
func superviseService(t *testing.T, pathDir string, args []string, backend []string) *supervised {
	t.Helper()
	s := &supervised{dir: t.TempDir(), port: harness.Port(t), out: &testkit.LockedBuffer{}}
	q := func(a []string) string {
		var b strings.Builder
		for _, x := range a {
			b.WriteString(" '" + strings.ReplaceAll(x, "'", `'\''`) + "'")
		}
		return b.String()
	}
	run := "#!/bin/sh\nexec 2>&1\nPATH=" + pathDir + ":$PATH\nexport PATH\nexec imap-tls-server" + q(args) +
		" -- 127.0.0.1 " + strconv.Itoa(s.port) + q(backend) + "\n"
	if err := os.WriteFile(filepath.Join(s.dir, "run"), []byte(run), 0o755); err != nil {
		t.Fatal(err)
	}
	harness.Supervise(t, s.dir, s.out)
	for deadline := time.Now().Add(15 * time.Second); !harness.Listening(s.port); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("service on %d not up: %s", s.port, s.out.String())
		}
	}
	return s
}

// startHAProxy runs haproxy -db with a tcp frontend on a free port and
// one server line per backend port, with the given server options.
func startHAProxy(t *testing.T, serverOpts string, ports ...int) int {
	t.Helper()
	harness.Need(t, "haproxy")
	front := harness.Port(t)
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n")
	fmt.Fprintf(&b, "frontend imap\n  bind 127.0.0.1:%d\n  default_backend imaptls\n", front)
	fmt.Fprintf(&b, "backend imaptls\n  balance roundrobin\n")
	for i, p := range ports {
		fmt.Fprintf(&b, "  server s%d 127.0.0.1:%d %s check inter 1s fall 2 rise 1\n", i, p, serverOpts)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &testkit.LockedBuffer{}
	cmd := exec.Command("haproxy", "-f", cfg, "-db")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); !harness.Listening(front); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not up: %s", out.String())
		}
	}
	return front
}

// TestHAProxy: HAProxy with send-proxy-v2, then send-proxy, in front of
// two services; clients from 127.0.0.5 to .8: each address appears in
// Dovecot's rip= and in the line of the service that served it; the
// health checks (every second to each service) leave no line; with one
// service stopped by svc -d, new clients go to the other.
func TestHAProxy(t *testing.T) {
	harness.Need(t, "supervise", "svc", "haproxy")
	harness.NeedRoot(t)
	dc := harness.StartDovecot(t)
	harness.EnsureAccount(t, "imaptls")
	pathDir := t.TempDir()
	for _, name := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "proxy-server"} {
		if err := os.Symlink(harness.Bin(t, name), filepath.Join(pathDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	pem, ca := harness.WriteCert(t, t.TempDir())
	jail := t.TempDir()
	os.Chmod(jail, 0o755)
	args := []string{"-n", "imap", "-u", "imaptls", "-j", jail, "-k", pem, "-H", "-L", "127.0.0.1"}
	p := &harness.Pipeline{CA: ca}
	for _, opt := range []string{"send-proxy-v2", "send-proxy"} {
		t.Run(opt, func(t *testing.T) {
			a := superviseService(t, pathDir, args, dc.HAProxyCmd())
			b := superviseService(t, pathDir, args, dc.HAProxyCmd())
			front := startHAProxy(t, opt, a.port, b.port)
			addr := "127.0.0.1:" + strconv.Itoa(front)
			time.Sleep(2500 * time.Millisecond) // health checks run meanwhile
			for i := 5; i <= 8; i++ {
				src := fmt.Sprintf("127.0.0.%d", i)
				if tagged, _ := harness.Login(t, p, "imap", src, addr, "alice", "secret"); !strings.HasPrefix(tagged, "a OK") {
					t.Fatalf("LOGIN from %s: %q", src, tagged)
				}
				harness.WaitDovecotLog(t, dc, `Login: user=<alice>, method=PLAIN, rip=`+regexp.QuoteMeta(src)+`, .*secured`)
				line := waitEither(t, `^stunnel-imap: info: remote=`+regexp.QuoteMeta(src)+`:\d+ mode=imap .* auth=yes `, a, b)
				t.Logf("%s: %s", src, line)
			}
			// Both served, and nothing else was logged: no line for
			// the health checks (one a second to each).
			for _, s := range []*supervised{a, b} {
				lines := strings.Split(strings.TrimSpace(s.out.String()), "\n")
				var other []string
				for _, l := range lines {
					client := strings.HasPrefix(l, "stunnel-imap: info: remote=127.0.0.") && !strings.HasPrefix(l, "stunnel-imap: info: remote=127.0.0.1:")
					if !client && !strings.HasPrefix(l, "imap-tls-server: warning:") { // the key file's start-time check
						other = append(other, l)
					}
				}
				if len(other) > 0 || len(lines) < 2 {
					t.Errorf("service %d's log:\n%s", s.port, s.out.String())
				}
			}
			// Svc -d one: HAProxy's checks send the next clients to the
			// other.
			if out, err := exec.Command("svc", "-d", a.dir).CombinedOutput(); err != nil {
				t.Fatalf("svc -d: %v %s", err, out)
			}
			time.Sleep(3500 * time.Millisecond)
			before := strings.Count(b.out.String(), "\n")
			for i := 9; i <= 11; i++ {
				src := fmt.Sprintf("127.0.0.%d", i)
				if tagged, _ := harness.Login(t, p, "imap", src, addr, "alice", "secret"); !strings.HasPrefix(tagged, "a OK") {
					t.Fatalf("LOGIN from %s after svc -d: %q", src, tagged)
				}
				waitEither(t, `^stunnel-imap: info: remote=`+regexp.QuoteMeta(src)+`:\d+ mode=imap .* auth=yes `, b)
			}
			if got := strings.Count(b.out.String(), "\n") - before; got != 3 {
				t.Errorf("after svc -d the other service logged %d lines, want 3:\n%s", got, b.out.String())
			}
		})
	}
}

// waitEither waits until one of the services logs a line matching re.
func waitEither(t *testing.T, re string, ss ...*supervised) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, s := range ss {
			for _, l := range strings.Split(s.out.String(), "\n") {
				if rx.MatchString(l) {
					return l
				}
			}
		}
		if time.Now().After(deadline) {
			var all string
			for _, s := range ss {
				all += s.out.String()
			}
			t.Fatalf("no line matching %q:\n%s", re, all)
		}
	}
}
