package tests

// The client's address agrees between the proxy's log and the server's
// when a balancer's header has IPv4-mapped addresses (issue 19, item 7).

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"imap-tls/tests/harness"
)

// TestProxyMappedAgrees: a balancer on a dual-stack IPv6 socket names a
// client ::ffff:192.0.2.99. With a mapped server address too, both
// logs say 192.0.2.99; beside a real IPv6 server address the header
// the proxy sends Dovecot must be IPv6, Dovecot logs ::ffff:192.0.2.99,
// and so does the proxy's remote=: one address for one client in both
// logs, never two.
func TestProxyMappedAgrees(t *testing.T) {
	dc := harness.StartDovecot(t)
	q := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Args: []string{"-H", "-L", "127.0.0.1"}, Backend: dc.HAProxyCmd()})
	for _, tt := range []struct {
		header, rip, lip, remote string
	}{
		{"PROXY TCP6 ::ffff:192.0.2.99 ::ffff:198.51.100.1 40001 143\r\n", "192.0.2.99", "198.51.100.1", "192.0.2.99:40001"},
		{"PROXY TCP6 ::ffff:192.0.2.99 2001:db8::1 40002 143\r\n", "::ffff:192.0.2.99", "2001:db8::1", "[::ffff:192.0.2.99]:40002"},
	} {
		c := harness.DialFrom(t, "127.0.0.1", q.Addr)
		c.Send(tt.header)
		if g := c.Line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("%q: greeting %q", tt.header, g)
		}
		c.StartTLS("s", harness.ClientTLS(t, q.CA, "localhost"))
		if _, tagged := c.Cmd("b", "LOGIN alice secret"); !strings.HasPrefix(tagged, "b OK") {
			t.Fatalf("%q: LOGIN: %q", tt.header, tagged)
		}
		c.Close()
		harness.WaitDovecotLog(t, dc, `Login: user=<alice>, method=PLAIN, rip=`+regexp.QuoteMeta(tt.rip)+`, lip=`+regexp.QuoteMeta(tt.lip)+`, .*secured`)
		q.WaitLog(t, `stunnel-imap: info: remote=`+regexp.QuoteMeta(tt.remote)+` mode=imap .* auth=yes `, 15*time.Second)
	}
}
