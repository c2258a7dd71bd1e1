package sockaddr

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseAddress(t *testing.T) {
	for _, tt := range []struct {
		in     string
		family int
	}{
		{"/run/dovecot/imap-tls", unix.AF_UNIX},
		{"./socket", unix.AF_UNIX},
		{"../x:1", unix.AF_UNIX},
		{"/" + strings.Repeat("x", 106), unix.AF_UNIX},
		{"127.0.0.1:10143", unix.AF_INET},
		{"0.0.0.0:1", unix.AF_INET},
		{"255.255.255.255:65535", unix.AF_INET},
		{"[::1]:143", unix.AF_INET6},
		{"[::]:143", unix.AF_INET6},
		{"[2001:db8::7]:143", unix.AF_INET6},
		{"[2001:DB8:0:0:0:0:0:7]:143", unix.AF_INET6},
		{"[1:2:3:4:5:6:7:8]:1", unix.AF_INET6},
		{"[1::]:1", unix.AF_INET6},
		{"[1::8]:1", unix.AF_INET6},
		{"[::ffff:192.0.2.1]:143", unix.AF_INET6},
		{"[::192.0.2.1]:143", unix.AF_INET6},
		{"[1:2:3:4:5:6:1.2.3.4]:143", unix.AF_INET6},
		{"[0001:0:0:0:0:0:0:00ab]:9", unix.AF_INET6},
	} {
		a, err := Parse(tt.in)
		if err != nil || a.Family != tt.family || a.Text != tt.in {
			t.Errorf("Parse(%q) = %+v, %v; want family %d", tt.in, a, err, tt.family)
			continue
		}
		if tt.family == unix.AF_UNIX {
			if a.SA.(*unix.SockaddrUnix).Name != tt.in {
				t.Errorf("Parse(%q): path %q", tt.in, a.SA.(*unix.SockaddrUnix).Name)
			}
			continue
		}
		if want, got := netip.MustParseAddrPort(tt.in), addrPortOf(a); got != want {
			t.Errorf("Parse(%q) = %v, want %v", tt.in, got, want)
		}
	}
	for _, in := range []string{
		"", "x", "host:143", "localhost:143", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:+1", "127.0.0.1:-1", "127.0.0.1:1x", "127.0.0.1:143000", "127.0.0.01:1", "127.0.0:1",
		"127.0.0.1.1:1", "256.0.0.1:1", "1.2.3.4 :1", " 1.2.3.4:1", "::1:143", "[::1]", "[::1]:", "[::1]143",
		"[127.0.0.1]:1", "[fe80::1%eth0]:1", "[1:2:3:4:5:6:7:8:9]:1", "[1:2:3:4:5:6:7]:1", "[1::2::3]:1",
		"[12345::]:1", "[:1]:1", "[1:]:1", "[1:2:3:4:5:6:7:8::]:1", "[::1.2.3.4.5]:1", "[1.2.3.4::]:1",
		"[1:2:3:4:5:6:7:1.2.3.4]:1", "[::g]:1", "/a\x00b", "@abstract",
	} {
		if a, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, a)
		}
	}
}

// FuzzParseAddress: whatever an address says, an IP address Parse accepts is
// one net/netip accepts, the same one.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1", "[::1]:143", "[::ffff:1.2.3.4]:5", "[1:2::3]:4", "1.2.3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil || a.Family == unix.AF_UNIX {
			return
		}
		want, err := netip.ParseAddrPort(s)
		if err != nil {
			t.Fatalf("Parse(%q) accepted what netip refuses: %v", s, err)
		}
		if got := addrPortOf(a); got != want {
			t.Fatalf("Parse(%q) = %v, netip says %v", s, got, want)
		}
	})
}

