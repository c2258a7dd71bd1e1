package firewall

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServers: the addresses read from the server operands, and what is
// not guessed.
func TestServers(t *testing.T) {
	for _, c := range []struct {
		network, address, imapd string
		want                    string // Names, or "error: ..." (a substring), or "unix"
	}{
		{"tcp", "127.0.0.1:10143", "127.0.0.1:10143", "127.0.0.1:10143"},
		{"tcp", "[::1]:10110", "[::1]:10110", "[::1]:10110"},
		{"unix", "/run/dovecot/imap-tls", "/run/dovecot/imap-tls", "unix"},
		{"", "", "socat -lf /dev/null -t 5 STDIO,shut-down TCP:127.0.0.1:10143", "127.0.0.1:10143"},
		{"", "", "/usr/bin/socat STDIO tcp4-connect:192.0.2.7:143,nodelay", "192.0.2.7:143"},
		{"", "", "socat STDIO TCP6:[::1]:10143", "[::1]:10143"},
		{"", "", "socat STDIO UNIX-CONNECT:/run/dovecot/imap-tls", "unix"},
		{"", "", "socat STDIO TCP:localhost:10143", "error: socat's address TCP:localhost:10143 names no numeric"},
		{"", "", "socat STDIO TCP:127.0.0.1:0", "error: socat's address TCP:127.0.0.1:0 names no numeric"},
		{"", "", "socat STDIO EXEC:/bin/cat", "error: socat's command line names no TCP:host:port"},
		{"", "", "sh tests/dovecot.sh haproxy /tmp/x", "error: the server is a program whose port"},
	} {
		got, err := Servers(c.network, c.address, strings.Fields(c.imapd))
		switch {
		case c.want == "unix":
			if !errors.Is(err, ErrUnix) || got != nil {
				t.Errorf("%s: %v %v, want ErrUnix", c.imapd, got, err)
			}
		case strings.HasPrefix(c.want, "error: "):
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(c.want, "error: ")) {
				t.Errorf("%s: %v %v, want %s", c.imapd, got, err, c.want)
			}
		case err != nil || Names(got) != c.want:
			t.Errorf("%s: %v %v, want %s", c.imapd, got, err, c.want)
		}
	}
}

// TestRules: a chain per server, loopback on lo by port, another
// address by address and port; a server named twice, one chain.
func TestRules(t *testing.T) {
	servers := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:10143"),
		netip.MustParseAddrPort("[::1]:10143"),
		netip.MustParseAddrPort("192.0.2.7:143"),
		netip.MustParseAddrPort("[2001:db8::7]:143"),
	}
	want := `add table inet imaptls
add chain inet imaptls proxyport_10143 { type filter hook output priority filter; policy accept; }
flush chain inet imaptls proxyport_10143
add rule inet imaptls proxyport_10143 oifname "lo" tcp dport 10143 meta skuid != 0 counter reject with tcp reset
add chain inet imaptls proxyport_192_0_2_7_143 { type filter hook output priority filter; policy accept; }
flush chain inet imaptls proxyport_192_0_2_7_143
add rule inet imaptls proxyport_192_0_2_7_143 ip daddr 192.0.2.7 tcp dport 143 meta skuid != 0 counter reject with tcp reset
add chain inet imaptls proxyport_2001_db8__7_143 { type filter hook output priority filter; policy accept; }
flush chain inet imaptls proxyport_2001_db8__7_143
add rule inet imaptls proxyport_2001_db8__7_143 ip6 daddr 2001:db8::7 tcp dport 143 meta skuid != 0 counter reject with tcp reset
`
	if got := Rules(servers); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestLoadWithoutNft: no nft in $PATH: the line names the Debian
// package; exit 111.
func TestLoadWithoutNft(t *testing.T) {
	err := Load([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:10143")}, t.TempDir())
	want := "unable to load the firewall rule that keeps 127.0.0.1:10143 to root: nft not found in $PATH (Debian package nftables)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestLoadFailing: nft's own reason, on one line.
func TestLoadFailing(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\ncat >/dev/null\necho 'netlink: Error: cache initialization failed: Operation not permitted' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Load([]netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:10143")}, dir)
	want := "unable to load the firewall rule that keeps 127.0.0.1:10143 to root: nft: netlink: Error: cache initialization failed: Operation not permitted"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
