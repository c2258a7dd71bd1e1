package main

// Tests of the connect form (-c address) that run the built makesock
// against real listeners on loopback and on unix sockets.

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/sockaddr"
)

// upperServer listens on network/addr and answers each connection with
// what it read, upper-cased, once the client has shut its side down.
// It returns the address to give -c.
func upperServer(t *testing.T, network, addr string) string {
	t.Helper()
	return serve(t, network, addr, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(b))
	})
}

// serve runs handle for each connection to a new listener on
// network/addr until the test ends.
func serve(t *testing.T, network, addr string, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				handle(c)
			}()
		}
	}()
	if network == "unix" {
		return addr
	}
	return l.Addr().String()
}

// freeTCP is a loopback address where nothing listens: one that was
// just listened on and closed.
func freeTCP(t *testing.T, network, host string) string {
	t.Helper()
	l, err := net.Listen(network, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// The connection reaches prog1 on fd 3 (or the -d fd), blocking and open
// across exec, and prog1 holds nothing else: unix, TCP over IPv4 and
// over IPv6.
func TestConnect(t *testing.T) {
	addrs := map[string]string{
		"unix": upperServer(t, "unix", filepath.Join(t.TempDir(), "s")),
		"tcp4": upperServer(t, "tcp4", "127.0.0.1:0"),
		"tcp6": upperServer(t, "tcp6", "[::1]:0"),
	}
	for _, network := range []string{"unix", "tcp4", "tcp6"} {
		for _, fd := range []string{"3", "5"} {
			t.Run(network+" fd "+fd, func(t *testing.T) {
				prog1 := "fdtool fds; grep flags /proc/$$/fdinfo/" + fd + "; echo \"[$FD" + fd + "_ERROR]\"; fdtool relay " + fd
				r := runMakesock(t, "hello\n", nil, nil, "-d", fd, "-c", addrs[network], "sh", "-c", prog1)
				// flags 02: O_RDWR alone, neither O_NONBLOCK nor O_CLOEXEC.
				r.want(t, 0, "0 1 2 "+fd+"\nflags:\t02\n[]\nHELLO\n")
				if r.stderr != "" {
					t.Errorf("stderr %q", r.stderr)
				}
			})
		}
	}
}

// What makesock inherited stays prog1's, except on fd, where the
// connection replaces it, as in the socketpair form.
func TestConnectInherited(t *testing.T) {
	addr := upperServer(t, "unix", filepath.Join(t.TempDir(), "s"))
	for _, tt := range []struct {
		fd, fds, at3 string
	}{
		{"3", "0 1 2 3 4 5 6", "socket"},
		{"9", "0 1 2 3 4 5 6 9", "/dev/null"},
	} {
		prog1 := "fdtool fds; readlink /proc/$$/fd/3 | sed 's/:.*//'; fdtool relay " + tt.fd
		r := runMakesock(t, "x\n", extraFiles(t), nil, "-d", tt.fd, "-c", addr, "sh", "-c", prog1)
		r.want(t, 0, tt.fds+"\n"+tt.at3+"\nX\n")
	}
}

// A server that accepts and closes at once: prog1 sees end of file on
// fd 3, and no error (the connect worked).
func TestConnectServerClosesAtOnce(t *testing.T) {
	for _, network := range []string{"unix", "tcp4", "tcp6"} {
		addr := map[string]string{"unix": filepath.Join(t.TempDir(), "s"), "tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network]
		addr = serve(t, network, addr, func(net.Conn) {})
		r := runMakesock(t, "", nil, nil, "-c", addr, "sh", "-c", `cat <&3; echo "prog1 saw eof [$FD3_ERROR]"`)
		r.want(t, 0, "prog1 saw eof []\n")
		if r.stderr != "" {
			t.Errorf("%s: stderr %q", network, r.stderr)
		}
	}
}

// A server that refuses or cannot be reached: makesock says so in one
// line naming the address and the reason (with the client's address
// when tcpserver gave it), and still runs prog1, with nothing on fd
// (an inherited descriptor there is closed) and the reason in
// $FD3_ERROR, so that prog1 can tell the client.
func TestConnectFails(t *testing.T) {
	dir := t.TempDir()
	// A unix socket file that nobody listens on: bound, never listening.
	dead := filepath.Join(dir, "dead")
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(s)
	if err := syscall.Bind(s, &syscall.SockaddrUnix{Name: dead}); err != nil {
		t.Fatal(err)
	}
	notSocket := filepath.Join(dir, "file")
	os.WriteFile(notSocket, nil, 0o644)
	v4, v6 := freeTCP(t, "tcp4", "127.0.0.1"), freeTCP(t, "tcp6", "::1")
	for _, tt := range []struct {
		addr, reason string
	}{
		{v4, "connection refused"},
		{v6, "connection refused"},
		{dead, "connection refused"},
		{filepath.Join(dir, "missing"), "file does not exist"},
		{notSocket, "connection refused"},
		{"/nonexistent/dir/socket", "file does not exist"},
	} {
		why := "unable to connect to " + tt.addr + ": " + tt.reason
		for _, env := range [][]string{nil, {"TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=4711", "FD3_ERROR=stale"}} {
			prog1 := `echo "$FD3_ERROR"; env | grep -c ^FD3_ERROR=; fdtool fds`
			r := runMakesock(t, "", extraFiles(t)[:1], env, "-c", tt.addr, "sh", "-c", prog1)
			// fd 3, inherited, is closed: prog1 holds 0, 1, 2 only.
			r.want(t, 0, why+"\n1\n0 1 2\n")
			wantErr := "makesock: warning: " + why + "\n"
			if env != nil {
				wantErr = "makesock: warning: " + why + "; remote=192.0.2.7:4711\n"
			}
			if r.stderr != wantErr {
				t.Errorf("-c %s: stderr %q, want %q", tt.addr, r.stderr, wantErr)
			}
		}
	}
}

// Unreachable over TCP, on loopback only (no packet may leave this
// machine): in a private network namespace whose loopback is down,
// connect fails at once; with the loopback up and a firewall rule that
// drops the SYN, makesock gives up after its timeout, 5 s.
func TestConnectUnreachable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a private network namespace")
	}
	for _, addr := range []string{"127.0.0.1:143", "[::1]:143"} {
		r := runProg(t, "", nil, nil, "unshare", "-n", makesockBin, "-c", addr, "sh", "-c", `echo "$FD3_ERROR"`)
		why := "unable to connect to " + addr + ": network is unreachable"
		if addr[0] == '[' { // no ::1 on a loopback that is down
			why = "unable to connect to " + addr + ": cannot assign requested address"
		}
		r.want(t, 0, why+"\n")
		if r.stderr != "makesock: warning: "+why+"\n" {
			t.Errorf("stderr %q", r.stderr)
		}
	}

	script := `ip link set lo up && nft add table inet t &&
nft add chain inet t o '{ type filter hook output priority 0; }' &&
nft add rule inet t o tcp dport 143 drop && exec "$@"`
	start := time.Now()
	r := runProg(t, "", nil, nil, "unshare", "-n", "sh", "-c", script, "sh",
		makesockBin, "-c", "127.0.0.1:143", "sh", "-c", `echo "$FD3_ERROR"`)
	took := time.Since(start)
	why := "unable to connect to 127.0.0.1:143: connection timed out"
	r.want(t, 0, why+"\n")
	if r.stderr != "makesock: warning: "+why+"\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	if took < sockaddr.Timeout || took > sockaddr.Timeout+5*time.Second {
		t.Errorf("gave up after %v, want %v", took, sockaddr.Timeout)
	}
}

