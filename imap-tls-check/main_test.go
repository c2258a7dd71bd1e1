package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imap-tls/internal/check"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// serviceDir lays out a service directory as imap-tls-conf makes it,
// with a good certificate, a PATH of stand-ins for every program a
// service needs, and a server on a unix socket that greets; env/ holds
// settings, each overridable.
func serviceDir(t *testing.T, settings map[string]string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the jail and the key file are root's")
	}
	dir := t.TempDir()
	for _, d := range []string{"env", "jail", "ssl", "log", "bin"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	os.Chmod(filepath.Join(dir, "jail"), 0o755)
	os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755)
	testkit.NewCert(t, testkit.CertOptions{Intermediate: true}).Write(t, filepath.Join(dir, "ssl"), "stunnel")
	os.Remove(filepath.Join(dir, "ssl", "stunnel-ca.crt"))
	for _, p := range append(check.Programs(check.Uses{Service: true, KeyProcess: true, Balancers: true}), "stunnel-imap-signer") {
		os.WriteFile(filepath.Join(dir, "bin", p), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "imap.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK ready\r\n"))
			c.Close()
		}
	}()
	env := map[string]string{
		"IP": "127.0.0.1", "PORT": "143", "MODE": "imap", "CONCURRENCY": "40", "MEMLIMIT": "2000000000",
		"UIDRANGE": "", "IMAPD": "./imap.sock", "PATH": filepath.Join(dir, "bin"), "ACCOUNT": "root", "LOGACCOUNT": "root",
		"SIGNER": "./signer/socket", "SIGNERMEMLIMIT": "200000000", "PROXYFROM": "", "PROXYHEADER": "",
	}
	for k, v := range settings {
		env[k] = v
	}
	for k, v := range env {
		if v != "-" { // "-": no file at all
			os.WriteFile(filepath.Join(dir, "env", k), []byte(v+"\n"), 0o644)
		}
	}
	return dir
}

func checkDir(t *testing.T, dir string, args ...string) (string, int, string) {
	t.Helper()
	var out, fatal bytes.Buffer
	status := 0
	log.NewTo("imap-tls-check", &fatal, func(c int) { status = c }).Exit(run(append(args, dir), &out))
	return out.String(), status, fatal.String()
}

