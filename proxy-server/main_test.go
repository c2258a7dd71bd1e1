package main

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/proxyproto"
	"imap-tls/internal/testkit"
)

var binary string

func TestMain(m *testing.M) {
	binary = testkit.Bin(testkit.MainTB(), "proxy-server")
	os.Exit(m.Run())
}

// exact is a reader over in that never gives more than asked, and
// records how much was taken.
type exact struct {
	in    []byte
	taken int
	chunk int // at most this many bytes per read (0: no limit)
	ahead int // peek sees at most this many bytes past taken (0: all)
	reads int
}

func (e *exact) read(b []byte) (int, error) {
	e.reads++
	if e.taken == len(e.in) {
		return 0, io.EOF
	}
	n := len(b)
	if e.chunk > 0 && n > e.chunk {
		n = e.chunk
	}
	n = copy(b[:n], e.in[e.taken:])
	e.taken += n
	return n, nil
}

// peek copies what has arrived past what was taken, as MSG_PEEK does.
func (e *exact) peek(b []byte) int {
	rest := e.in[e.taken:]
	if e.ahead > 0 && len(rest) > e.ahead {
		rest = rest[:e.ahead]
	}
	return copy(b, rest)
}

func v2(t testing.TB, h proxyproto.Header) []byte {
	b, err := proxyproto.AppendV2(nil, h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadHeaderExact: the header is read, never a byte of what follows
// it, whatever the reads deliver at a time.
func TestReadHeaderExact(t *testing.T) {
	client := []byte("a CAPABILITY\r\n")
	for _, hdr := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\n"),
		v2(t, proxyproto.Header{Src: addr("[2001:db8::7]:40000"), Dst: addr("[::1]:993"),
			TLVs: []proxyproto.TLV{proxyproto.SSL(proxyproto.ClientSSL, 0)}}),
	} {
		for _, chunk := range []int{0, 1, 7} {
			// without peeking, peeking at all that came, at 5 bytes of it
			for _, ahead := range []int{-1, 0, 5} {
				e := &exact{in: append(append([]byte(nil), hdr...), client...), chunk: chunk, ahead: ahead}
				peek := e.peek
				if ahead < 0 {
					peek = nil
				}
				h, err := readHeader(e.read, peek)
				if err != nil || h.Local {
					t.Fatalf("%q: %+v %v", hdr, h, err)
				}
				if e.taken != len(hdr) {
					t.Errorf("%q chunk %d ahead %d: took %d bytes, the header has %d", hdr, chunk, ahead, e.taken, len(hdr))
				}
				// what arrived whole is read in one go
				if chunk == 0 && ahead == 0 && e.reads != 1 {
					t.Errorf("%q: %d reads with the whole header there, want 1", hdr, e.reads)
				}
			}
		}
	}
}

// FuzzReadHeader: whatever the bytes, readHeader takes at most one
// header's worth, and when it accepts, what it took parses alone.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\na LOGIN"), 3)
	f.Add([]byte("PROXY UNKNOWN\r\n"), 0)
	f.Add(v2(f, proxyproto.Header{Src: addr("192.0.2.7:1"), Dst: addr("192.0.2.8:2")}), 5)
	f.Add(append(append([]byte(nil), proxyproto.Signature...), 0x20, 0, 0, 0, 'x'), 1)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if chunk < 0 {
			chunk = -chunk
		}
		e := &exact{in: in, chunk: chunk}
		h, err := readHeader(e.read, nil)
		if e.taken > proxyproto.MaxV2 {
			t.Fatalf("took %d bytes", e.taken)
		}
		// peeking changes how many reads, never what is said, nor what
		// a header that is accepted takes (a refused one may take a few
		// bytes more or less: the connection is closed then)
		for _, ahead := range []int{0, chunk%9 + 1} {
			p := &exact{in: in, chunk: chunk, ahead: ahead}
			hp, errp := readHeader(p.read, p.peek)
			if (err == nil) != (errp == nil) || err != nil && (headerError(err) != headerError(errp) || errp.Error() != err.Error()) ||
				!reflect.DeepEqual(hp, h) || err == nil && p.taken != e.taken {
				t.Fatalf("peeking %d ahead: took %d, %+v, %v; without: took %d, %+v, %v", ahead, p.taken, hp, errp, e.taken, h, err)
			}
		}
		if err != nil {
			return
		}
		if _, err := proxyproto.Parse(in[:e.taken]); err != nil {
			t.Fatalf("accepted %q, which Parse refuses: %v (%+v)", in[:e.taken], err, h)
		}
	})
}

