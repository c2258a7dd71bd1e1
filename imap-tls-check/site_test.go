package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// freePort is a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestSite: imap-tls-check DIR on a site (imap-tls-conf -m imap,imaps):
// the shared settings and files once, unprefixed; each front's own
// settings, its server and its address under its name, the site's env/
// layered under its own as envdir ../../env envdir ./env gives it; no
// "missing env/MODE" for the site itself.
func TestSite(t *testing.T) {
	site := serviceDir(t, map[string]string{"MODE": "-", "PORT": "-", "IMAPD": "-", "SIGNER": "../signer/socket",
		"ACCOUNT": "nobody", "LOGACCOUNT": "nobody"})
	front := func(mode string, env map[string]string) {
		dir := filepath.Join(site, "service", mode)
		os.MkdirAll(filepath.Join(dir, "env"), 0o755)
		os.MkdirAll(filepath.Join(dir, "log"), 0o755)
		os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755)
		for k, v := range env {
			os.WriteFile(filepath.Join(dir, "env", k), []byte(v+"\n"), 0o644)
		}
	}
	os.MkdirAll(filepath.Join(site, "service", "signer", "log"), 0o755)
	imapPort, imapsPort := freePort(t), freePort(t)
	front("imap", map[string]string{"MODE": "imap", "PORT": imapPort, "IMAPD": "../../imap.sock"})
	front("imaps", map[string]string{"MODE": "imaps", "PORT": imapsPort, "IMAPD": "../../imap.sock", "CONCURRENCY": "7"})

	out, code, fatal := checkDir(t, site)
	if code != 0 || fatal != "" || strings.Contains(out, "error:") {
		t.Errorf("exit %d %q:\n%s", code, fatal, out)
	}
	for _, want := range []string{
		"ok: env/CONCURRENCY: 40\n",
		"ok: env/SIGNERMEMLIMIT: 200000000\n",
		"ok: jail/: empty, root's, writable by no one else\n",
		"ok: ssl/stunnel.pem: the private key matches certificate 1\n",
		"warning: env/SIGNER: the signer is not running (../signer/socket: file does not exist): the site is not running (svstat above)\n",
		"ok: imap: env/MODE: imap: IMAP, STARTTLS required\n",
		"ok: imap: env/PORT: " + imapPort + "\n",
		"ok: imap: env/IMAPD: connected and greeted: * OK ready\n",
		"ok: imap: env/PORT: 127.0.0.1:" + imapPort + " is free\n",
		"ok: imaps: env/MODE: imaps: IMAP, implicit TLS\n",
		"ok: imaps: env/CONCURRENCY: 7\n",
		"ok: imaps: env/PORT: 127.0.0.1:" + imapsPort + " is free\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	// What the fronts share, once; what a front does not set, not under
	// its name.
	for _, once := range []string{"env/ACCOUNT: ", "jail/: ", "env/PATH: ", "env/SIGNER: ", "ssl/stunnel.pem: root's"} {
		if n := strings.Count(out, once); n != 1 {
			t.Errorf("%q %d times, want once:\n%s", once, n, out)
		}
	}
	for _, never := range []string{"imap: env/CONCURRENCY", "imap: env/ACCOUNT", "imap: jail/", "env/MODE: missing"} {
		if strings.Contains(out, never) {
			t.Errorf("has %q:\n%s", never, out)
		}
	}

	// A front's own setting wins over the site's, for it alone; its
	// error is named by the front and counted.
	os.WriteFile(filepath.Join(site, "service", "imaps", "env", "CONCURRENCY"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(site, "service", "imap", "env", "MODE"), []byte("pop3s\n"), 0o644)
	out, code, fatal = checkDir(t, site)
	for _, want := range []string{
		"error: imaps: env/CONCURRENCY: \"x\" is not a number of at least 1\n",
		"ok: env/CONCURRENCY: 40\n",
		"error: imap: env/IMAPD: greeted with \"* OK ready\", not a POP3 greeting\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if code != 100 || !strings.Contains(fatal, "1 error in "+site) {
		t.Errorf("exit %d %q, want 100, 1 error:\n%s", code, fatal, out)
	}

	// A service/ without a front.
	os.RemoveAll(filepath.Join(site, "service", "imap"))
	os.RemoveAll(filepath.Join(site, "service", "imaps"))
	out, code, _ = checkDir(t, site)
	if code != 100 || !strings.Contains(out, "error: service/: holds no front") {
		t.Errorf("no front: exit %d:\n%s", code, out)
	}
}
