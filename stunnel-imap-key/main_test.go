package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"imap-tls/internal/testkit"
)

// TestBinary: the program names itself in its messages, exits 100 for
// usage and 111 for a file it cannot read, and keeps stunnel-imap's
// go:debug settings (no cgroup lookups in an empty jail).
func TestBinary(t *testing.T) {
	bin := testkit.Bin(t, "stunnel-imap-key")
	usage := "stunnel-imap-key: usage: stunnel-imap-key [ -c ] ( -P fd[:name] | -p pemfile | -d certdir ) ...\n"
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 100, "stunnel-imap-key: fatal: no certificate given\n" + usage},
		{[]string{"-h"}, 100, usage},
		{[]string{"-S", "-P", "3"}, 100, "stunnel-imap-key: fatal: unknown option -S\n" + usage},
		{[]string{"-P"}, 100, "stunnel-imap-key: fatal: missing value after -P\n" + usage},
		{[]string{"-p", "/nonexistent/stunnel.pem"}, 111, "stunnel-imap-key: fatal: unable to read certificate /nonexistent/stunnel.pem: file does not exist\n"},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != tc.code || stderr.String() != tc.stderr {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "DefaultGODEBUG=containermaxprocs=0,updatemaxprocs=0") {
		t.Errorf("go version -m %s: no containermaxprocs=0,updatemaxprocs=0:\n%s", bin, out)
	}
}
