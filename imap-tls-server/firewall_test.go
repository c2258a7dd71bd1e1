package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imap-tls/log"
)

// TestGuard: what a start does about the firewall rule, without loading
// one (the real load: tests/firewall_test.go, in a network namespace).
// No -H: nothing; a unix socket: nothing; a program: a warning; an
// address with no nft in $PATH: a fatal line naming the package;
// PROXYFIREWALL=no: a warning; a bad PROXYFIREWALL: exit 100.
func TestGuard(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	fake := filepath.Join(dir, "fake")
	os.Mkdir(fake, 0o755)
	// A fake nft that records its script: it must never run for these
	// cases but the one that names it.
	os.WriteFile(filepath.Join(fake, "nft"), []byte("#!/bin/sh\n/bin/cat >\""+dir+"/script\"\n"), 0o755)
	const base = "-n imap -r 5:6 -j ./jail -k ./ssl/stunnel.pem 0 143 "
	for _, c := range []struct {
		args, path, env string
		want            string // the error, or "warning: ..." (a substring of the line), or ""
		script          bool   // the fake nft ran
	}{
		{base + "127.0.0.1:10143", empty, "", "", false},
		{"-H " + base + "/run/dovecot/imap-tls", empty, "", "", false},
		{"-H " + base + "sh tests/dovecot.sh haproxy /tmp/x", empty, "", "warning: no firewall rule keeps the server's PROXY port to root: the server is a program whose port its command line does not say", false},
		{"-H " + base + "127.0.0.1:10143", empty, "", "unable to load the firewall rule that keeps 127.0.0.1:10143 to root: nft not found in $PATH (Debian package nftables)", false},
		{"-H " + base + "127.0.0.1:10143", empty, "no", "warning: PROXYFIREWALL is no: no firewall rule keeps 127.0.0.1:10143 to root", false},
		{"-H " + base + "127.0.0.1:10143", empty, "maybe", `bad value for PROXYFIREWALL: "maybe" (yes, no or empty)`, false},
		{"-H " + base + "socat STDIO TCP:127.0.0.1:10110,nodelay", fake, "yes", "", true},
	} {
		os.Remove(filepath.Join(dir, "script"))
		t.Setenv("PATH", c.path)
		t.Setenv("PROXYFIREWALL", c.env)
		var out bytes.Buffer
		saved := logger
		logger = log.NewTo("imap-tls-server", &out, func(int) {})
		err := guard(strings.Fields(c.args))
		logger = saved
		got := out.String()
		if err != nil {
			got = err.Error()
		}
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s (PROXYFIREWALL=%s): got %q, want %q", c.args, c.env, got, c.want)
		}
		script, _ := os.ReadFile(filepath.Join(dir, "script"))
		if c.script != (len(script) > 0) || c.script && !strings.Contains(string(script), "tcp dport 10110 meta skuid != 0") {
			t.Errorf("%s: nft's script %q", c.args, script)
		}
	}
}
