package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// TestCertCheck: at start the certificates are read by the suite's one
// loader (internal/certfile, through internal/check), as the key process
// and the signer will read them: what it refuses (100) refuses the
// start, with the loader's own line; what cannot be read is 111; a
// certificate that expires within CERT_WARN_DAYS is a warning, and the
// service starts. Refused before the account is checked.
func TestCertCheck(t *testing.T) {
	fake := fakePath(t)
	serviceDir(t)
	expired := testkit.NewCert(t, testkit.CertOptions{Intermediate: true, NotAfter: time.Now().Add(-72 * time.Hour)})
	expired.Write(t, "ssl", "bad")
	date := expired.Leaf.NotAfter.UTC().Format(time.DateOnly)
	good := testkit.NewCert(t, testkit.CertOptions{Intermediate: true})
	os.WriteFile(filepath.Join("ssl", "enc.pem"), append(append([]byte{}, good.ChainPEM...), "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"...), 0o400)
	os.WriteFile(filepath.Join("ssl", "junk.pem"), []byte("not a certificate\n"), 0o400)
	os.Symlink("nowhere", filepath.Join("ssl", "gone.pem"))
	soon := testkit.NewCert(t, testkit.CertOptions{Intermediate: true, NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	soon.Write(t, "ssl", "soon")
	sdate := soon.Leaf.NotAfter.UTC().Format(time.DateOnly)

	const ids = "-n imap -r 2000000000:4194304 -j ./jail "
	for _, c := range []struct {
		args     string
		warnDays string
		code     int
		msg      string
	}{
		{ids + "-k ./ssl/stunnel.pem -k ./ssl/mail.example.org.pem 0 143 imapd", "", 0, ""},
		{ids + "-s ./signer/socket -C ./ssl/stunnel.pem 0 143 imapd", "", 0, ""},
		{ids + "-k ./ssl/bad.pem 0 143 imapd", "", 100, "imap-tls-server: fatal: certificate ./ssl/bad.pem expired on " + date + "\n"},
		{ids + "-s ./signer/socket -C ./ssl/bad.pem 0 143 imapd", "", 100, "imap-tls-server: fatal: certificate ./ssl/bad.pem expired on " + date + "\n"},
		{ids + "-k ./ssl/stunnel.pem -k ./ssl/enc.pem 0 143 imapd", "", 100, "imap-tls-server: fatal: private key in ./ssl/enc.pem is encrypted: store it unencrypted (root-only, 0400)\n"},
		{ids + "-k ./ssl/junk.pem 0 143 imapd", "", 100, "imap-tls-server: fatal: unable to load certificate ./ssl/junk.pem: "},
		{ids + "-k ./ssl/gone.pem 0 143 imapd", "", 111, "imap-tls-server: fatal: unable to read certificate file ./ssl/gone.pem: file does not exist\n"},
		{ids + "-k ./ssl/soon.pem 0 143 imapd", "", 0, "imap-tls-server: warning: ./ssl/soon.pem: certificate for localhost expires on " + sdate + ", in 5 days: renew it (warned from 14 days before: CERT_WARN_DAYS)\n"},
		{ids + "-k ./ssl/soon.pem 0 143 imapd", "3", 0, ""},
		{ids + "-k ./ssl/stunnel.pem 0 143 imapd", "many", 100, "imap-tls-server: fatal: CERT_WARN_DAYS \"many\" is not a number of days from 0 to 3650\n"},
	} {
		t.Setenv("CERT_WARN_DAYS", c.warnDays)
		os.Remove(filepath.Join(fake, "calls"))
		var out bytes.Buffer
		status := 0
		logger = log.NewTo("imap-tls-server", &out, func(c int) { status = c })
		_, _, err := run(strings.Fields(c.args))
		logger.Exit(err)
		logger = log.New("imap-tls-server")
		if status != c.code || !strings.HasPrefix(out.String(), c.msg) || c.msg == "" && out.Len() > 0 || strings.Count(out.String(), "\n") > 1 {
			t.Errorf("%s (CERT_WARN_DAYS %q): exit %d %q, want %d %q", c.args, c.warnDays, status, out.String(), c.code, c.msg)
		}
		// refused before the account is checked
		if _, err := os.Stat(filepath.Join(fake, "calls")); (err == nil) != (c.code == 0) {
			t.Errorf("%s: setuidgid-chroot ran: %v", c.args, err == nil)
		}
	}
}

// TestStartWarnings: a jail that is not root's or not empty, or a key
// file others can read, serves but weakens the isolation: a warning at
// each start (imap-tls-check calls each an error), and the chain.
func TestStartWarnings(t *testing.T) {
	fakePath(t)
	serviceDir(t)
	os.WriteFile(filepath.Join("jail", "etc"), nil, 0o644)
	os.Chmod(filepath.Join("ssl", "stunnel.pem"), 0o644)
	var out bytes.Buffer
	logger = log.NewTo("imap-tls-server", &out, func(int) {})
	defer func() { logger = log.New("imap-tls-server") }()
	if _, _, err := run(strings.Fields("-n imap -r 2000000000:4194304 -j ./jail -k ./ssl/stunnel.pem 0 143 imapd")); err != nil {
		t.Fatal(err)
	}
	want := "imap-tls-server: warning: jail ./jail is not empty (etc, ...): the proxy's whole world must be empty\n" +
		"imap-tls-server: warning: certificate file ./ssl/stunnel.pem is readable or writable by others (mode 0644): chmod 400 ./ssl/stunnel.pem\n"
	if out.String() != want {
		t.Errorf("got  %q\nwant %q", out.String(), want)
	}
}