// TestReport: one line a setting, through the checks imap-tls-server
// makes at start (internal/check), with the accounts from env/ACCOUNT
// and env/LOGACCOUNT, the program list drawn from the suite's (the signer and
// proxy-server named), and a server given as an address connected to.
func TestReport(t *testing.T) {
	for _, c := range []struct {
		name     string
		settings map[string]string
		code     int
		want     []string
	}{
		{"account root", nil, 100, []string{
			"ok: env/MODE: imap: IMAP, STARTTLS required\n",
			"ok: env/IMAPD: ./imap.sock\n",
			"ok: env/PATH: every program of the chain found in ",
			"error: env/ACCOUNT: account root is root (uid 0 gid 0): use an unprivileged account\n",
			"error: env/LOGACCOUNT: account root is root",
			"warning: env/UIDRANGE: empty",
			"ok: jail/: empty, root's, writable by no one else\n",
			"ok: ssl/stunnel.pem: root's, mode 0400\n",
			"ok: ssl/stunnel.pem: the private key matches certificate 1\n",
			"ok: env/IMAPD: connected and greeted: * OK ready\n",
		}},
		{"bad settings", map[string]string{"MODE": "implicit", "IP": "localhost", "PORT": "0", "CONCURRENCY": "x", "UIDRANGE": "1:2:3", "PROXYFROM": "10.0.0.0/33", "IMAPD": "127.0.0.1:0", "CERT_WARN_DAYS": "many"}, 100, []string{
			"error: env/MODE: mode implicit is now called imaps: write imaps (in env/MODE for a service)\n",
			"error: env/IP: ip \"localhost\" is not an address (like 127.0.0.1, or 0 for all)\n",
			"error: env/PORT: 0: a service listens on a port of its own, from 1 to 65535\n",
			"error: env/CONCURRENCY: \"x\" is not a number of at least 1\n",
			"error: env/UIDRANGE: uid range \"1:2:3\" is not base:count\n",
			"error: env/PROXYFROM: \"10.0.0.0/33\" is not an address or a prefix\n",
			"error: env/IMAPD: server address \"127.0.0.1:0\" is not IPv4:port or [IPv6]:port",
			"error: env/CERT_WARN_DAYS: CERT_WARN_DAYS \"many\" is not a number of days from 0 to 3650\n",
		}},
		{"programs", map[string]string{"PROXYFROM": "10.0.0.1", "SIGNER": "", "PATH": "/nonexistent"}, 100, []string{
			"ok: env/PROXYFROM: 10.0.0.1: ",
			"error: env/PATH: envdir, softlimit, tcpserver, makesock, setuidgid-chroot, stunnel-imap, stunnel-imap-key, proxy-server, imap-tls-server not found in /nonexistent\n",
		}},
		{"signer", map[string]string{"PATH": "/nonexistent"}, 100, []string{
			"error: env/PATH: envdir, softlimit, tcpserver, makesock, setuidgid-chroot, stunnel-imap, stunnel-imap-key, stunnel-imap-signer, imap-tls-server not found in /nonexistent\n",
		}},
		{"signer memory", map[string]string{"SIGNERMEMLIMIT": "50"}, 100, []string{
			"error: env/SIGNERMEMLIMIT: 50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it\n",
		}},
		{"signer memory missing", map[string]string{"SIGNERMEMLIMIT": "-"}, 100, []string{
			"error: env/SIGNERMEMLIMIT: missing or empty: imap-tls-conf writes it\n",
		}},
		{"no signer, no signer memory", map[string]string{"SIGNER": "", "SIGNERMEMLIMIT": "-", "ACCOUNT": "nobody", "LOGACCOUNT": "nobody"}, 0, []string{
			"ok: env/MEMLIMIT: ",
		}},
		{"no socket", map[string]string{"ACCOUNT": "-", "LOGACCOUNT": "", "IMAPD": "./later.sock"}, 100, []string{
			"error: env/ACCOUNT: missing or empty: ",
			"error: env/LOGACCOUNT: missing or empty: ",
			"error: env/IMAPD: server socket ./later.sock does not exist yet: is the server up? (every connection fails until it is)\n",
		}},
	} {
		dir := serviceDir(t, c.settings)
		if c.name == "account root" {
			os.WriteFile(filepath.Join(dir, "env", "ACCOUNT"), []byte("nosuchaccount\n"), 0o644)
			c.want[3] = "error: env/ACCOUNT: account nosuchaccount does not exist: useradd --system --no-create-home --shell /usr/sbin/nologin nosuchaccount\n"
		}
		out, code, _ := checkDir(t, dir)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d:\n%s", c.name, code, c.code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: lacks %q:\n%s", c.name, w, out)
			}
		}
	}

	// A program in the service directory, named relative to it (the
	// chain runs there), checked from elsewhere: run, not connected to.
	dir := serviceDir(t, map[string]string{"IMAPD": "./greeter -x"})
	os.WriteFile(filepath.Join(dir, "greeter"), []byte("#!/bin/sh\necho '* OK greeter'\n"), 0o755)
	for _, imapd := range []string{"./greeter -x", "./greeter"} {
		os.WriteFile(filepath.Join(dir, "env", "IMAPD"), []byte(imapd+"\n"), 0o644)
		if out, _, _ := checkDir(t, dir); !strings.Contains(out, "ok: env/IMAPD: started and greeted: * OK greeter\n") {
			t.Errorf("env/IMAPD %s: not started:\n%s", imapd, out)
		}
	}

	// A good one: exit 0, every line ok or a warning.
	dir = serviceDir(t, map[string]string{"ACCOUNT": "nobody", "LOGACCOUNT": "nobody", "UIDRANGE": ""})
	out, code, fatal := checkDir(t, dir)
	if code != 0 || fatal != "" || strings.Contains(out, "error:") {
		t.Errorf("good: exit %d %q:\n%s", code, fatal, out)
	}
}

func TestUsage(t *testing.T) {
	for _, c := range []struct{ args, msg string }{
		{"", "imap-tls-check: usage: imap-tls-check [ -s ] [ -t secs ] dir\n"},
		{"-x d", "imap-tls-check: fatal: unknown option -x\nimap-tls-check: usage: imap-tls-check [ -s ] [ -t secs ] dir\n"},
		{"-t", "imap-tls-check: fatal: missing value after -t\n"},
		{"-t 0 d", "imap-tls-check: fatal: bad value for -t: \"0\" (not a number of seconds from 0 to 3600)\n"},
		{"-t 3601 d", "imap-tls-check: fatal: bad value for -t: \"3601\" (not a number of seconds from 0 to 3600)\n"},
		{"a b", "imap-tls-check: usage: "},
	} {
		var out bytes.Buffer
		status := 0
		log.NewTo("imap-tls-check", &out, func(c int) { status = c }).Exit(run(strings.Fields(c.args), &out))
		if status != 100 || !strings.HasPrefix(out.String(), c.msg) {
			t.Errorf("%q: %d %q, want 100 %q", c.args, status, out.String(), c.msg)
		}
	}
}
