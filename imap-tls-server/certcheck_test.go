package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCertCheck: at start the certificates are checked by
// stunnel-imap-key -c -p FILE ..., the key process's own loader; what it
// refuses (100) refuses the start, what it cannot read is 111; nothing
// else is parsed here.
func TestCertCheck(t *testing.T) {
	fake := fakePath(t)
	serviceDir(t)
	os.WriteFile(filepath.Join("ssl", "bad.pem"), []byte("expired\n"), 0o400)
	os.WriteFile(filepath.Join("ssl", "gone.pem"), []byte("unreadable\n"), 0o400)
	key := "#!/bin/sh\necho \"$*\" >>" + filepath.Join(fake, "keycalls") + "\n" +
		"case \"$*\" in *bad.pem*) echo 'stunnel-imap-key: fatal: certificate ./ssl/bad.pem expired on 2020-01-01' >&2; exit 100 ;; *gone.pem*) exit 111 ;; esac\n"
	if err := os.WriteFile(filepath.Join(fake, "stunnel-imap-key"), []byte(key), 0o755); err != nil {
		t.Fatal(err)
	}
	const ids = "-n imap -r 2000000000:4194304 -j ./jail "
	for _, c := range []struct {
		args  string
		code  int
		msg   string
		calls string
	}{
		{ids + "-k ./ssl/stunnel.pem -k ./ssl/mail.example.org.pem 0 143 imapd", 0, "", "-c -p ./ssl/stunnel.pem -p ./ssl/mail.example.org.pem\n"},
		{ids + "-k ./ssl/bad.pem 0 143 imapd", 100, "imap-tls-server: fatal: stunnel-imap-key refuses the certificate: not starting\n", "-c -p ./ssl/bad.pem\n"},
		{ids + "-k ./ssl/gone.pem 0 143 imapd", 111, "imap-tls-server: fatal: unable to check the certificate with stunnel-imap-key: exit status 111\n", "-c -p ./ssl/gone.pem\n"},
	} {
		os.Remove(filepath.Join(fake, "keycalls"))
		os.Remove(filepath.Join(fake, "calls"))
		_, _, err := run(strings.Fields(c.args))
		code, msg := exit(err)
		if code != c.code || msg != c.msg {
			t.Errorf("%s: exit %d %q, want %d %q", c.args, code, msg, c.code, c.msg)
		}
		if b, _ := os.ReadFile(filepath.Join(fake, "keycalls")); string(b) != c.calls {
			t.Errorf("%s: stunnel-imap-key ran with %q, want %q", c.args, b, c.calls)
		}
		// refused before the account is checked
		if _, err := os.Stat(filepath.Join(fake, "calls")); (err == nil) != (c.code == 0) {
			t.Errorf("%s: setuidgid-chroot ran: %v", c.args, err == nil)
		}
	}
}
