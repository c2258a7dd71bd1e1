package tests

// The firewall rule that keeps the server's PROXY port to root, as the
// service loads it (imap-tls-server -H at every start, package
// internal/firewall), in a private network namespace: the host's
// nftables are not touched (the test compares them before and after).

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// nsBackend runs a stand-in for Dovecot's haproxy listener in n: on
// each port (IPv4 and IPv6), socat greets every connection with
// "* OK hello" (what imap-tls-check reads) and closes.
func nsBackend(t *testing.T, n *netNS, ports ...string) {
	t.Helper()
	greet := filepath.Join(t.TempDir(), "greet")
	if err := os.WriteFile(greet, []byte("#!/bin/sh\necho '* OK hello'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		cmd := n.Command("socat", "TCP6-LISTEN:"+p+",ipv6only=0,reuseaddr,fork", "EXEC:"+greet)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	for _, p := range ports {
		port, _ := strconv.Atoi(p)
		deadline := time.Now().Add(10 * time.Second)
		for !n.Listening(port) {
			if time.Now().After(deadline) {
				t.Fatalf("socat not listening on %s", p)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// reach reports, for each address, whether root and uid 65534 (setpriv:
// no groups, what any local account could be) get the backend's
// greeting there: "root ADDR ok|refused", then "nobody ADDR ...".
func reach(t *testing.T, n *netNS, addrs ...string) string {
	t.Helper()
	var b strings.Builder
	for _, a := range addrs {
		for _, who := range []string{"root", "nobody"} {
			args := []string{"socat", "-T", "2", "STDIO", "TCP:" + a}
			if who == "nobody" {
				args = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
			}
			// A refusal is tried twice more: a connection that found the
			// stand-in backend slow (a loaded machine) is no proof of a
			// rule, and a second look at a port that should stay shut
			// can only find a hole, never hide one.
			verdict := "refused"
			for try := 0; try < 3 && verdict == "refused"; try++ {
				c := n.Command(args...)
				c.Stdin = strings.NewReader("")
				out, _, _ := harness.ExitCode(t, c)
				if strings.HasPrefix(out, "* OK hello") {
					verdict = "ok"
				}
			}
			b.WriteString(who + " " + a + " " + verdict + "\n")
		}
	}
	return b.String()
}

// hostTables is the host's list of nftables tables.
func hostTables(t *testing.T) string {
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	return string(out)
}

// TestFirewallService: two fronts made by imap-tls-conf with its
// defaults (env/IMAPD 127.0.0.1:10143, env/PROXYHEADER yes, the
// signer), run by svscan as in production in a network namespace: their
// starts load the rule (twice: one chain with one rule in table inet
// imaptls); then root reaches 127.0.0.1:10143 and [::1]:10143, uid
// 65534 does not, and another port stays open to it. imap-tls-check
// calls a reachable port an error before the rule, and proves it after
// (as uid 65534, refused). Without nft in $PATH, imap-tls-server -H
// refuses to start and names the package.
func TestFirewallService(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "nft", "socat", "setpriv")
	before := hostTables(t)
	n := startNetNS(t)
	nsBackend(t, n, "10143", "10144")
	guarded := []string{"127.0.0.1:10143", "[::1]:10143", "127.0.0.1:10144"}
	open := "root 127.0.0.1:10143 ok\nnobody 127.0.0.1:10143 ok\nroot [::1]:10143 ok\nnobody [::1]:10143 ok\nroot 127.0.0.1:10144 ok\nnobody 127.0.0.1:10144 ok\n"
	if got := reach(t, n, guarded...); got != open {
		t.Fatalf("before any rule:\n%s\nwant:\n%s", got, open)
	}

	// A service directory for imap-tls-check, with the defaults.
	pem, _ := harness.WriteCert(t, t.TempDir())
	key, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	top := t.TempDir()
	os.Chmod(top, 0o755)
	checked := filepath.Join(top, "checked")
	if out, err := exec.Command(harness.Bin(t, "imap-tls-conf"), "-m", "imap", harness.ServiceAcct, harness.ServiceLogAcct, checked, "127.0.0.1", "143").CombinedOutput(); err != nil {
		t.Fatalf("imap-tls-conf: %v: %s", err, out)
	}
	os.WriteFile(filepath.Join(checked, "ssl", "stunnel.pem"), key, 0o400)
	check := func() string {
		t.Helper()
		out, _, _ := n.Run(t, harness.Bin(t, "imap-tls-check"), "-t", "2", checked)
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, ": firewall: ") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
	if got, want := check(), "error: firewall: a local account can reach the server's PROXY port 127.0.0.1:10143: the firewall rule is not loaded (imap-tls-server -H loads it at start: svc -t this service, as root)"; got != want {
		t.Errorf("imap-tls-check without the rule:\n got %q\nwant %q", got, want)
	}

	// Two fronts, one server: two starts, one rule.
	site := filepath.Join(top, "site")
	os.Mkdir(site, 0o755)
	startFronts(t, n, pem,
		nsFront{Dir: filepath.Join(site, "imap"), Mode: "imap", IP: "127.0.0.1", Port: 143},
		nsFront{Dir: filepath.Join(site, "imaps"), Mode: "imaps", IP: "127.0.0.1", Port: 993})
	out, errOut, code := n.Run(t, "nft", "-j", "list", "table", "inet", "imaptls")
	if code != 0 {
		t.Fatalf("nft -j list table inet imaptls: exit %d: %s", code, errOut)
	}
	var listed struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("nft -j: %v: %s", err, out)
	}
	count := map[string]int{}
	for _, o := range listed.Nftables {
		for k := range o {
			count[k]++
		}
	}
	if count["table"] != 1 || count["chain"] != 1 || count["rule"] != 1 {
		t.Errorf("after two starts: %v, want one table, one chain, one rule:\n%s", count, out)
	}
	closed := "root 127.0.0.1:10143 ok\nnobody 127.0.0.1:10143 refused\nroot [::1]:10143 ok\nnobody [::1]:10143 refused\nroot 127.0.0.1:10144 ok\nnobody 127.0.0.1:10144 ok\n"
	if got := reach(t, n, guarded...); got != closed {
		t.Errorf("with the rule:\n%s\nwant:\n%s", got, closed)
	}
	if got, want := check(), "ok: firewall: uid 65534 refused at 127.0.0.1:10143 (connection refused), root connects: only root reaches the server's PROXY port"; got != want {
		t.Errorf("imap-tls-check with the rule:\n got %q\nwant %q", got, want)
	}

	// No nft in $PATH: the start refuses, naming the package.
	bin := filepath.Dir(harness.Bin(t, "imap-tls-server"))
	jail := filepath.Join(top, "jail")
	os.Mkdir(jail, 0o755)
	_, errOut, code = n.Run(t, "env", "-i", "PATH="+bin+":/usr/bin:/bin", "imap-tls-server",
		"-H", "-n", "imap", "-u", harness.ServiceAcct, "-j", jail, "-k", pem, "127.0.0.1", "1143", "127.0.0.1:10110")
	if want := "imap-tls-server: fatal: unable to load the firewall rule that keeps 127.0.0.1:10110 to root: nft not found in $PATH (Debian package nftables)\n"; code != 111 || !strings.HasSuffix(errOut, "\n"+want) && errOut != want {
		t.Errorf("without nft: exit %d %q, want 111 %q", code, errOut, want)
	}
	if n.Listening(1143) {
		t.Errorf("without nft: listening on 1143")
	}
	if after := hostTables(t); after != before {
		t.Errorf("the host's nftables tables changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestFirewallForgedHeader: the attack the rule stops, with a real
// Dovecot (tests/dovecot.sh: haproxy = yes on 127.0.0.1:10143, trusted
// from loopback) in a network namespace. Before any rule, uid 65534
// connects to 10143, sends a PROXY header naming 203.0.113.66 and logs
// in: Dovecot records rip=203.0.113.66 (the forgery works, so the test
// can fail). A front with the defaults then starts (its start loads the
// rule): a client of 192.0.2.5 logs in through it (rip=192.0.2.5, the
// chain's connection, root's, passes), and the same forgery from uid
// 65534, naming 203.0.113.67, is refused: Dovecot never logs that
// address.
func TestFirewallForgedHeader(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "nft", "socat", "setpriv", "curl", "dovecot", "doveadm")
	before := hostTables(t)
	n := startNetNS(t, "192.0.2.1/32", "192.0.2.5/32")
	dir, err := os.MkdirTemp("/tmp", "imaptls-fwdovecot-")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(harness.RepoRoot(t), "tests", "dovecot.sh")
	start := n.Command("sh", script, "start", dir)
	start.Env = append(os.Environ(), "DOVECOT_IMAP_HAPROXY_PORT=10143", "DOVECOT_POP3_HAPROXY_PORT=10110")
	out, err := harness.RunBounded(t, start, 60*time.Second)
	if err != nil {
		t.Fatalf("dovecot.sh start: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("sh", script, "stop", dir).Run()
		os.RemoveAll(dir)
	})
	doveLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log")); return string(b) }
	forge := func(addr string) string {
		c := n.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "socat", "-T", "5", "STDIO", "TCP:127.0.0.1:10143")
		c.Stdin = strings.NewReader("PROXY TCP4 " + addr + " 127.0.0.1 40000 143\r\na LOGIN alice secret\r\nb LOGOUT\r\n")
		out, _, _ := harness.ExitCode(t, c)
		return out
	}
	waitLog := func(re string) bool {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if regexp.MustCompile(re).MatchString(doveLog()) {
				return true
			}
		}
		return false
	}
	// (until Dovecot's auth process is ready: "Waiting for authentication
	// process to respond" before)
	out = nil
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(string(out), "a OK") && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out = []byte(forge("203.0.113.66"))
	}
	if !strings.Contains(string(out), "a OK") || !waitLog(`Login: user=<alice>, .*rip=203\.0\.113\.66`) {
		t.Fatalf("without the rule, a forged header from uid 65534 did not log in (the test proves nothing): %q\n%s", out, doveLog())
	}

	pem, ca := harness.WriteCert(t, t.TempDir(), "192.0.2.1")
	site := t.TempDir()
	os.Chmod(site, 0o755)
	startFronts(t, n, pem, nsFront{Dir: filepath.Join(site, "imap"), Mode: "imap", IP: "192.0.2.1", Port: 143})
	out2, errOut, code := n.Run(t, "curl", "-sS", "--max-time", "20", "--ssl-reqd", "--cacert", ca,
		"--interface", "192.0.2.5", "-u", "alice:secret", "imap://192.0.2.1:143/")
	if code != 0 || !strings.Contains(out2, "INBOX") || !waitLog(`Login: user=<alice>, .*rip=192\.0\.2\.5`) {
		t.Errorf("a login through the front: exit %d: %s%s\n%s", code, out2, errOut, doveLog())
	}
	if out := forge("203.0.113.67"); out != "" {
		t.Errorf("with the rule, uid 65534 still got an answer: %q", out)
	}
	time.Sleep(500 * time.Millisecond)
	if strings.Contains(doveLog(), "203.0.113.67") {
		t.Errorf("with the rule, Dovecot logged the forged address:\n%s", doveLog())
	}
	if after := hostTables(t); after != before {
		t.Errorf("the host's nftables tables changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
