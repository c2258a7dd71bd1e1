package portholder

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0100007F:008F", "127.0.0.1:143"},
		{"00000000:03E1", "0.0.0.0:993"},
		{"00000000000000000000000001000000:006E", "[::1]:110"},
		{"0000000000000000FFFF00000100007F:03E3", "[::ffff:127.0.0.1]:995"},
	} {
		got, ok := parseAddr(tc.in)
		if !ok || got.String() != tc.want {
			t.Errorf("parseAddr(%q) = %v, %v; want %s", tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01007F:008F"} {
		if _, ok := parseAddr(bad); ok {
			t.Errorf("parseAddr(%q) accepted", bad)
		}
	}
}

// TestHolding: a listener of this process is found on its port, at its
// address and under the wildcard, with this process as its holder when
// it can be seen; another address on the same port does not conflict.
func TestHolding(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, ip := range []string{"127.0.0.1", "0", "0.0.0.0", "::"} {
		ls, err := Holding(ip, port)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 1 || ls[0].Addr != netip.MustParseAddrPort("127.0.0.1:"+itoa(port)) {
			t.Fatalf("Holding(%s, %d) = %+v", ip, port, ls)
		}
		ps := Procs(ls)
		if len(ps) != 1 || ps[0].Pid != os.Getpid() {
			t.Fatalf("Holding(%s, %d): processes %+v, want this one (%d)", ip, port, ps, os.Getpid())
		}
		if d := Describe(ls); !strings.HasSuffix(d, " pid "+itoa(os.Getpid())) {
			t.Fatalf("Describe = %q", d)
		}
	}
	if ls, _ := Holding("127.0.0.2", port); len(ls) != 0 {
		t.Fatalf("127.0.0.2:%d held by %+v", port, ls)
	}
	ln.Close()
	if ls, _ := Holding("127.0.0.1", port); len(ls) != 0 {
		t.Fatalf("a closed listener still held: %+v", ls)
	}
}

func TestDescribe(t *testing.T) {
	ls := []Listener{{Procs: []Proc{{812, "dovecot"}}}, {Procs: []Proc{{812, "dovecot"}, {830, "imap-login"}, {831, "a"}, {832, "b"}}}}
	if got, want := Describe(ls), "dovecot pid 812, imap-login pid 830, a pid 831, and 1 more"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
