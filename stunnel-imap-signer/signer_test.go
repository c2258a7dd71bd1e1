package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"imap-tls/internal/keyholder"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// signerOn loads the PEM at path as Run does (a root-opened descriptor,
// its duplicate kept), with a listener of its own, logging into out.
func signerOn(t *testing.T, path string, out *bytes.Buffer) *Signer {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, c, err := open(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(w.fd) })
	s := &Signer{log: log.NewTo("stunnel-imap-signer", out, func(int) {}), max: 1, files: []*watched{w}}
	ks := keyholder.Keys{{Cert: *c}}
	s.keys.Store(&ks)
	return s
}

func leafOf(s *Signer) string {
	return string((*s.keys.Load())[0].Cert.Leaf.Raw)
}

// TestCheck: unchanged, nothing; rewritten in place, the new key from the
// same descriptor; half written, the old one kept, then the whole one;
// replaced by rename, the signer stops.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	pem, _ := testkit.NewCert(t, testkit.CertOptions{}).Write(t, dir, "a")
	var out bytes.Buffer
	s := signerOn(t, pem, &out)
	ln, err := listen(t)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	first := leafOf(s)
	if s.check() || leafOf(s) != first {
		t.Fatalf("unchanged: stopped or reloaded: %s", out.String())
	}

	b2, _ := os.ReadFile(mustWrite(t, dir, "b"))
	if err := os.WriteFile(pem, b2[:len(b2)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if s.check() || leafOf(s) != first || !strings.Contains(out.String(), "does not load, still serving the old one") {
		t.Fatalf("half written: %s", out.String())
	}
	os.WriteFile(pem, b2, 0o600)
	if s.check() || leafOf(s) == first || !strings.Contains(out.String(), "info: certificates read again: 1") {
		t.Fatalf("rewritten in place: %s", out.String())
	}

	b3, _ := os.ReadFile(mustWrite(t, dir, "c"))
	os.WriteFile(pem+".new", b3, 0o600)
	os.Rename(pem+".new", pem)
	if !s.check() || !strings.Contains(out.String(), "was replaced on disk: exiting") {
		t.Fatalf("replaced: %s", out.String())
	}
	if _, err := ln.Accept(); err == nil {
		t.Errorf("the listener still accepts after the replacement")
	}
}

func mustWrite(t *testing.T, dir, base string) string {
	p, _ := testkit.NewCert(t, testkit.CertOptions{}).Write(t, dir, base)
	return p
}

// TestLimit: beyond -c, refused with one line a second, not one per
// proxy.
func TestLimit(t *testing.T) {
	var out bytes.Buffer
	s := &Signer{log: log.NewTo("stunnel-imap-signer", &out, func(int) {}), max: 1}
	for i := 0; i < 5; i++ {
		s.limitReached()
	}
	if n := strings.Count(out.String(), "warning: 1 proxies at once, the limit (-c): refused 1"); n != 1 {
		t.Errorf("%d limit lines for 5 refusals in a second, want 1: %s", n, out.String())
	}
}

func listen(t *testing.T) (net.Listener, error) {
	return net.Listen("unix", filepath.Join(t.TempDir(), "socket"))
}

// TestUsage: the options read with internal/opt, in its grammar; each
// mistake is a usage error (exit 100) before anything is opened.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args string
		want string
	}{
		{"", "no -L: the listening socket's descriptor is needed"},
		{"-L 4", "no -P: no certificate given"},
		{"-x", "unknown option -x"},
		{"-L", "missing value after -L"},
		{"-L four -P 3", `bad value for -L: "four" (not a descriptor number from 0 to 1048575)`},
		{"-L 4 -P -1", `bad value for -P: "-1" (not a descriptor number from 0 to 1048575)`},
		{"-L 4 -P 3 -c 0", `bad value for -c: "0" (not a number from 1 to 2147483647)`},
		{"-L 4 -P 3 -i 0.001", `bad value for -i: "0.001" (seconds from 0.01 to 3600)`},
		{"-L 4 -P 3 -i 3601", `bad value for -i: "3601" (seconds from 0.01 to 3600)`},
		{"-L 4 -P 3 extra", `unexpected argument "extra"`},
	} {
		var out bytes.Buffer
		err := run(strings.Fields(tc.args), log.NewTo("stunnel-imap-signer", &out, func(int) {}))
		var u *log.UsageError
		if !errors.As(err, &u) || u.Msg != tc.want || u.Synopsis != synopsis {
			t.Errorf("%q: %#v, want a usage error %q", tc.args, err, tc.want)
		}
	}
}
