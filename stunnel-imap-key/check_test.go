package main

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// TestCheck: -c reports on a PEM, one finding a line on stdout, logs
// its warnings on stderr, and exits as the key process would load it:
// 0, 100 for what it refuses, 111 for what it cannot read.
func TestCheck(t *testing.T) {
	bin := testkit.Bin(t, "stunnel-imap-key")
	dir := t.TempDir()
	now := time.Now()
	good := testkit.NewCert(t, testkit.CertOptions{Intermediate: true})
	soon := testkit.NewCert(t, testkit.CertOptions{NotAfter: now.Add(5*24*time.Hour + time.Hour), Intermediate: true})
	expired := testkit.NewCert(t, testkit.CertOptions{NotAfter: now.Add(-48 * time.Hour), Intermediate: true})
	other := testkit.NewCert(t, testkit.CertOptions{SelfSigned: true})
	write := func(name string, parts ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o400); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Leaf.Raw})
	interPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Intermediate.Raw})
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte("sealed")})
	date := func(c *testkit.Cert) string { return c.Leaf.NotAfter.UTC().Format(time.DateOnly) }
	for _, tc := range []struct {
		name    string
		file    string
		env     string
		code    int
		want    []string // lines of stdout (after "KIND: FILE: "), in order, each a prefix
		notWant string   // in stdout
		stderr  string   // a prefix of stderr ("" for none at all)
	}{
		{"good", write("good.pem", good.PEM), "", 0,
			[]string{"ok: holds 2 certificates, then a private key", "ok: certificate 1 (leaf): subject CN=localhost; names localhost, 127.0.0.1; issuer CN=imap-tls test intermediate CA; valid until " + date(good) + " (89 days left)",
				"ok: certificate 2 (intermediate): subject CN=imap-tls test intermediate CA; issuer CN=imap-tls test CA", "ok: certificate 2 signs certificate 1", "ok: private key: ECDSA P-256, not encrypted", "ok: the private key matches certificate 1"},
			"warning", ""},
		{"key first", write("keyfirst.pem", good.KeyPEM, good.ChainPEM), "", 0,
			[]string{"ok: holds a private key, then 2 certificates"}, "error", ""},
		{"expiring", write("soon.pem", soon.PEM), "", 0,
			[]string{"warning: certificate for localhost expires on " + date(soon) + ", in 5 days: renew it (warned from 14 days before: CERT_WARN_DAYS)"}, "error",
			"stunnel-imap-key: warning: FILE: certificate for localhost expires on " + date(soon) + ", in 5 days"},
		{"expiring, warning from 3 days", write("soon3.pem", soon.PEM), "CERT_WARN_DAYS=3", 0, nil, "warning", ""},
		{"bad CERT_WARN_DAYS", write("soonx.pem", soon.PEM), "CERT_WARN_DAYS=two weeks", 100, nil, "ok",
			"stunnel-imap-key: fatal: CERT_WARN_DAYS \"two weeks\" is not a number of days from 0 to 3650\n"},
		{"expired", write("expired.pem", expired.PEM), "", 100,
			[]string{"ok: holds 2 certificates", "ok: certificate 1 (leaf): subject CN=localhost; names localhost, 127.0.0.1; issuer CN=imap-tls test intermediate CA; valid until " + date(expired) + " (expired 2 days ago)",
				"error: certificate FILE expired on " + date(expired)}, "",
			"stunnel-imap-key: fatal: certificate FILE expired on " + date(expired) + "\n"},
		{"encrypted", write("encrypted.pem", good.ChainPEM, encrypted), "", 100,
			[]string{"ok: holds 2 certificates, then a private key", "error: private key in FILE is encrypted: store it unencrypted (root-only, 0400)"}, "",
			"stunnel-imap-key: fatal: private key in FILE is encrypted: store it unencrypted (root-only, 0400)\n"},
		{"another's key", write("mismatch.pem", good.ChainPEM, other.KeyPEM), "", 100,
			[]string{"error: unable to load certificate FILE: private key does not match the certificate"}, "matches", ""},
		{"out of order", write("order.pem", interPEM, leafPEM, good.KeyPEM), "", 100,
			[]string{"warning: certificate 2 does not sign certificate 1", "error: the private key matches certificate 2, not 1: put that one first", "error: unable to load certificate FILE: private key does not match the certificate"}, "", ""},
		{"no intermediate", write("leafonly.pem", leafPEM, good.KeyPEM), "", 0,
			[]string{"warning: no intermediate certificate after the leaf: if its issuer (CN=imap-tls test intermediate CA) is an intermediate, as with every public CA, append it (certbot: fullchain.pem, not cert.pem), or clients that do not already hold it refuse the chain; a leaf issued directly by a root the clients trust (a private CA) needs none"}, "error",
			"stunnel-imap-key: warning: FILE: no intermediate certificate after the leaf"},
		{"self-signed", write("self.pem", other.PEM), "", 0,
			[]string{"ok: the leaf is self-signed"}, "warning", ""},
		{"no key", write("nokey.pem", good.ChainPEM), "", 100,
			[]string{"error: unable to load certificate FILE: no private key"}, "", ""},
		{"missing", filepath.Join(dir, "missing.pem"), "", 111,
			[]string{"error: unable to read certificate FILE: file does not exist"}, "", "stunnel-imap-key: fatal: unable to read certificate FILE: file does not exist\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-c", "-p", tc.file)
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Run()
			out := stdout.String()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, out, stderr.String())
			}
			// every line is KIND: FILE: TEXT
			var lines []string
			for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if l == "" {
					continue
				}
				kind, rest, ok := strings.Cut(l, ": ")
				text, ok2 := strings.CutPrefix(rest, tc.file+": ")
				if !ok || !ok2 || (kind != "ok" && kind != "warning" && kind != "error") {
					t.Errorf("line not in the grammar KIND: FILE: TEXT: %q", l)
				}
				lines = append(lines, kind+": "+strings.ReplaceAll(text, tc.file, "FILE"))
			}
			i := 0
			for _, w := range tc.want {
				for i < len(lines) && !strings.HasPrefix(lines[i], w) {
					i++
				}
				if i == len(lines) {
					t.Errorf("stdout lacks %q (in order):\n%s", w, strings.Join(lines, "\n"))
					break
				}
			}
			if tc.notWant != "" && strings.Contains(strings.Join(lines, "\n"), tc.notWant) {
				t.Errorf("stdout has %q:\n%s", tc.notWant, out)
			}
			errOut := strings.ReplaceAll(stderr.String(), tc.file, "FILE")
			if tc.stderr == "" && tc.code == 0 && errOut != "" || !strings.HasPrefix(errOut, tc.stderr) {
				t.Errorf("stderr %q, want it to start with %q", errOut, tc.stderr)
			}
		})
	}
}

// TestCheckDescriptor: -c -P reads the descriptor, as the run file's
// setuidgid-chroot -o gives it.
func TestCheckDescriptor(t *testing.T) {
	bin := testkit.Bin(t, "stunnel-imap-key")
	c := testkit.NewCert(t, testkit.CertOptions{})
	p, _ := c.Write(t, t.TempDir(), "k")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, "-c", "-P", "3")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "ok: descriptor 3: holds 1 certificate, then a private key\n") {
		t.Errorf("-c -P 3: %v\n%s", err, out)
	}
	// Named by its opener: the report says the file's name.
	f.Seek(0, 0)
	cmd = exec.Command(bin, "-c", "-P", "3:"+p)
	cmd.ExtraFiles = []*os.File{f}
	out, err = cmd.Output()
	if err != nil || !strings.HasPrefix(string(out), "ok: "+p+": holds 1 certificate, then a private key\n") || strings.Contains(string(out), "descriptor") {
		t.Errorf("-c -P 3:%s: %v\n%s", p, err, out)
	}
}
