package tests

// README.md's "Running it for real", run as it stands: the numbered
// block from a fresh Debian 12 to logins on 143, 993, 110 and 995 in
// front of Debian's own Dovecot (TestProduction), and its upgrade and
// rollback under held sessions (TestUpgrade).
//
// Where the block writes (/etc: the accounts, /etc/imap-tls,
// /etc/service, /etc/dovecot; /usr/local; /run and /var: Dovecot's
// sockets, state and log) is private: the block runs as root in a
// private mount namespace with overlays on /etc, /usr/local, /run and
// /var (their upper layers in the test's temporary directory), and a
// private network namespace (the real ports, Dovecot's 10143 and 10110,
// the firewall rule in the namespace's own nftables). Nothing of it
// reaches the host, other tests or CI's machine.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/suite"
	"imap-tls/tests/harness"
)

// rootPath is root's login PATH on Debian: the block's commands find
// the installed programs in /usr/local/bin, as an administrator's shell
// does.
const rootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// prodNS is a private mount and network namespace, held open by a
// sleeping process; its commands run in it through nsenter.
type prodNS struct {
	pid int
	mnt string // the holder's /proc/PID/ns/mnt: the namespace's processes share it
}

// startProdNS makes the namespace: overlays on /etc, /usr/local, /run
// and /var whose upper layers are in a temporary directory, lo up. At
// the end of the test (after the cleanups registered later: svscan,
// Dovecot) it fails the test if any process but the holder is left in
// it, kills those, then the holder: the mounts go with the last one.
func startProdNS(t *testing.T) *prodNS {
	t.Helper()
	harness.NeedRoot(t)
	harness.Need(t, "unshare", "nsenter", "ip", "mount")
	dir := t.TempDir()
	script := `set -e
for d in /etc /usr/local /run /var; do
	u="$0/upper$(echo $d | tr / _)" w="$0/work$(echo $d | tr / _)"
	mkdir -p "$u" "$w"
	mount -t overlay "imaptls-prod$(echo $d | tr / _)" -o "lowerdir=$d,upperdir=$u,workdir=$w" "$d"
done
ip link set lo up
echo up
exec sleep 3600`
	cmd := exec.Command("unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script, dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr harness.LockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unable to start unshare: %v", err)
	}
	n := &prodNS{pid: cmd.Process.Pid}
	t.Cleanup(func() {
		left := n.processes()
		if len(left) > 0 {
			t.Errorf("processes left in the namespace: %s", harness.Describe(left))
			for _, p := range left {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitUp(t, out, &stderr, "the namespace (unshare -m -n, overlays on /etc, /usr/local, /run, /var)")
	n.mnt, err = os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", n.pid))
	if err != nil {
		t.Fatal(err)
	}
	if self, _ := os.Readlink("/proc/self/ns/mnt"); self == n.mnt {
		t.Fatal("the namespace's mounts are the host's")
	}
	return n
}

// Command is args run in the namespace with root's PATH, HOME, and the
// Go variables of the test's environment (redo.do install builds its
// man page maker).
func (n *prodNS) Command(args ...string) *exec.Cmd {
	c := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.pid), "-m", "-n", "--"}, args...)...)
	c.Env = []string{"PATH=" + rootPath, "HOME=/root", "LANG=C.UTF-8"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GO") || strings.HasPrefix(kv, "HOME=") {
			c.Env = append(c.Env, kv)
		}
	}
	return c
}

// Sh runs script with sh -c in the namespace, in dir, with env added;
// it returns the output (stdout and stderr) and the error.
func (n *prodNS) Sh(t *testing.T, dir, script string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := n.Command("sh", "-c", "cd \"$0\" && "+script, dir)
	c = exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	c.Env = append(n.Command().Env, env...)
	c.WaitDelay = time.Second
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s: no end in 5 minutes:\n%s", script, out)
	}
	return string(out), err
}