// prog1 is looked up before anything else: one that cannot run stops
// makesock (111) before it connects.
func TestConnectProg1Missing(t *testing.T) {
	accepted := make(chan bool, 1)
	addr := serve(t, "tcp4", "127.0.0.1:0", func(net.Conn) { accepted <- true })
	r := runMakesock(t, "", nil, nil, "-c", addr, "no-such-prog1")
	if r.code != 111 || r.stderr != "makesock: fatal: unable to run no-such-prog1: file does not exist\n" {
		t.Errorf("exit %d stderr %q", r.code, r.stderr)
	}
	select {
	case <-accepted:
		t.Errorf("makesock connected for a prog1 that cannot run")
	case <-time.After(200 * time.Millisecond):
	}
}

// makesock execs into prog1; when the runtime's own descriptor sits on
// fd (a non-blocking stdin at start), it stays instead, as the
// socketpair form does, and the bytes still flow.
func TestConnectExecOrStay(t *testing.T) {
	addr := upperServer(t, "unix", filepath.Join(t.TempDir(), "s"))
	r := runMakesock(t, "", nil, nil, "-c", addr, "sh", "-c", "cat /proc/$PPID/comm; exec 3<&-")
	if r.code != 0 || r.stdout == "makesock\n" {
		t.Errorf("exit %d stdout %q: makesock did not exec into prog1", r.code, r.stdout)
	}
	prog1 := "cat /proc/$PPID/comm; readlink /proc/$$/fd/3 | sed 's/:.*//'; fdtool relay 3"
	r = runProg(t, "ping\n", nil, nil, fdtoolBin, "nonblock", makesockBin, "-c", addr, "sh", "-c", prog1)
	r.want(t, 0, "makesock\nsocket\nPING\n")
}

