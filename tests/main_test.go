package tests

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// TestMain keeps the host's firewall as it is: with -H and a TCP
// server address, imap-tls-server loads an nftables rule at start
// (internal/firewall), and the tests run their services on the host's
// loopback. PROXYFIREWALL=no, inherited by every program they start,
// turns the load off (the start warns instead). The tests of the rule
// run their services in a private network namespace with an
// environment of their own, without it (startFronts, firewall_test.go).
//
// Some tests start svscan on the host with an environment of their own
// (a PATH only, as init would) and so load the rule for their private
// Dovecot's ports, which imap-tls-check's firewall proof then finds:
// whatever chains of table inet imaptls the run added are deleted at
// its end, and the table too when the run made it, so the host's
// firewall is left as it was found.
func TestMain(m *testing.M) {
	os.Setenv("PROXYFIREWALL", "no")
	before, existed := imaptlsChains()
	code := m.Run()
	after, _ := imaptlsChains()
	for name := range after {
		if !before[name] {
			exec.Command("nft", "delete", "chain", "inet", "imaptls", name).Run()
		}
	}
	if left, ok := imaptlsChains(); ok && !existed && len(left) == 0 {
		exec.Command("nft", "delete", "table", "inet", "imaptls").Run()
	}
	os.Exit(code)
}

var chainLine = regexp.MustCompile(`(?m)^\s*chain (\S+) \{`)

// imaptlsChains lists the chains of the host's table inet imaptls, and
// whether the table exists (false too without nft).
func imaptlsChains() (map[string]bool, bool) {
	out, err := exec.Command("nft", "list", "table", "inet", "imaptls").Output()
	if err != nil {
		return nil, false
	}
	chains := map[string]bool{}
	for _, m := range chainLine.FindAllStringSubmatch(string(out), -1) {
		chains[m[1]] = true
	}
	return chains, true
}
