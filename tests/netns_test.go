package tests

// A private network namespace for the tests that need the real ports
// (143, 993, 110, 995 and Dovecot's 10143, 10110), addresses of their
// own, or a firewall: nothing they do reaches the host's network or its
// nftables. The tests of the shipped Dovecot drop-in and fail2ban jail
// (dovecot_dropin_test.go, fail2ban_ban_test.go) run their services in
// one.

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// netNS is a network namespace held open by a sleeping process; its
// commands run in it through nsenter.
type netNS struct {
	pid int // the holder, in the namespace
}

// startNetNS makes a network namespace with lo up and addrs (CIDR, e.g.
// 192.0.2.5/32) added to lo. It goes when the test ends, with the last
// process in it.
func startNetNS(t *testing.T, addrs ...string) *netNS {
	t.Helper()
	harness.NeedRoot(t)
	harness.Need(t, "unshare", "nsenter", "ip")
	script := `set -e
ip link set lo up
for a; do ip addr add "$a" dev lo; done
echo up
exec sleep 3600`
	cmd := exec.Command("unshare", append([]string{"-n", "sh", "-c", script, "sh"}, addrs...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr harness.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start unshare: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUp(t, out, &stderr, "a network namespace")
	return &netNS{pid: cmd.Process.Pid}
}

// waitUp waits, at most 20 s, for the "up" line of a namespace's
// unshare script on out, and fails the test with the script's stderr
// otherwise; what names the namespace in the message.
func waitUp(t *testing.T, out io.Reader, stderr *harness.LockedBuffer, what string) {
	t.Helper()
	up := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		up <- l
	}()
	select {
	case l := <-up:
		if l != "up\n" {
			t.Fatalf("unable to set up %s: %q %s", what, l, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s after 20 s: %s", what, stderr.String())
	}
}

// Command is args run in the namespace (nsenter execs args: the pid is
// args[0]'s).
func (n *netNS) Command(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.pid), "-n", "--"}, args...)...)
}

// Run runs args in the namespace (60 s hang guard) and returns its
// stdout, its stderr and its exit code; it fails the test when args
// cannot run.
func (n *netNS) Run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return harness.ExitCode(t, n.Command(args...))
}

// Listeners are the namespace's listening TCP sockets, "ADDR:PORT"
// (IPv6 in brackets), from its /proc/PID/net/tcp and tcp6: without
// connecting, which would start a session.
func (n *netNS) Listeners() []string {
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", n.pid, f))
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "0A" {
				continue
			}
			hexIP, hexPort, ok := strings.Cut(fs[1], ":")
			raw, err := hex.DecodeString(hexIP)
			port, err2 := strconv.ParseUint(hexPort, 16, 16)
			if !ok || err != nil || err2 != nil || len(raw)%4 != 0 {
				continue
			}
			// /proc prints the address as 32-bit words in host order
			// (little-endian here).
			for i := 0; i < len(raw); i += 4 {
				raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
			}
			out = append(out, net.JoinHostPort(net.IP(raw).String(), strconv.Itoa(int(port))))
		}
	}
	sort.Strings(out)
	return out
}

// Listening reports whether a socket listens on port in the namespace,
// on any address.
func (n *netNS) Listening(port int) bool {
	for _, l := range n.Listeners() {
		if strings.HasSuffix(l, ":"+strconv.Itoa(port)) {
			return true
		}
	}
	return false
}