func addr(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// conversation runs proxy-server with fd 0 and 1 a socket whose other end
// the test holds, env as tcpserver would set it, and a child that prints
// the ucspi variables and then echoes what it reads. send is written at
// once (then, unless hold, a half-close); it returns what the test end
// read until end of file, and the program's stderr.
func conversation(t *testing.T, args []string, send []byte, hold time.Duration) (string, string) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "proxy-server's end")
	f := os.NewFile(uintptr(fds[0]), "test's end")
	mine, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	child := []string{"sh", "-c", `echo "$PROTO $TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT $TCPREMOTEHOST"; exec cat`}
	cmd := exec.Command(binary, append(args, child...)...)
	cmd.Stdin, cmd.Stdout = theirs, theirs
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PROTO=TCP", "TCPREMOTEIP=127.0.0.9", "TCPREMOTEPORT=5555",
		"TCPLOCALIP=127.0.0.1", "TCPLOCALPORT=143", "TCPREMOTEHOST=balancer"}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	mine.Write(send)
	if hold > 0 {
		time.Sleep(hold)
	}
	mine.(*net.UnixConn).CloseWrite()
	mine.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(mine)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v (%s)", err, stderr.String())
	}
	return string(out), stderr.String()
}

func TestProxyServer(t *testing.T) {
	trusted := []string{"-a", "10.0.0.0/8,127.0.0.9", "-t", "0.5"}
	lf := func(b []byte) []byte { return b }
	localCheck := append(append([]byte(nil), proxyproto.Signature...), 0x20, 0x00, 0x00, 0x00)
	for _, c := range []struct {
		name   string
		args   []string
		send   []byte
		hold   time.Duration
		out    string
		stderr string
	}{
		{"v1", trusted, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\nhello\n"), 0,
			"TCP 192.0.2.7 40000 198.51.100.1 143 \nhello\n", ""},
		{"v2 ipv6", trusted, append(v2(t, proxyproto.Header{Src: addr("[2001:db8::7]:40000"), Dst: addr("[2001:db8::1]:993")}), "hello\n"...), 0,
			"TCP6 2001:db8::7 40000 2001:db8::1 993 \nhello\n", ""},
		// A mapped client beside a real IPv6 server address stays mapped
		// (TestAddrsAgree says why); a mapped pair becomes IPv4.
		{"v2 mapped ipv4 to ipv6", trusted, append(v2(t, proxyproto.Header{Src: addr("[::ffff:192.0.2.7]:1"), Dst: addr("[2001:db8::1]:993")}), "x\n"...), 0,
			"TCP6 ::ffff:192.0.2.7 1 2001:db8::1 993 \nx\n", ""},
		{"v1 mapped pair", trusted, []byte("PROXY TCP6 ::ffff:192.0.2.7 ::ffff:198.51.100.1 40000 143\r\nx\n"), 0,
			"TCP 192.0.2.7 40000 198.51.100.1 143 \nx\n", ""},
		{"v1 ipv6 to mapped", trusted, []byte("PROXY TCP6 2001:db8::7 ::ffff:198.51.100.1 40000 143\r\nx\n"), 0,
			"TCP6 2001:db8::7 40000 ::ffff:198.51.100.1 143 \nx\n", ""},
		{"local with data keeps the addresses", trusted, append(append([]byte(nil), localCheck...), "hello\n"...), 0,
			"TCP 127.0.0.9 5555 127.0.0.1 143 balancer\nhello\n", ""},
		{"health check: local, then close", trusted, localCheck, 0, "", ""},
		{"health check v1: the balancer names itself, then close", trusted, []byte("PROXY TCP4 127.0.0.9 127.0.0.1 50286 143\r\n"), 0, "", ""},
		{"the balancer names itself, then talks", trusted, []byte("PROXY TCP4 127.0.0.9 127.0.0.1 50286 143\r\nhi\n"), 0,
			"TCP 127.0.0.9 50286 127.0.0.1 143 \nhi\n", ""},
		{"closed before a byte", trusted, nil, 0, "", ""},
		{"untrusted", []string{"-a", "10.0.0.0/8"}, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\nhello\n"), 0,
			"", "proxy-server: warning: remote=127.0.0.9:5555 untrusted source: closed\n"},
		{"truncated", trusted, []byte("PROXY TCP4 192.0.2.7"), 0,
			"", "proxy-server: warning: remote=127.0.0.9:5555 connection closed in the PROXY header: closed\n"},
		{"slow", trusted, []byte("PROXY TCP4 192.0.2.7"), time.Second,
			"", "proxy-server: warning: remote=127.0.0.9:5555 no whole PROXY header in time: closed\n"},
		{"oversized v1", trusted, lf(bytes.Repeat([]byte("PROXY TCP4 "), 20)),
			0, "", "proxy-server: warning: remote=127.0.0.9:5555 PROXY header too long: closed\n"},
		{"oversized v2", trusted, append(append([]byte(nil), proxyproto.Signature...), 0x21, 0x11, 0xff, 0xff),
			0, "", "proxy-server: warning: remote=127.0.0.9:5555 PROXY header too long: closed\n"},
		{"malformed", trusted, []byte("PROXY TCP4 192.0.2.7 198.51.100.1 x 143\r\nhello\n"), 0,
			"", "proxy-server: warning: remote=127.0.0.9:5555 malformed PROXY header: closed\n"},
		{"no header", trusted, []byte("a LOGIN alice secret\r\n"), 0,
			"", "proxy-server: warning: remote=127.0.0.9:5555 no PROXY header: closed\n"},
		{"udp", trusted, []byte("PROXY UDP4 192.0.2.7 198.51.100.1 1 143\r\n"), 0,
			"", "proxy-server: warning: remote=127.0.0.9:5555 PROXY header not for TCP: closed\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, stderr := conversation(t, c.args, c.send, c.hold)
			if out != c.out {
				t.Errorf("child said %q, want %q", out, c.out)
			}
			if stderr != c.stderr {
				t.Errorf("stderr %q, want %q", stderr, c.stderr)
			}
		})
	}
}

