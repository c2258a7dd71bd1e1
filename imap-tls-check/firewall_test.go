package main

import (
	"strings"
	"testing"
)

// TestFirewallFindings: what the proof says where there is nothing to
// prove or nothing it may guess (the proof itself, as root in a network
// namespace with and without the rule: tests/firewall_test.go).
func TestFirewallFindings(t *testing.T) {
	for _, c := range []struct {
		imapd, proxy, want string
	}{
		{"127.0.0.1:10143", "", ""},
		{"/run/dovecot/imap-tls", "yes", "ok: firewall: the server is a unix socket: its file mode guards it, no firewall rule is needed\n"},
		{"socat STDIO UNIX-CONNECT:/run/dovecot/imap-tls", "yes", "ok: firewall: the server is a unix socket: its file mode guards it, no firewall rule is needed\n"},
		{"sh tests/dovecot.sh haproxy /tmp/x", "yes", "warning: firewall: no rule keeps the server's PROXY port to root: the server is a program whose port its command line does not say (only an address, or socat's TCP:host:port, does); any local account that reaches it can send a PROXY header of its own (make env/IMAPD the server's address)\n"},
		{"socat STDIO TCP:localhost:10143", "yes", "warning: firewall: no rule keeps the server's PROXY port to root: socat's address TCP:localhost:10143 names no numeric IPv4:port or [IPv6]:port (a host name is not guessed); any local account that reaches it can send a PROXY header of its own (make env/IMAPD the server's address)\n"},
	} {
		var out strings.Builder
		ch := &checker{r: &report{w: &out}, dir: t.TempDir(), env_: map[string]string{"IMAPD": c.imapd, "PROXYHEADER": c.proxy}}
		ch.firewall()
		if out.String() != c.want {
			t.Errorf("%s (PROXYHEADER %q):\n got %q\nwant %q", c.imapd, c.proxy, out.String(), c.want)
		}
	}
}
