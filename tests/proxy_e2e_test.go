package tests

// The client's address end to end (issue 10): out to Dovecot in a PROXY
// v2 header (stunnel-imap -H), in from a load balancer (proxy-server,
// imap-tls-server -L), the environment through makesock, IPv6, and
// real HAProxy in front of two services.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/proxyproto"

	"imap-tls/tests/harness"
)

// startDovecotConf is StartDovecot with lines added to its configuration.
func startDovecotConf(t *testing.T, extra string) *harness.Dovecot {
	t.Setenv("DOVECOT_CONF_EXTRA", extra)
	return harness.StartDovecot(t)
}

// TestProxyDovecotRip: through STARTTLS and implicit TLS with -H, a
// Dovecot that refuses plaintext logins (disable_plaintext_auth = yes)
// accepts the login (PP2_TYPE_SSL: secured) and logs the client's
// address as rip=; the proxy's line names the same address.
func TestProxyDovecotRip(t *testing.T) {
	dc := startDovecotConf(t, "disable_plaintext_auth = yes")
	for i, mode := range []string{"imap", "imaps"} {
		t.Run(mode, func(t *testing.T) {
			p := harness.StartPipeline(t, harness.PipelineOpts{Mode: mode, Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
			src := fmt.Sprintf("127.0.0.%d", 5+i)
			if tagged, _ := harness.Login(t, p, mode, src, p.Addr, "alice", "secret"); !strings.HasPrefix(tagged, "a OK") {
				t.Fatalf("LOGIN: %q\n%s", tagged, dc.Log(t))
			}
			l := harness.WaitDovecotLog(t, dc, `imap-login: Info: Login: user=<alice>, method=PLAIN, rip=`+regexp.QuoteMeta(src)+`, lip=127\.0\.0\.1, .*secured`)
			t.Logf("dovecot: %s", l)
			t.Logf("proxy: %s", p.WaitLog(t, `stunnel-imap: info: remote=`+regexp.QuoteMeta(src)+`:\d+ mode=`+mode+` .* auth=yes `, 15*time.Second))
		})
	}
	// With -n imap- the header has no PP2_TYPE_SSL: such a Dovecot
	// refuses the login even after STARTTLS (it cannot tell): the page
	// says to use disable_plaintext_auth = no there.
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap-", Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
	if tagged, _ := harness.Login(t, p, "imap", "127.0.0.7", p.Addr, "alice", "secret"); !strings.Contains(tagged, "PRIVACYREQUIRED") {
		t.Errorf("imap- LOGIN after STARTTLS: %q, want Dovecot's PRIVACYREQUIRED", tagged)
	}
}

// TestProxyAuthPenalty: Dovecot's auth penalty is per address once it
// knows the address: an address's repeated failed logins are answered
// ever more slowly (2 s of auth_failure_delay, then the penalty grows),
// another address's failed login is not slowed by them, and its good
// login is quick. The proxy's lines count the failures (authfail=).
func TestProxyAuthPenalty(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
	var took []time.Duration
	for i := 0; i < 4; i++ {
		tagged, d := harness.Login(t, p, "imap", "127.0.0.5", p.Addr, "alice", "wrong")
		if !strings.HasPrefix(tagged, "a NO") {
			t.Fatalf("bad LOGIN: %q", tagged)
		}
		took = append(took, d)
	}
	p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.5:\d+ .* auth=no authfail=1 `, 15*time.Second)
	tagged, good := harness.Login(t, p, "imap", "127.0.0.6", p.Addr, "alice", "secret")
	if !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN from 127.0.0.6: %q", tagged)
	}
	tagged, other := harness.Login(t, p, "imap", "127.0.0.6", p.Addr, "alice", "wrong")
	if !strings.HasPrefix(tagged, "a NO") {
		t.Fatalf("bad LOGIN from 127.0.0.6: %q", tagged)
	}
	t.Logf("failed logins from 127.0.0.5: %v; then from 127.0.0.6: a good one %v, a failed one %v", took, good, other)
	if took[3] < other+time.Second || good > time.Second {
		t.Errorf("penalty not per address: 127.0.0.5's 4th failure %v, 127.0.0.6's first %v, its good login %v", took[3], other, good)
	}
	harness.WaitDovecotLog(t, dc, `Login: user=<alice>, method=PLAIN, rip=127\.0\.0\.6,`)
}

// envServer is a backend that writes its environment to file, greets,
// and ends when the client does.
func envServer(file string) []string {
	return []string{"sh", "-c", `env >"$0.tmp" && mv "$0.tmp" "$0"; printf '* OK ready\r\n'; exec cat >/dev/null`, file}
}

func readEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	var b []byte
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if b, err = os.ReadFile(file); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backend wrote no environment: %v", err)
		}
	}
	os.Remove(file)
	env := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	return env
}

// TestProxyEnvironment: what tcpserver sets (Courier's imaplogin reads
// TCPREMOTEIP and TCPREMOTEPORT) reaches the IMAP server through the
// chain unchanged; behind -L, what proxy-server set from the header.
func TestProxyEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap-", Backend: envServer(file)})
	c := harness.DialFrom(t, "127.0.0.7", p.Addr)
	c.Line()
	_, port, _ := net.SplitHostPort(c.Conn.LocalAddr().String())
	env := readEnv(t, file)
	c.Close()
	want := map[string]string{"PROTO": "TCP", "TCPREMOTEIP": "127.0.0.7", "TCPREMOTEPORT": port,
		"TCPLOCALIP": "127.0.0.1", "TCPLOCALPORT": strconv.Itoa(p.Port), "TCPLOCALHOST": "0"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}

	// Behind a balancer: the header's addresses, PROTO TCP6 for IPv6.
	q := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap-", Args: []string{"-L", "127.0.0.1"}, Backend: envServer(file)})
	c = harness.DialFrom(t, "127.0.0.1", q.Addr)
	c.Send("PROXY TCP6 2001:db8::7 2001:db8::1 40000 143\r\n")
	c.Line()
	env = readEnv(t, file)
	c.Close()
	want = map[string]string{"PROTO": "TCP6", "TCPREMOTEIP": "2001:db8::7", "TCPREMOTEPORT": "40000",
		"TCPLOCALIP": "2001:db8::1", "TCPLOCALPORT": "143"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("behind proxy-server: %s=%q, want %q", k, env[k], v)
		}
	}
	q.WaitLog(t, `stunnel-imap: info: remote=\[2001:db8::7\]:40000 mode=imap- `, 15*time.Second)
}

// TestProxyIPv6: ::1 through the whole chain (ucspi-tcp-ipv6): the
// proxy's line, Dovecot's rip=; and an IPv6 client named by a v2 header
// from a balancer on ::1.
func TestProxyIPv6(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Host: "::1", Args: []string{"-H"}, Backend: dc.HAProxyCmd()})
	if tagged, _ := harness.Login(t, p, "imap", "::1", p.Addr, "alice", "secret"); !strings.HasPrefix(tagged, "a OK") {
		t.Fatalf("LOGIN over ::1: %q", tagged)
	}
	harness.WaitDovecotLog(t, dc, `Login: user=<alice>, method=PLAIN, rip=::1, lip=::1, .*secured`)
	p.WaitLog(t, `stunnel-imap: info: remote=\[::1\]:\d+ mode=imap .* auth=yes `, 15*time.Second)

	q := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Host: "::1", Args: []string{"-H", "-L", "::1"}, Backend: dc.HAProxyCmd()})
	c := harness.DialFrom(t, "::1", q.Addr)
	h, _ := proxyproto.AppendV2(nil, proxyproto.Header{Src: netipAP("[2001:db8::7]:40000"), Dst: netipAP("[2001:db8::1]:143")})
	c.Send(string(h) + "a LOGIN alice secret\r\n") // the client's first bytes in the same segment
	if g := c.Line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	if l := c.Line(); !strings.Contains(l, "PRIVACYREQUIRED") {
		t.Errorf("LOGIN before STARTTLS, in the header's segment: %q", l)
	}
	c.StartTLS("s", harness.ClientTLS(t, q.CA, "localhost"))
	if _, tagged := c.Cmd("b", "LOGIN alice secret"); !strings.HasPrefix(tagged, "b OK") {
		t.Fatalf("LOGIN: %q", tagged)
	}
	c.Close()
	harness.WaitDovecotLog(t, dc, `Login: user=<alice>, method=PLAIN, rip=2001:db8::7, lip=2001:db8::1, .*secured`)
	q.WaitLog(t, `stunnel-imap: warning: client sent LOGIN before STARTTLS: refused; remote=\[2001:db8::7\]:40000$`, 15*time.Second)
}

// TestProxyBadHeaders: from an untrusted source, and truncated,
// oversized, slow or malformed headers from a trusted one: closed with
// one proxy-server line each, nothing reaches the IMAP server (no
// backend starts, no stunnel-imap line). A health check (LOCAL, then
// close) and a connection closed at once leave no line at all.
func TestProxyBadHeaders(t *testing.T) {
	dc := harness.StartDovecot(t)
	p := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Args: []string{"-H", "-L", "127.0.0.1"}, Backend: dc.RawLoginCmd()})
	u := harness.StartPipeline(t, harness.PipelineOpts{Mode: "imap", Args: []string{"-H", "-L", "10.0.0.1"}, Backend: dc.RawLoginCmd()})
	local := string(proxyproto.Signature) + "\x20\x00\x00\x00"
	for _, c := range []struct {
		name, send string
		hold       time.Duration
		p          *harness.Pipeline
		line       string
	}{
		{"untrusted", "PROXY TCP4 192.0.2.7 127.0.0.1 40000 143\r\na LOGIN alice secret\r\n", 0, u, "untrusted source: closed"},
		{"truncated", "PROXY TCP4 192.0.2.7 127.0", 0, p, "connection closed in the PROXY header: closed"},
		{"oversized", "PROXY TCP4 " + strings.Repeat("1", 200), 0, p, "PROXY header too long: closed"},
		{"malformed", "PROXY TCP4 192.0.2.7 127.0.0.1 40000 99999\r\na LOGIN alice secret\r\n", 0, p, "malformed PROXY header: closed"},
		{"no header", "a LOGIN alice secret\r\n", 0, p, "no PROXY header: closed"},
		{"slow", "PROXY TCP4 192.0", 6 * time.Second, p, "no whole PROXY header in time: closed"},
		{"health check", local, 0, p, ""},
		{"closed at once", "", 0, p, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(c.p.Stderr())
			conn := harness.DialFrom(t, "127.0.0.1", c.p.Addr)
			_, port, _ := net.SplitHostPort(conn.Conn.LocalAddr().String())
			conn.Send(c.send)
			time.Sleep(c.hold)
			if c.hold == 0 {
				conn.Conn.(*net.TCPConn).CloseWrite()
			}
			rest, _ := conn.Rest()
			if rest != "" {
				t.Errorf("the client got %q", rest)
			}
			conn.Close()
			if c.line != "" {
				c.p.WaitLog(t, `^proxy-server: warning: remote=127\.0\.0\.1:`+port+` `+regexp.QuoteMeta(c.line)+`$`, 15*time.Second)
			} else {
				time.Sleep(300 * time.Millisecond)
			}
			if got := c.p.Stderr()[before:]; strings.Count(got, "\n") != map[bool]int{true: 1, false: 0}[c.line != ""] {
				t.Errorf("lines: %q", got)
			}
		})
	}
	if raw := dc.Raw(t); raw != "" {
		t.Errorf("the IMAP server received %q", raw)
	}
	if strings.Contains(p.Stderr()+u.Stderr(), "stunnel-imap: ") {
		t.Errorf("a proxy ran:\n%s%s", p.Stderr(), u.Stderr())
	}
}

func netipAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
