package tests

// The shipped firewall rule (service/proxy-port.nft) in a private
// network namespace, and the shipped fail2ban filter
// (service/fail2ban/imap-tls.conf) against a log made by the real
// pipeline.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestProxyPortFirewall: with proxy-port.nft loaded (in a network
// namespace of its own: the host's firewall is not touched), root
// connects to 127.0.0.1:10143, ::1:10143 and 127.0.0.1:10110; an
// unprivileged account is refused there, and still reaches another
// port.
func TestProxyPortFirewall(t *testing.T) {
	harness.NeedRoot(t)
	harness.Need(t, "unshare", "nft", "ip", "socat", "setuidgid")
	harness.EnsureAccount(t, "imaptls")
	rules := filepath.Join(harness.RepoRoot(t), "service", "proxy-port.nft")
	script := `set -e
ip link set lo up
nft -f "$1"
nft -f "$1"   # loading it again replaces it
pids=
for p in 10143 10110 10144; do
  socat TCP6-LISTEN:$p,ipv6only=0,reuseaddr,fork SYSTEM:'echo hello' </dev/null >/dev/null 2>&1 &
  pids="$pids $!"
done
sleep 0.5
try() { if out=$("$@" 2>/dev/null </dev/null) && [ "$out" = hello ]; then echo ok; else echo refused; fi; }
for a in 127.0.0.1:10143 [::1]:10143 127.0.0.1:10110 127.0.0.1:10144; do
  echo "root $a $(try socat -T 2 STDIO TCP:$a)"
  echo "imaptls $a $(try setuidgid imaptls socat -T 2 STDIO TCP:$a)"
done
kill $pids
`
	cmd := exec.Command("unshare", "-n", "sh", "-c", script, "sh", rules)
	out, err := harness.RunBounded(t, cmd, 60*time.Second)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := `root 127.0.0.1:10143 ok
imaptls 127.0.0.1:10143 refused
root [::1]:10143 ok
imaptls [::1]:10143 refused
root 127.0.0.1:10110 ok
imaptls 127.0.0.1:10110 refused
root 127.0.0.1:10144 ok
imaptls 127.0.0.1:10144 ok
`
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
}

// TestFail2banFilter: the filter, run by Debian's fail2ban-regex on a
// log the real pipeline wrote (labelled by tai64n as multilog t does),
// matches the failed logins and the plaintext logins with the real
// client addresses (IPv4 and IPv6), and nothing else.
func TestFail2banFilter(t *testing.T) {
	harness.Need(t, "fail2ban-regex", "tai64n")
	dc := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
	p6 := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Host: "::1", Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
	// 127.0.0.5: LOGIN in plaintext (refused by the proxy).
	c := harness.DialFrom(t, "127.0.0.5", p.Addr)
	c.Line()
	c.Cmd("a", "LOGIN alice secret")
	c.Close()
	// 127.0.0.6 and ::1: a wrong password after STARTTLS.
	harness.Login(t, p, "imap", "127.0.0.6", p.Addr, "alice", "wrong")
	harness.Login(t, p6, "imap", "::1", p6.Addr, "alice", "wrong")
	// 127.0.0.7: a good login; 127.0.0.8: STARTTLS with arguments, then
	// gone; 127.0.0.9: a TLS handshake that fails. None of them match.
	harness.Login(t, p, "imap", "127.0.0.7", p.Addr, "alice", "secret")
	c = harness.DialFrom(t, "127.0.0.8", p.Addr)
	c.Line()
	c.Cmd("a", "STARTTLS now")
	c.Close()
	c = harness.DialFrom(t, "127.0.0.9", p.Addr)
	c.Line()
	c.Cmd("a", "STARTTLS")
	c.Send("not a client hello\r\n")
	c.Rest()
	c.Close()
	p.WaitLog(t, `remote=127\.0\.0\.9:\d+ .* end=handshake-failed`, 15*time.Second)
	p.WaitLog(t, `remote=127\.0\.0\.8:\d+ .* end=`, 15*time.Second)
	p6.WaitLog(t, `remote=\[::1\]:\d+ .* authfail=1 `, 15*time.Second)

	dir := t.TempDir()
	logFile := filepath.Join(dir, "current")
	tai := exec.Command("tai64n")
	tai.Stdin = strings.NewReader(p.Stderr() + p6.Stderr())
	labelled, err := tai.Output()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(logFile, labelled, 0o644)
	filter := filepath.Join(harness.RepoRoot(t), "service", "fail2ban", "imap-tls.conf")
	out, err := exec.Command("fail2ban-regex", "--print-all-matched", "--print-all-missed", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	// The matched lines and their addresses.
	matched := regexp.MustCompile(`(?s)\|- Matched line\(s\):\n(.*?)\n` + "`-").FindSubmatch(out)
	if matched == nil {
		t.Fatalf("no matched lines:\n%s", out)
	}
	var got []string
	for _, l := range strings.Split(string(matched[1]), "\n") {
		if m := regexp.MustCompile(`remote=(?:\[([0-9a-f:]+)\]|([0-9.]+)):\d+`).FindStringSubmatch(l); m != nil {
			got = append(got, m[1]+m[2])
		}
	}
	want := []string{"127.0.0.5", "127.0.0.6", "::1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("matched %q, want %q:\n%s", got, want, out)
	}
	if !strings.Contains(string(out), "3 matched") {
		t.Errorf("fail2ban-regex:\n%s", out)
	}
	t.Logf("%s", regexp.MustCompile(`Lines: .*`).Find(out))
}
