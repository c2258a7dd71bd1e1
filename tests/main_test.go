package tests

import (
	"os"
	"testing"
)

// TestMain keeps the host's firewall as it is: with -H and a TCP
// server address, imap-tls-server loads an nftables rule at start
// (internal/firewall), and the tests run their services on the host's
// loopback. PROXYFIREWALL=no, inherited by every program they start,
// turns the load off (the start warns instead). The tests of the rule
// run their services in a private network namespace with an
// environment of their own, without it (startFronts, firewall_test.go).
func TestMain(m *testing.M) {
	os.Setenv("PROXYFIREWALL", "no")
	os.Exit(m.Run())
}
