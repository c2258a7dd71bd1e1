package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignerChain: with -s, no key process per connection: one makesock,
// the proxy's setuidgid-chroot connects to the signer (-s 4:SOCKET), and
// stunnel-imap-key need not be installed; -k and -s together are refused.
func TestSignerChain(t *testing.T) {
	fake := fakePath(t)
	serviceDir(t)
	os.Remove(filepath.Join(fake, "stunnel-imap-key"))
	chain, _, err := run(strings.Fields("-n imap -c 500 -r 2000000000:4194304 -j ./jail -s ./signer/socket -T 5 0.0.0.0 143 imapd -x"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(strings.Join([]string{
		"tcpserver -R -H -l 0 -c 500 0.0.0.0 143",
		"makesock",
		"setuidgid-chroot -/ ./jail -r 2000000000:4194304 -s 4:./signer/socket",
		"stunnel-imap -n imap -F 3 -K 4 -T 5",
		"-makesock_connect_to imapd -x",
	}, " "))
	if strings.Join(chain, "\n") != strings.Join(want, "\n") {
		t.Errorf("got  %q\nwant %q", chain, want)
	}
	_, _, err = run(strings.Fields("-n imap -u imaptls -j ./jail -s ./signer/socket -k ./ssl/stunnel.pem 0 143 imapd"))
	if code, msg := exit(err); code != 100 || !strings.Contains(msg, "fatal: -k and -s together") {
		t.Errorf("-k and -s: %d %q", code, msg)
	}
}
