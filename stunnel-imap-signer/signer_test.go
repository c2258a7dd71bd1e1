package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	w, c, err := open(fd, path)
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
	if s.check(time.Now()) || leafOf(s) != first {
		t.Fatalf("unchanged: stopped or reloaded: %s", out.String())
	}

	b2, _ := os.ReadFile(mustWrite(t, dir, "b"))
	if err := os.WriteFile(pem, b2[:len(b2)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if s.check(time.Now()) || leafOf(s) != first || !strings.Contains(out.String(), "does not load, still serving the old one") {
		t.Fatalf("half written: %s", out.String())
	}
	os.WriteFile(pem, b2, 0o600)
	if s.check(time.Now()) || leafOf(s) == first || !strings.Contains(out.String(), "info: certificates read again: 1") {
		t.Fatalf("rewritten in place: %s", out.String())
	}

	b3, _ := os.ReadFile(mustWrite(t, dir, "c"))
	os.WriteFile(pem+".new", b3, 0o600)
	os.Rename(pem+".new", pem)
	if !s.check(time.Now()) || !strings.Contains(out.String(), "info: certificate "+pem+" was replaced on disk: exiting") {
		t.Fatalf("replaced: %s", out.String())
	}
	if _, err := ln.Accept(); err == nil {
		t.Errorf("the listener still accepts after the replacement")
	}
}

// TestExpiresWhileServed: a certificate that expires while the signer
// serves it is refused as at start, at once: the listener is closed
// (proxies are refused, and imap-tls-check sees it), serve returns the
// policy's error naming the file (the fatal line, exit 100), and no line
// is logged until then.
func TestExpiresWhileServed(t *testing.T) {
	dir := t.TempDir()
	c := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(time.Hour)})
	pem, _ := c.Write(t, dir, "a")
	var out bytes.Buffer
	s := signerOn(t, pem, &out)
	ln, err := listen(t)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	if s.check(c.Leaf.NotAfter) {
		t.Fatalf("stopped while still valid: %s", out.String())
	}
	if !s.check(c.Leaf.NotAfter.Add(time.Second)) {
		t.Fatalf("still serving an expired certificate: %s", out.String())
	}
	if _, err := ln.Accept(); err == nil {
		t.Errorf("the listener still accepts after the expiry")
	}
	err = s.serve()
	var le *log.Error
	want := "certificate " + pem + " expired on " + c.Leaf.NotAfter.UTC().Format(time.DateOnly)
	if !errors.As(err, &le) || le.Code != log.ExitUsage || err.Error() != want {
		t.Errorf("serve: %v, want %q (exit 100)", err, want)
	}
	if out.Len() != 0 {
		t.Errorf("logged before the fatal line: %s", out.String())
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

// TestRefused: a certificate the policy refuses is named by the name
// -P gave it, never "descriptor N"; the listener is closed at once
// (proxies are refused, as with no signer); and the exit waits, a minute
// at most, for the file to change, so that supervise's restarts log
// the refusal once a minute, not once a second.
func TestRefused(t *testing.T) {
	dir := t.TempDir()
	pem, _ := testkit.NewCert(t, testkit.CertOptions{NotAfter: time.Now().Add(-48 * time.Hour)}).Write(t, dir, "expired")
	fd, err := unix.Open(pem, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen(t)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	lfd, err := unix.Dup(int(lf.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	lf.Close()
	t.Cleanup(func() { exitWait = nil })
	var out bytes.Buffer
	err = run([]string{"-i", "0.01", "-L", strconv.Itoa(lfd), "-P", strconv.Itoa(fd) + ":" + pem}, log.NewTo("stunnel-imap-signer", &out, func(int) {}))
	var e *log.Error
	if !errors.As(err, &e) || e.Code != 100 || !strings.HasPrefix(e.Error(), "certificate "+pem+" expired on ") {
		t.Fatalf("run: %v, want certificate %s expired (exit 100)", err, pem)
	}
	if _, err := unix.FcntlInt(uintptr(lfd), unix.F_GETFD, 0); err == nil {
		t.Errorf("the listener (fd %d) is still open while the signer waits", lfd)
	}
	if exitWait == nil {
		t.Fatal("no wait before the exit")
	}
	// Unchanged, it waits; rewritten, it returns at once.
	done := make(chan time.Duration)
	start := time.Now()
	go func() { exitWait(); done <- time.Since(start) }()
	select {
	case d := <-done:
		t.Fatalf("exit wait over after %v with the file unchanged", d)
	case <-time.After(300 * time.Millisecond):
	}
	good, _ := os.ReadFile(mustWrite(t, dir, "good"))
	if err := os.WriteFile(pem, good, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("exit wait still on 5s after the file changed")
	}
}
