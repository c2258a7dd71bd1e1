package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"imap-tls/service"
)

// TestModeOption: -m sets env/MODE, whatever the port; without it the
// port's usual mode; the next steps name the mode and how to change it;
// a POP3 mode points env/IMAPD at Dovecot's POP3 socket.
func TestModeOption(t *testing.T) {
	needRoot(t)
	for _, c := range []struct {
		args  []string
		port  int
		mode  string
		what  string
		imapd string
	}{
		{nil, 143, "imap", "IMAP, STARTTLS required", service.Default("IMAPD")},
		{nil, 993, "imaps", "IMAP, implicit TLS", service.Default("IMAPD")},
		{nil, 1993, "imap", "IMAP, STARTTLS required", service.Default("IMAPD")},
		{nil, 995, "pop3s", "POP3, implicit TLS", pop3Server},
		{nil, 110, "pop3", "POP3, STLS required", pop3Server},
		{[]string{"-m", "imaps"}, 10993, "imaps", "IMAP, implicit TLS", service.Default("IMAPD")},
		{[]string{"-m", "imap-"}, 143, "imap-", "IMAP, STARTTLS offered, plaintext allowed", service.Default("IMAPD")},
		{[]string{"-m", "imap"}, 993, "imap", "IMAP, STARTTLS required", service.Default("IMAPD")},
		{[]string{"-m", "pop3"}, 1110, "pop3", "POP3, STLS required", pop3Server},
		{[]string{"-m", "pop3-"}, 110, "pop3-", "POP3, STLS offered, plaintext allowed", pop3Server},
		{[]string{"-m", "pop3s", "--"}, 10995, "pop3s", "POP3, implicit TLS", pop3Server},
	} {
		dir := filepath.Join(t.TempDir(), "svc")
		var out bytes.Buffer
		args := append(append([]string{}, c.args...), acct, logacct, dir, "127.0.0.1", strconv.Itoa(c.port))
		if err := run(args, &out); err != nil {
			t.Errorf("%q: %v", args, err)
			continue
		}
		for k, v := range map[string]string{"MODE": c.mode, "IMAPD": c.imapd, "CERT_WARN_DAYS": "14"} {
			if b, _ := os.ReadFile(filepath.Join(dir, "env", k)); string(b) != v+"\n" {
				t.Errorf("%q: env/%s = %q, want %q", args, k, b, v)
			}
		}
		for _, s := range []string{
			"mode " + c.mode + ": " + c.what + " on 127.0.0.1:" + strconv.Itoa(c.port),
			"the mode is " + c.mode + ": to change it, write one of imap imap- imaps pop3 pop3- pop3s to " + dir + "/env/MODE, then svc -t " + dir,
			"imap-tls-conf -m MODE",
			"the certificate, its intermediates, the private key",
			"imap-tls-check " + dir,
		} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("%q: next steps lack %q:\n%s", args, s, out.String())
			}
		}
	}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-m", "implicit", acct, logacct, "x"}, `bad value for -m: "implicit" (not imap, imap-, imaps, pop3, pop3- or pop3s)`},
		{[]string{"-m"}, "missing value after -m"},
		{[]string{"-m", "imap", "-x", acct, logacct, "x"}, "unknown option -x"},
	} {
		err := run(c.args, new(bytes.Buffer))
		if u, ok := err.(interface{ Error() string }); !ok || !strings.Contains(u.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.args, err, c.msg)
		}
	}
}
