package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestChainProxy: -H reaches stunnel-imap; -L puts proxy-server right
// after tcpserver (before makesock: a refused header starts nothing),
// checks its list, and needs proxy-server in $PATH.
func TestChainProxy(t *testing.T) {
	dir := fakePath(t)
	serviceDir(t)
	base := []string{"-n", "imap", "-r", "2000000000:4194304", "-j", "jail", "-k", "ssl/stunnel.pem"}
	tail := []string{"0", "143", "imapd"}
	if _, _, err := run(append(append(append([]string{}, base...), "-L", "10.0.0.1"), tail...)); err == nil ||
		!strings.Contains(err.Error(), "find proxy-server") {
		t.Fatalf("-L without proxy-server in $PATH: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "proxy-server"), []byte("#!/bin/sh\n"), 0o755)
	chain, _, err := run(append(append(append([]string{}, base...), "-H", "-L", "10.0.0.0/8,::1"), tail...))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(chain, " ")
	if !strings.Contains(got, " 0 143 proxy-server -a 10.0.0.0/8,::1 makesock makesock -d 4 ") ||
		!strings.Contains(got, "stunnel-imap -n imap -F 3 -K 4 -H -makesock_connect_to") {
		t.Errorf("chain: %s", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "fe80::1%eth0", "", "10.0.0.1,,"} {
		status, msg := exit(func() error {
			_, _, err := run(append(append(append([]string{}, base...), "-L", bad), tail...))
			return err
		}())
		if status != 100 || !strings.Contains(msg, "-L") {
			t.Errorf("-L %q: %d %s", bad, status, msg)
		}
	}
}