// MustSh is Sh that fails the test when script fails.
func (n *prodNS) MustSh(t *testing.T, script string) string {
	t.Helper()
	out, err := n.Sh(t, "/", script)
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// Path is path as the namespace sees it, read from outside.
func (n *prodNS) Path(path string) string {
	return fmt.Sprintf("/proc/%d/root%s", n.pid, path)
}

// Listening reports whether a socket listens on port in the namespace.
func (n *prodNS) Listening(port int) bool { return (&netNS{pid: n.pid}).Listening(port) }

// processes are the pids in the namespace but the holder's.
func (n *prodNS) processes() []int {
	var pids []int
	for _, p := range harness.AllPids() {
		if p == n.pid {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", p)); err == nil && l == n.mnt {
			pids = append(pids, p)
		}
	}
	return pids
}

// named are the pids in the namespace whose comm is name (as the
// kernel keeps it: 15 bytes at most).
func (n *prodNS) named(name string) []int {
	if len(name) > 15 {
		name = name[:15]
	}
	var pids []int
	for _, p := range n.processes() {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); err == nil && strings.TrimSpace(string(b)) == name {
			pids = append(pids, p)
		}
	}
	return pids
}

// waitFor polls ok for up to limit, failing the test with what() then.
func waitFor(t *testing.T, limit time.Duration, ok func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// blockStep is one command of a README block, with the numbered
// comment it stands under.
type blockStep struct {
	step, cmd string
}

// readmeBlock returns the commands of README.md's indented block that
// follows the line starting with intro, each with its "# N. ..." step;
// comment lines are not commands.
func readmeBlock(t *testing.T, intro string) []blockStep {
	t.Helper()
	var steps []blockStep
	step := ""
	for _, l := range pageCommands(t, filepath.Join(harness.RepoRoot(t), "README.md"), intro) {
		switch {
		case l == "":
		case strings.HasPrefix(l, "#"):
			step = l
		default:
			steps = append(steps, blockStep{step, l})
		}
	}
	return steps
}

// prodSite is README's production block run in a namespace.
type prodSite struct {
	ns   *prodNS
	ca   string // the CA of the certificate put where certbot puts it
	tree string // the checkout the block installed from (a copy)
	bin  string // the programs that install took ($IMAPTLS_BIN)
	out  map[string]string
}

// fronts of the block's site, by directory, and their ports.
var prodFronts = []struct {
	mode string
	port int
}{{"imap", 143}, {"imaps", 993}, {"pop3", 110}, {"pop3s", 995}}

// doveLog is the log_path of the test's addition to Dovecot's
// configuration: Debian's logs to syslog, which a container lacks.
const doveLog = "/var/log/dovecot-imap-tls-test.log"

// runProductionBlock runs README.md's production block in a new
// namespace, line by line as it stands, on a machine made to look as
// it does right after the block's apt-get: Debian's Dovecot running
// with its own configuration (and the test's addition: a log file, a
// Maildir), svscan running on /etc/service (svscanboot's work at boot),
// the accounts imaptls and imaptlslog not there yet (removed in the
// namespace's /etc), a mail account alice with the password secret (a
// system account: Debian's PAM passdb logs it in), and certbot's files
// for mail.example.org. Not run: apt-get (the packages are installed
// already by redo.do's test target, on this host: running it would at
// best change nothing and needs the network; each package it names is
// checked to be installed instead) and the Go download (Go is here: the
// test is built with it). Every other line runs word for word, `sh
// redo.do install` in a copy of the checkout with IMAPTLS_BIN set in its
// environment (the line unchanged): it installs the programs under test
// instead of building them again.
func runProductionBlock(t *testing.T) *prodSite {
	t.Helper()
	harness.NeedRoot(t)
	harness.Need(t, "svscan", "supervise", "svc", "svstat", "multilog", "softlimit", "envdir", "setuidgid", "tcpserver",
		"dovecot", "doveadm", "/usr/lib/dovecot/pop3-login", "nft", "useradd", "userdel", "chpasswd", "curl", "socat", "setpriv", "dpkg", harness.Python)
	bin := filepath.Dir(harness.Bin(t, "imap-tls-conf"))
	for _, p := range suite.Programs {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			t.Fatalf("%s: sh redo.do install takes every program from $IMAPTLS_BIN (sh redo.do builds them): %v", p, err)
		}
	}
	steps := readmeBlock(t, "From a fresh Debian 12")
	var numbers []string
	for _, s := range steps {
		if len(numbers) == 0 || numbers[len(numbers)-1] != s.step {
			numbers = append(numbers, s.step)
		}
	}
	for i, s := range numbers {
		if !strings.HasPrefix(s, fmt.Sprintf("# %d. ", i+1)) {
			t.Errorf("README's production block: step %d is %q, want \"# %d. ...\"", i+1, s, i+1)
		}
	}

	site := &prodSite{ns: startProdNS(t), tree: copyTree(t), bin: bin, out: map[string]string{}}
	n := site.ns
	os.Chmod(filepath.Dir(site.tree), 0o755)
	os.Chmod(site.tree, 0o755)

	// The machine as the block's apt-get leaves it.
	// (userdel -f: other tests' processes on this host may run as them)
	n.MustSh(t, `set -e
for a in imaptls imaptlslog; do if id "$a" >/dev/null 2>&1; then userdel -f "$a"; fi; done
rm -rf /etc/imap-tls /etc/service /etc/dovecot/conf.d/99-imap-tls.conf /etc/dovecot/local.conf
mkdir -m 755 /etc/service
id alice >/dev/null 2>&1 || useradd --create-home --home-dir /var/lib/imaptls-test-alice --shell /usr/sbin/nologin alice
echo alice:secret | chpasswd`)
	local := "# the test's addition: a log file (Debian's Dovecot logs to syslog), Maildir\n" +
		"log_path = " + doveLog + "\nmail_location = maildir:~/Maildir\nauth_verbose = yes\n"
	if err := os.WriteFile(n.Path("/etc/dovecot/local.conf"), []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	pemPath, ca := harness.WriteCert(t, certDir)
	site.ca = ca
	os.Chmod(certDir, 0o755)
	os.Chmod(ca, 0o644)
	chain, key := splitPEM(t, pemPath)
	le := n.Path("/etc/letsencrypt/live/mail.example.org")
	if err := os.MkdirAll(le, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(le, "fullchain.pem"), chain, 0o644)
	os.WriteFile(filepath.Join(le, "privkey.pem"), key, 0o600)

	// Debian's Dovecot, started as its package starts it (no systemd
	// here: dovecot reads /etc/dovecot/dovecot.conf).
	// (its output to a file: the daemon keeps it open)
	dove := n.Command("dovecot")
	doveOut, err := os.Create(filepath.Join(t.TempDir(), "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	dove.Stdout, dove.Stderr = doveOut, doveOut
	err = dove.Run()
	doveOut.Close()
	if err != nil {
		out, _ := os.ReadFile(doveOut.Name())
		t.Fatalf("dovecot: %v: %s", err, out)
	}
	t.Cleanup(func() {
		pid, _ := os.ReadFile(n.Path("/run/dovecot/master.pid"))
		n.Sh(t, "/", "doveadm stop")
		p, _ := strconv.Atoi(strings.TrimSpace(string(pid)))
		// the master, then its log process, which outlives it a little
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if (p <= 0 || !harness.Alive(p)) && len(n.processes()) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	waitFor(t, 20*time.Second, func() bool {
		return n.Listening(143) && n.Listening(993) && n.Listening(110) && n.Listening(995)
	}, func() string { return "Debian's Dovecot does not listen on 143, 993, 110, 995: " + site.doveLog() })

	// svscan on /etc/service, as svscanboot runs it at boot.
	svscan := n.Command("svscan", "/etc/service")
	svOut := &harness.LockedBuffer{}
	svscan.Stdout, svscan.Stderr = svOut, svOut
	svscan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	svscan.WaitDelay = time.Second
	if err := svscan.Start(); err != nil {
		t.Fatalf("unable to start svscan: %v", err)
	}
	t.Cleanup(func() {
		// svscan first (it would start a new supervise), then the link:
		// the site's run file stops its fronts, signer and logs
		syscall.Kill(svscan.Process.Pid, syscall.SIGTERM)
		svscan.Wait()
		n.Sh(t, "/", "for s in /etc/service/*; do svc -dx $s; done")
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if len(n.named("supervise"))+len(n.named("tcpserver"))+len(n.named("multilog"))+len(n.named("svscan")) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	seen := map[string]bool{}
	for _, s := range steps {
		f := strings.Fields(s.cmd)
		seen[f[0]] = true
		switch {
		case f[0] == "apt-get":
			for _, p := range f[1:] {
				if strings.HasPrefix(p, "-") || p == "install" {
					continue
				}
				if out, err := exec.Command("dpkg", "-s", p).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("Status: install ok installed")) {
					t.Errorf("the block's apt-get names %s, which is not installed here (add it to redo.do's test_packages): %v", p, err)
				}
			}
			continue
		case f[0] == "curl" && strings.Contains(s.cmd, "go.dev/dl/go"):
			if _, err := os.Stat("/usr/local/go/bin/go"); err != nil {
				t.Errorf("the block installs Go in /usr/local/go, not found here: %v", err)
			}
			continue
		}
		out, err := n.Sh(t, site.tree, s.cmd, "IMAPTLS_BIN="+bin)
		site.out[f[0]] += out
		switch {
		case err != nil && f[0] == "imap-tls-check":
			// what it found wrong is said; the logins are still tried
			t.Errorf("README's %s\n%s: %v\n%s", s.step, s.cmd, err, out)
		case err != nil:
			t.Fatalf("README's %s\n%s: %v\n%s\nsvscan: %s\nDovecot: %s", s.step, s.cmd, err, out, svOut.String(), site.doveLog())
		}
	}
	for _, want := range []string{"apt-get", "curl", "sh", "for", "imap-tls-conf", "cat", "install", "ln", "imap-tls-check"} {
		if !seen[want] {
			t.Errorf("README's production block lacks %s", want)
		}
	}
	for _, f := range prodFronts {
		waitFor(t, 20*time.Second, func() bool { return n.Listening(f.port) }, func() string {
			b, _ := os.ReadFile(n.Path("/etc/imap-tls/service/" + f.mode + "/log/main/current"))
			return fmt.Sprintf("front %s: nothing listens on %d; log:\n%s", f.mode, f.port, b)
		})
	}
	// the fronts listen before the signer may be ready: a connection
	// then finds no signer and is closed
	waitFor(t, 20*time.Second, func() bool {
		return strings.Contains(site.signerLog(), "stunnel-imap-signer: info: ready")
	}, func() string { return "the site's signer is not ready; its log:\n" + site.signerLog() })
	return site
}

func (s *prodSite) signerLog() string {
	b, _ := os.ReadFile(s.ns.Path("/etc/imap-tls/service/signer/log/main/current"))
	return string(b)
}

// splitPEM splits a chain-and-key file into certbot's two: the
// certificates (fullchain.pem) and the key (privkey.pem).
func splitPEM(t *testing.T, path string) (chain, key []byte) {
	t.Helper()
	rest, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, pem.EncodeToMemory(b)...)
		} else {
			key = append(key, pem.EncodeToMemory(b)...)
		}
	}
	if len(chain) == 0 || len(key) == 0 {
		t.Fatalf("%s: no certificate or no key", path)
	}
	return chain, key
}

func (s *prodSite) doveLog() string {
	b, _ := os.ReadFile(s.ns.Path(doveLog))
	return string(b)
}

func (s *prodSite) frontLog(mode string) string {
	b, _ := os.ReadFile(s.ns.Path("/etc/imap-tls/service/" + mode + "/log/main/current"))
	return string(b)
}

// pyLogins logs in as alice on the four ports from source address src:
// imaplib with STARTTLS on 143 and implicit TLS on 993, poplib with
// STLS on 110 and implicit TLS on 995, the certificate verified.
const pyLogins = `
import imaplib, poplib, socket, ssl, sys
ca, src = sys.argv[1], sys.argv[2]
_cc = socket.create_connection
socket.create_connection = lambda a, timeout=None, source_address=None, **kw: _cc(a, timeout, (src, 0), **kw)
ctx = ssl.create_default_context(cafile=ca)
out = []
M = imaplib.IMAP4("127.0.0.1", 143, timeout=20); M.starttls(ssl_context=ctx); M.login("alice", "secret")
out.append("143:" + M.select("INBOX")[0]); M.logout()
M = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=ctx, timeout=20); M.login("alice", "secret")
out.append("993:" + M.select("INBOX")[0]); M.logout()
P = poplib.POP3("127.0.0.1", 110, timeout=20); P.stls(context=ctx); P.user("alice"); P.pass_("secret")
out.append("110:%d" % P.stat()[0]); P.quit()
P = poplib.POP3_SSL("127.0.0.1", 995, context=ctx, timeout=20); P.user("alice"); P.pass_("secret")
out.append("995:%d" % P.stat()[0]); P.quit()
print(" ".join(out))
`

// logins runs pyLogins in the namespace and returns its output.
func (s *prodSite) logins(t *testing.T, src string) (string, error) {
	t.Helper()
	c := s.ns.Command(harness.Python, "-c", pyLogins, s.ca, src)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := harness.RunBounded(t, c, 90*time.Second)
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return strings.TrimSpace(string(out)), nil
}

// TestProduction: README.md's production block, run as it stands in a
// private mount and network namespace (runProductionBlock), brings up
// logins on all four ports in front of Debian's own Dovecot: imaplib
// (STARTTLS on 143, implicit TLS on 993), poplib (STLS on 110, implicit
// TLS on 995) and curl (--ssl-reqd) on each, as alice through Debian's
// PAM; Dovecot logs each client's own address (rip=127.0.0.5 and
// 127.0.0.6) and secured; a plaintext LOGIN on 143 is refused before it
// reaches Dovecot; and a local account's forged PROXY header to
// Dovecot's 127.0.0.1:10143 finds the port closed (the rule the fronts
// loaded), where root's is greeted.
func TestProduction(t *testing.T) {
	site := runProductionBlock(t)
	n := site.ns
	// the check proved the rule the fronts loaded, for both of
	// Dovecot's ports
	for _, port := range []string{"10143", "10110"} {
		if !strings.Contains(site.out["imap-tls-check"], "ok: firewall: uid 65534 refused at 127.0.0.1:"+port+" ") {
			t.Errorf("imap-tls-check did not prove the firewall rule for 127.0.0.1:%s:\n%s", port, site.out["imap-tls-check"])
		}
	}

	// Every path under /usr/local the section names is one install put
	// there (Go's /usr/local/go aside).
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(b)[strings.Index(string(b), "## Running it for real\n")+1:], "\n## ")
	paths := regexp.MustCompile(`/usr/local/[A-Za-z0-9._/-]*[A-Za-z0-9_]`).FindAllString(section, -1)
	if len(paths) < 5 {
		t.Errorf("README's production section names %d paths under /usr/local: %q", len(paths), paths)
	}
	for _, p := range paths {
		if p == "/usr/local/go" {
			continue
		}
		if _, err := os.Stat(n.Path(p)); err != nil {
			t.Errorf("README's production section names %s, which sh redo.do install did not make: %v", p, err)
		}
	}

	out, err := site.logins(t, "127.0.0.5")
	if want := "143:OK 993:OK 110:0 995:0"; err != nil || out != want {
		t.Fatalf("imaplib and poplib on the four ports: %v: %q, want %q\nimap: %s\nDovecot: %s", err, out, want, site.frontLog("imap"), site.doveLog())
	}
	for _, url := range []string{"imap://127.0.0.1:143/", "imaps://127.0.0.1:993/", "pop3://127.0.0.1:110/", "pop3s://127.0.0.1:995/"} {
		out, errOut, code := harness.ExitCode(t, n.Command("curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", site.ca,
			"--interface", "127.0.0.6", "-u", "alice:secret", url))
		if code != 0 || strings.HasPrefix(url, "imap") && !strings.Contains(out, "INBOX") {
			t.Errorf("curl %s: exit %d: %s%s", url, code, out, errOut)
		}
	}
	for _, src := range []string{"127.0.0.5", "127.0.0.6"} {
		for _, proto := range []string{"imap", "pop3"} {
			re := regexp.MustCompile(proto + `-login: Info: Login: user=<alice>, method=PLAIN, rip=` + regexp.QuoteMeta(src) + `, lip=127\.0\.0\.1, .*secured`)
			if got := len(re.FindAllString(site.doveLog(), -1)); got != 2 {
				t.Errorf("%d lines matching %q in Dovecot's log, want 2 (STARTTLS and implicit TLS):\n%s", got, re, site.doveLog())
			}
		}
	}

	// A plaintext LOGIN on 143: refused by the front, never sent on.
	py := `
import socket
s = socket.create_connection(("127.0.0.1", 143), 20, ("127.0.0.7", 0))
f = s.makefile("rb")
g = f.readline()
s.sendall(b"a LOGIN alice secret\r\n")
print(g.decode().strip(), "|", f.readline().decode().strip())
`
	c := n.Command(harness.Python, "-c", py)
	raw, err := harness.RunBounded(t, c, 30*time.Second)
	got := strings.TrimSpace(string(raw))
	if err != nil || !strings.HasPrefix(got, "* OK") || !strings.HasSuffix(got, "| a NO [PRIVACYREQUIRED] TLS is required: use STARTTLS first") {
		t.Errorf("a plaintext LOGIN on 143: %v: %q, want the greeting and a NO [PRIVACYREQUIRED]", err, got)
	}
	waitFor(t, 10*time.Second, func() bool {
		return strings.Contains(site.frontLog("imap"), "client sent LOGIN before STARTTLS: refused; remote=127.0.0.7:")
	}, func() string {
		return "the front's log lacks the refused LOGIN from 127.0.0.7:\n" + site.frontLog("imap")
	})
	// Dovecot saw the connection (its PROXY header), never a login
	for _, l := range strings.Split(site.doveLog(), "\n") {
		if strings.Contains(l, "rip=127.0.0.7,") && !strings.Contains(l, "(no auth attempts") {
			t.Errorf("the plaintext LOGIN reached Dovecot: %s", l)
		}
	}

	// A forged PROXY header to Dovecot's haproxy port: uid 65534 (what
	// any local account could be) is refused; root's is greeted.
	forged := "PROXY TCP4 203.0.113.66 127.0.0.1 40000 143\r\na LOGOUT\r\n"
	for _, who := range []string{"nobody", "root"} {
		args := []string{"socat", "-T", "5", "STDIO", "TCP:127.0.0.1:10143"}
		if who == "nobody" {
			args = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
		}
		c := n.Command(args...)
		c.Stdin = strings.NewReader(forged)
		out, errOut, code := harness.ExitCode(t, c)
		switch {
		case who == "nobody" && (code == 0 || strings.Contains(out, "* OK") || !strings.Contains(errOut, "Connection refused")):
			t.Errorf("a local account's forged PROXY header to 127.0.0.1:10143: exit %d: %q %q, want the connection refused", code, out, errOut)
		case who == "root" && !strings.HasPrefix(out, "* OK"):
			t.Errorf("root's PROXY header to 127.0.0.1:10143: exit %d: %q %q, want Dovecot's greeting", code, out, errOut)
		}
	}
}

// heldSessions is a Python process in the namespace holding four
// sessions logged in as alice (imap STARTTLS, imaps, pop3 STLS, pop3s);
// "noop" on its stdin sends NOOP on each and prints the answers.
type heldSessions struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	pids []int // their stunnel-imap processes
}

const pyHold = `
import imaplib, poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
S = []
M = imaplib.IMAP4("127.0.0.1", 143, timeout=20); M.starttls(ssl_context=ctx); M.login("alice", "secret"); M.select("INBOX"); S.append(("imap", M))
M = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=ctx, timeout=20); M.login("alice", "secret"); M.select("INBOX"); S.append(("imaps", M))
P = poplib.POP3("127.0.0.1", 110, timeout=20); P.stls(context=ctx); P.user("alice"); P.pass_("secret"); S.append(("pop3", P))
P = poplib.POP3_SSL("127.0.0.1", 995, context=ctx, timeout=20); P.user("alice"); P.pass_("secret"); S.append(("pop3s", P))
print("held", flush=True)
for line in sys.stdin:
    r = []
    for name, c in S:
        try:
            if line.strip() == "quit":
                c.logout() if name.startswith("imap") else c.quit()
                r.append(name + "=bye")
            elif name.startswith("imap"):
                r.append(name + "=" + c.noop()[0])
            else:
                r.append(name + "=" + c.noop().decode().split()[0])
        except Exception as e:
            r.append(name + "=" + type(e).__name__)
    print(" ".join(r), flush=True)
    if line.strip() == "quit":
        break
`

// hold starts a heldSessions and returns once the four are logged in,
// with the pids of the stunnel-imap processes that serve them (those
// that were not there before).
func (s *prodSite) hold(t *testing.T) *heldSessions {
	t.Helper()
	before := map[int]bool{}
	for _, p := range s.ns.named("stunnel-imap") {
		before[p] = true
	}
	h := &heldSessions{cmd: s.ns.Command(harness.Python, "-c", pyHold, s.ca)}
	var err error
	if h.in, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &harness.LockedBuffer{}
	h.cmd.Stderr = stderr
	h.out = bufio.NewReader(stdout)
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.in.Close()
		done := make(chan struct{})
		go func() { h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			h.cmd.Process.Kill()
			<-done
		}
	})
	if l := h.line(t); l != "held" {
		t.Fatalf("sessions not held: %q %s", l, stderr.String())
	}
	waitFor(t, 10*time.Second, func() bool {
		h.pids = nil
		for _, p := range s.ns.named("stunnel-imap") {
			if !before[p] {
				h.pids = append(h.pids, p)
			}
		}
		return len(h.pids) == 4
	}, func() string { return fmt.Sprintf("stunnel-imap processes of the held sessions: %v, want 4", h.pids) })
	return h
}