// A nested makesock in the socketpair form runs as prog1: the server on
// fd 3, the inner socketpair on fd 4.
func TestConnectNested(t *testing.T) {
	addr := upperServer(t, "tcp4", "127.0.0.1:0")
	r := runMakesock(t, "abc\n", nil, nil, "-c", addr,
		makesockBin, "-d", "4", "sh", "-c", "fdtool fds; cat <&4; fdtool relay 3",
		sep, "sh", "-c", "echo inner; fdtool fds")
	r.want(t, 0, "0 1 2 3 4\ninner\n0 1 2\nABC\n")

	// A failed connect: the inner socketpair lands on 4 alone, fd 3
	// stays empty, and the reason reaches the proxy through both.
	down := freeTCP(t, "tcp4", "127.0.0.1")
	r = runMakesock(t, "", nil, nil, "-c", down,
		makesockBin, "-d", "4", "sh", "-c", `fdtool fds; echo "$FD3_ERROR"; cat <&4`,
		sep, "sh", "-c", "echo inner")
	r.want(t, 0, "0 1 2 4\nunable to connect to "+down+": connection refused\ninner\n")
}

// Under a real tcpserver, as in the chain: the client's bytes reach the
// server through prog1, and a refused connect names the client.
func TestConnectUnderTcpserver(t *testing.T) {
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver is missing: install the Debian package ucspi-tcp-ipv6")
	}
	up := upperServer(t, "unix", filepath.Join(t.TempDir(), "s"))
	down := freeTCP(t, "tcp4", "127.0.0.1")
	for _, tt := range []struct {
		addr, want string
	}{
		{up, "HELLO\n"},
		{down, "unable to connect to " + down + ": connection refused\n"},
	} {
		prog1 := `if [ -n "$FD3_ERROR" ]; then cat >/dev/null; echo "$FD3_ERROR"; else fdtool relay 3; fi`
		a := startTcpserver(t, tcpserver, []string{"-c", tt.addr, "sh", "-c", prog1})
		c, err := net.DialTimeout("tcp", a, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "hello\n")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != tt.want {
			t.Errorf("-c %s: %q (%v), want %q", tt.addr, got, err, tt.want)
		}
	}
}