func addrPortOf(a *Address) netip.AddrPort {
	switch sa := a.SA.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

func TestRemoteSuffix(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{nil, ""},
		{map[string]string{"TCPREMOTEIP": "", "TCPREMOTEPORT": "4711"}, ""},
		{map[string]string{"TCPREMOTEIP": "192.0.2.1", "TCPREMOTEPORT": "4711"}, "; remote=192.0.2.1:4711"},
		{map[string]string{"TCPREMOTEPORT": "4711", "TCPREMOTEIP": "2001:db8::1"}, "; remote=[2001:db8::1]:4711"},
	} {
		getenv := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
		if got := RemoteSuffix(getenv); got != tt.want {
			t.Errorf("RemoteSuffix(%q) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestErrorVar(t *testing.T) {
	if got := ErrorVar(3); got != "FD3_ERROR" {
		t.Errorf("ErrorVar(3) = %q", got)
	}
	if got := ErrorVar(12); got != "FD12_ERROR" {
		t.Errorf("ErrorVar(12) = %q", got)
	}
}

// TestDial: a unix socket, TCP over IPv4 and IPv6 each get a blocking,
// close-on-exec descriptor that reaches the listener; a refused one
// names the reason.
func TestDial(t *testing.T) {
	dir := t.TempDir()
	for _, l := range []struct{ network, addr string }{
		{"unix", dir + "/s"},
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		ln, err := net.Listen(l.network, l.addr)
		if err != nil {
			if l.network == "tcp6" {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			b := make([]byte, 5)
			n, _ := c.Read(b)
			got <- string(b[:n])
			c.Close()
		}()
		a, err := Parse(ln.Addr().String())
		if l.network == "unix" {
			a, err = Parse(l.addr)
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", ln.Addr(), err)
		}
		if a.TCP() != (l.network != "unix") {
			t.Errorf("%s: TCP() = %v", l.network, a.TCP())
		}
		fd, err := Dial(a, Timeout)
		if err != nil {
			t.Fatalf("Dial(%s): %v", a.Text, err)
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || flags&unix.O_NONBLOCK != 0 {
			t.Errorf("%s: flags %#x, %v: want blocking", l.network, flags, err)
		}
		if fdf, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); fdf&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: not close-on-exec", l.network)
		}
		unix.Write(fd, []byte("hello"))
		if s := <-got; s != "hello" {
			t.Errorf("%s: listener read %q", l.network, s)
		}
		unix.Close(fd)
		ln.Close()
	}
	// Refused: a port nobody listens on (bound and closed again), and
	// a unix path with no socket.
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	for _, s := range []string{addr, dir + "/none"} {
		a, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if fd, err := Dial(a, Timeout); err == nil {
			unix.Close(fd)
			t.Errorf("Dial(%s) connected, want refused", s)
		} else if err != unix.ECONNREFUSED && err != unix.ENOENT {
			t.Errorf("Dial(%s): %v, want refused or no such file", s, err)
		}
	}
}

// TestDialUnixBacklogFull: a unix listener whose backlog is full answers
// a non-blocking connect with EAGAIN and no poll says when there is room:
// Dial tries again until its deadline, then says "connection timed out";
// a slot freed meanwhile (the listener accepts) lets it through.
func TestDialUnixBacklogFull(t *testing.T) {
	path := t.TempDir() + "/s"
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lfd)
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(lfd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the backlog with connections nobody accepts.
	var filler []int
	defer func() {
		for _, fd := range filler {
			unix.Close(fd)
		}
	}()
	for i := 0; ; i++ {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		filler = append(filler, fd)
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err == unix.EAGAIN {
			break
		} else if err != nil {
			t.Fatalf("filling the backlog: %v", err)
		}
		if i > 100 {
			t.Skip("the backlog never filled")
		}
	}
	a, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if fd, err := Dial(a, 200*time.Millisecond); err != unix.ETIMEDOUT {
		unix.Close(fd)
		t.Fatalf("Dial on a full backlog: %v, want %v", err, unix.ETIMEDOUT)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("gave up after %v, before its deadline", took)
	}

	// Room made while Dial waits: it connects.
	go func() {
		time.Sleep(50 * time.Millisecond)
		if fd, _, err := unix.Accept(lfd); err == nil {
			unix.Close(fd)
		}
	}()
	fd, err := Dial(a, 5*time.Second)
	if err != nil {
		t.Fatalf("Dial after a slot was freed: %v", err)
	}
	unix.Close(fd)
}