// line reads one line from the sessions' process (20 s at most).
func (h *heldSessions) line(t *testing.T) string {
	t.Helper()
	got := make(chan string, 1)
	go func() { l, _ := h.out.ReadString('\n'); got <- strings.TrimSpace(l) }()
	select {
	case l := <-got:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("the held sessions' process said nothing for 30 s")
		return ""
	}
}

// noop sends NOOP on every held session; it fails the test unless each
// is answered OK.
func (h *heldSessions) noop(t *testing.T, when string) {
	t.Helper()
	io.WriteString(h.in, "noop\n")
	if got, want := h.line(t), "imap=OK imaps=OK pop3=+OK pop3s=+OK"; got != want {
		t.Errorf("%s: NOOP on the held sessions: %q, want %q", when, got, want)
	}
}

// quit logs the held sessions out.
func (h *heldSessions) quit(t *testing.T) {
	t.Helper()
	io.WriteString(h.in, "quit\n")
	if got, want := h.line(t), "imap=bye imaps=bye pop3=bye pop3s=bye"; got != want {
		t.Errorf("LOGOUT and QUIT of the held sessions: %q, want %q", got, want)
	}
}

// inode is the inode of path (for /proc/PID/exe: of the program the
// process runs, renamed over or not).
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// exeInode is the inode of the program pid runs.
func exeInode(t *testing.T, pid int) uint64 {
	return inode(t, fmt.Sprintf("/proc/%d/exe", pid))
}