// TestAddrsAgree (issue 19, item 7): whatever the families in the
// balancer's header, the address proxy-server puts in TCPREMOTEIP (the
// proxy's remote=, fail2ban's) is the one the PROXY header that
// stunnel-imap -H builds from the environment names, the address the
// server logs (Dovecot's rip=). A header has one family for both
// addresses, so a mapped client beside a real IPv6 server address can
// only go on as IPv6: then the environment keeps it mapped too.
func TestAddrsAgree(t *testing.T) {
	for _, tt := range []struct {
		src, dst string
		remote   string // TCPREMOTEIP
	}{
		{"192.0.2.99:1", "198.51.100.1:143", "192.0.2.99"},
		{"[::ffff:192.0.2.99]:1", "[::ffff:198.51.100.1]:143", "192.0.2.99"},
		{"[::ffff:192.0.2.99]:1", "198.51.100.1:143", "192.0.2.99"},
		{"[::ffff:192.0.2.99]:1", "[2001:db8::1]:143", "::ffff:192.0.2.99"},
		{"[::ffff:192.0.2.99]:1", "[::1]:143", "::ffff:192.0.2.99"},
		{"[2001:db8::7]:1", "[::ffff:198.51.100.1]:143", "2001:db8::7"},
		{"[2001:db8::7]:1", "[2001:db8::1]:143", "2001:db8::7"},
	} {
		in := proxyproto.Header{Src: addr(tt.src), Dst: addr(tt.dst)}
		env := map[string]string{}
		for _, kv := range setEnv(nil, in) {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		if env["TCPREMOTEIP"] != tt.remote {
			t.Errorf("%s -> %s: TCPREMOTEIP=%s, want %s", tt.src, tt.dst, env["TCPREMOTEIP"], tt.remote)
		}
		if got := remoteOf(in, netip.AddrPort{}).Addr().String(); got != tt.remote {
			t.Errorf("%s -> %s: -v's remote=%s, want %s", tt.src, tt.dst, got, tt.remote)
		}
		// The header sent on, as stunnel-imap -H makes it from the
		// environment, and the address a server reads from it.
		var out proxyproto.Header
		for _, v := range []struct {
			ip, port string
			p        *netip.AddrPort
		}{{"TCPREMOTEIP", "TCPREMOTEPORT", &out.Src}, {"TCPLOCALIP", "TCPLOCALPORT", &out.Dst}} {
			ip := netip.MustParseAddr(env[v.ip])
			port, _ := strconv.Atoi(env[v.port])
			*v.p = netip.AddrPortFrom(ip, uint16(port))
		}
		b, err := proxyproto.AppendV2(nil, out)
		if err != nil {
			t.Fatal(err)
		}
		h, err := proxyproto.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Src.Addr().String(); got != tt.remote {
			t.Errorf("%s -> %s: the header sent on names %s, the environment %s", tt.src, tt.dst, got, tt.remote)
		}
		// PROTO says the family the addresses are in.
		if proto := map[bool]string{true: "TCP", false: "TCP6"}[netip.MustParseAddr(tt.remote).Is4()]; env["PROTO"] != proto {
			t.Errorf("%s -> %s: PROTO=%s, want %s", tt.src, tt.dst, env["PROTO"], proto)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		fatal string
	}{
		{[]string{"sh"}, "missing -a: name the load balancers' addresses"},
		{[]string{"-a", "10.0.0.0/33", "sh"}, `bad value for -a: "10.0.0.0/33" (not an address or a prefix)`},
		{[]string{"-a", "fe80::1%eth0", "sh"}, `bad value for -a: "fe80::1%eth0" (not an address or a prefix)`},
		{[]string{"-a", "10.0.0.1,,::1", "sh"}, `bad value for -a: "10.0.0.1,,::1" ("" is not an address or a prefix)`},
		{[]string{"-a", "10.0.0.1"}, "missing child"},
		{[]string{"-a", "10.0.0.1", "-t", "0", "sh"}, `bad value for -t: "0" (not a positive number of seconds)`},
		{[]string{"-a", "10.0.0.1", "-t", "3601", "sh"}, `bad value for -t: "3601" (more than 3600 seconds)`},
		{[]string{"-a", "10.0.0.1", "-t"}, "missing value after -t"},
		{[]string{"-x", "-a", "10.0.0.1", "sh"}, "unknown option -x"},
		{[]string{"-h"}, ""},
	} {
		cmd := exec.Command(binary, tt.args...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		want := "proxy-server: usage: proxy-server " + synopsis + "\n"
		if tt.fatal != "" {
			want = "proxy-server: fatal: " + tt.fatal + "\n" + want
		}
		if !ok || ee.ExitCode() != 100 || string(out) != want {
			t.Errorf("%q: %v %q, want exit 100 and %q", tt.args, err, out, want)
		}
	}
	// Good values: an attached value, a fraction of a second, flags
	// clustered, a list, -- before the child.
	o, err := parse([]string{"-vt0.5", "-a192.0.2.1,2001:db8::/32", "-a", "10.0.0.0/8", "--", "-child"})
	if err != nil || !o.verbose || o.timeout != 500*time.Millisecond || len(o.sources) != 3 || o.child[0] != "-child" {
		t.Errorf("parse: %+v, %v", o, err)
	}
}