// waitListening waits (20 s) until port listens in the namespace; it
// fails the test with the service's log and what more says then.
func (n *netNS) waitListening(t *testing.T, s *harness.Service, port int, more func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !n.Listening(port) {
		if time.Now().After(deadline) {
			extra := ""
			if more != nil {
				extra = more()
			}
			t.Fatalf("%s: not listening on port %d after 20 s; log:\n%s%s", s.Dir, port, strings.Join(s.LogLines(t), "\n"), extra)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nsFront is one front to make with imap-tls-conf in a namespace.
type nsFront struct {
	Dir  string
	Mode string
	IP   string
	Port int
	Env  map[string]string // env/ files to write over imap-tls-conf's
}

// startFronts makes each front with imap-tls-conf (-m Mode, the test
// accounts, Dir, IP, Port), puts pem in its ssl/stunnel.pem, writes its
// Env, and runs svscan on them in the namespace, each front's log/ by
// multilog into Dir/log/main/current as in production. It returns once
// every front listens; at the end of the test the tree is taken down
// (svscan, then svc -dx) and nothing may be left running.
func startFronts(t *testing.T, n *netNS, pem string, fronts ...nsFront) *harness.SvscanTree {
	t.Helper()
	harness.Need(t, "svscan", "supervise", "svc", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver")
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	key, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	conf := harness.Bin(t, "imap-tls-conf")
	tr := &harness.SvscanTree{Root: t.TempDir(), Out: &harness.LockedBuffer{}}
	for i, f := range fronts {
		out, err := exec.Command(conf, "-m", f.Mode, harness.ServiceAcct, harness.ServiceLogAcct, f.Dir, f.IP, strconv.Itoa(f.Port)).CombinedOutput()
		if err != nil {
			t.Fatalf("imap-tls-conf -m %s ... %s: %v: %s", f.Mode, f.Dir, err, out)
		}
		if err := os.WriteFile(filepath.Join(f.Dir, "ssl", "stunnel.pem"), key, 0o400); err != nil {
			t.Fatal(err)
		}
		s := &harness.Service{Dir: f.Dir, Port: f.Port, Mode: f.Mode}
		for k, v := range f.Env {
			s.WriteEnv(t, k, v)
		}
		if err := os.Symlink(f.Dir, filepath.Join(tr.Root, "front"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if v, ok := f.Env["SIGNER"]; !ok || v != "" {
			// the signer, a service of its own, linked beside its front
			if err := os.Symlink(filepath.Join(f.Dir, "signer"), filepath.Join(tr.Root, "front"+strconv.Itoa(i)+"-signer")); err != nil {
				t.Fatal(err)
			}
		}
		tr.Services = append(tr.Services, s)
	}
	tr.Cmd = n.Command("svscan", tr.Root)
	harness.RunSvscan(t, tr.Cmd, tr.Out)
	t.Cleanup(func() { tr.Stop(t) })
	for _, s := range tr.Services {
		n.waitListening(t, s, s.Port, nil)
	}
	return tr
}

// siteFrontPorts are the standard ports of a site's fronts.
var siteFrontPorts = map[string]int{"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}

// startSite makes a site with imap-tls-conf -m MODES (the test
// accounts, site, every address), puts pem in its ssl/stunnel.pem,
// writes env into the site's env/ and frontEnv into each front's, and
// runs svscan in the namespace on one link to it, as production does
// (`ln -s /etc/imap-tls /etc/service/`): the site's run file starts its
// fronts on their standard ports, the signer and their logs by multilog
// (SITE/service/MODE/log/main/current). It returns once every front
// listens; at the end of the test the tree is taken down (svscan, then
// svc -dx of the link: the site's run file stops the rest) and nothing
// may be left running.
func startSite(t *testing.T, n *netNS, pem, site string, modes []string, env, frontEnv map[string]string) *harness.SvscanTree {
	t.Helper()
	harness.Need(t, "svscan", "supervise", "svc", "svok", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver")
	harness.EnsureAccount(t, harness.ServiceAcct)
	harness.EnsureAccount(t, harness.ServiceLogAcct)
	key, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(harness.Bin(t, "imap-tls-conf"), "-m", strings.Join(modes, ","), harness.ServiceAcct, harness.ServiceLogAcct, site, "0").CombinedOutput()
	if err != nil {
		t.Fatalf("imap-tls-conf -m %s ... %s: %v: %s", strings.Join(modes, ","), site, err, out)
	}
	if err := os.WriteFile(filepath.Join(site, "ssl", "stunnel.pem"), key, 0o400); err != nil {
		t.Fatal(err)
	}
	s := &harness.Service{Dir: site}
	for k, v := range env {
		s.WriteEnv(t, k, v)
	}
	for _, m := range modes {
		f := &harness.Service{Dir: filepath.Join(site, "service", m)}
		for k, v := range frontEnv {
			f.WriteEnv(t, k, v)
		}
	}
	tr := &harness.SvscanTree{Root: t.TempDir(), Out: &harness.LockedBuffer{}, Services: []*harness.Service{s}}
	if err := os.Symlink(site, filepath.Join(tr.Root, filepath.Base(site))); err != nil {
		t.Fatal(err)
	}
	tr.Cmd = n.Command("svscan", tr.Root)
	harness.RunSvscan(t, tr.Cmd, tr.Out)
	t.Cleanup(func() { tr.Stop(t) })
	for _, m := range modes {
		f := &harness.Service{Dir: filepath.Join(site, "service", m)}
		n.waitListening(t, f, siteFrontPorts[m], func() string { return "\nsvscan:\n" + tr.Out.String() })
	}
	// The fronts listen before the signer may be ready: a connection
	// then finds no signer and is closed.
	if v, ok := env["SIGNER"]; !ok || v != "" {
		harness.WaitSignerReady(t, filepath.Join(site, "service", "signer"), 1)
	}
	return tr
}