// svstatPids are the pids svstat gives for the site's fronts and
// signer, in the namespace.
func (s *prodSite) svstatPids(t *testing.T) map[string]int {
	t.Helper()
	out, _ := s.ns.Sh(t, "/", "svstat /etc/imap-tls/service/*")
	pids := map[string]int{}
	for _, m := range regexp.MustCompile(`(?m)^/etc/imap-tls/service/(\w+): up \(pid (\d+)\)`).FindAllStringSubmatch(out, -1) {
		pids[m[1]], _ = strconv.Atoi(m[2])
	}
	return pids
}

// installed is a program of /usr/local/bin as the namespace has it: its
// inode and its bytes' sum.
func (s *prodSite) installed(t *testing.T, name string) (uint64, [32]byte) {
	t.Helper()
	p := s.ns.Path("/usr/local/bin/" + name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return inode(t, p), sha256.Sum256(b)
}

// fileSum is the sha256 of a file.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestUpgrade: over the site README's production block made (and
// running: sessions held on all four ports), README's upgrade block
// (`sh redo.do install` in the new checkout, `svc -t` of every front
// and the signer), with programs whose bytes differ from the installed
// ones: each installed program is a new file (a new inode: renamed
// over, not written in place) with the new bytes; every held session
// still answers NOOP after the restarts, its proxy still running the
// old program; each front and the signer has a new pid, and new
// sessions are served by the new programs. Then the rollback, the same
// block in the previous checkout: the old bytes back, the sessions held
// through both still answer, new ones get the old programs.
func TestUpgrade(t *testing.T) {
	site := runProductionBlock(t)
	n := site.ns
	upgrade := readmeBlock(t, "In the new checkout, as root:")
	if len(upgrade) != 2 || upgrade[0].cmd != "sh redo.do install" || !strings.HasPrefix(upgrade[1].cmd, "svc -t ") {
		t.Fatalf("README's upgrade block: %q, want sh redo.do install, then svc -t", upgrade)
	}

	// The new release: every program's bytes differ (a trailer after
	// the ELF file's end, which the loader ignores), from a checkout of
	// its own.
	newBin := t.TempDir()
	for _, p := range suite.Programs {
		b, err := os.ReadFile(filepath.Join(site.bin, p))
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, "\nimap-tls TestUpgrade: the next release\n"...)
		if err := os.WriteFile(filepath.Join(newBin, p), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(newBin, 0o755)
	newTree := copyTree(t)
	os.Chmod(filepath.Dir(newTree), 0o755)
	os.Chmod(newTree, 0o755)

	held := []*heldSessions{site.hold(t)}
	held[0].noop(t, "before the upgrade")

	// apply runs the upgrade block in tree with the programs of bin,
	// checks what it installed, and waits for every front and the
	// signer to run again with new pids.
	apply := func(what, tree, bin string) {
		t.Helper()
		oldIno := map[string]uint64{}
		for _, p := range suite.Programs {
			oldIno[p], _ = site.installed(t, p)
		}
		oldPids := site.svstatPids(t)
		if len(oldPids) != 5 {
			t.Fatalf("%s: svstat of the fronts and the signer: %v, want 5 up", what, oldPids)
		}
		for _, s := range upgrade {
			out, err := n.Sh(t, tree, s.cmd, "IMAPTLS_BIN="+bin)
			if err != nil {
				t.Fatalf("%s: README's %q: %v\n%s", what, s.cmd, err, out)
			}
		}
		for _, p := range suite.Programs {
			ino, sum := site.installed(t, p)
			if sum != fileSum(t, filepath.Join(bin, p)) {
				t.Errorf("%s: /usr/local/bin/%s is not the program installed", what, p)
			}
			if ino == oldIno[p] {
				t.Errorf("%s: /usr/local/bin/%s was written in place, not renamed over", what, p)
			}
		}
		waitFor(t, 30*time.Second, func() bool {
			pids := site.svstatPids(t)
			for k, old := range oldPids {
				if pids[k] == 0 || pids[k] == old {
					return false
				}
			}
			for _, f := range prodFronts {
				if !n.Listening(f.port) {
					return false
				}
			}
			return true
		}, func() string {
			return fmt.Sprintf("%s: the fronts and the signer after svc -t: %v, before %v", what, site.svstatPids(t), oldPids)
		})
		if out, err := site.logins(t, "127.0.0.8"); err != nil {
			// the signer may still be starting: once more, after a pause
			time.Sleep(2 * time.Second)
			if out, err = site.logins(t, "127.0.0.8"); err != nil {
				t.Fatalf("%s: new logins: %v: %s\nsigner: %s", what, err, out, site.signerLog())
			}
		}
		signer := n.named("stunnel-imap-signer")
		if len(signer) != 1 || exeInode(t, signer[0]) != inode(t, n.Path("/usr/local/bin/stunnel-imap-signer")) {
			t.Errorf("%s: the signer %v does not run the installed program", what, signer)
		}
	}

	oldIno := map[int]uint64{}
	for _, p := range held[0].pids {
		oldIno[p] = exeInode(t, p)
	}
	apply("upgrade", newTree, newBin)
	for _, p := range held[0].pids {
		if !harness.Alive(p) || exeInode(t, p) != oldIno[p] {
			t.Errorf("upgrade: the held session's stunnel-imap %d is gone or runs another program", p)
		}
	}
	held[0].noop(t, "after the upgrade")
	held = append(held, site.hold(t))
	newIno := inode(t, n.Path("/usr/local/bin/stunnel-imap"))
	for _, p := range held[1].pids {
		if exeInode(t, p) != newIno {
			t.Errorf("upgrade: a new session's stunnel-imap %d does not run the new program", p)
		}
	}
	held[1].noop(t, "a session started after the upgrade")

	apply("rollback", site.tree, site.bin)
	held[0].noop(t, "after the upgrade and the rollback")
	held[1].noop(t, "after the rollback")
	held = append(held, site.hold(t))
	backIno := inode(t, n.Path("/usr/local/bin/stunnel-imap"))
	if backIno == newIno {
		t.Errorf("rollback: /usr/local/bin/stunnel-imap is still the upgrade's file")
	}
	for _, p := range held[2].pids {
		if exeInode(t, p) != backIno {
			t.Errorf("rollback: a new session's stunnel-imap %d does not run the previous program", p)
		}
	}
	for _, h := range held {
		h.noop(t, "at the end")
		h.quit(t)
	}
}
