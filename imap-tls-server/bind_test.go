package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestChainListenAddress: tcpserver's ip and port are found in every shape of
// the chain (options with values, -1, -V, -L, a socket server).
func TestChainListenAddress(t *testing.T) {
	for _, args := range []string{
		"-n imap -u acct -j ./jail -k ./ssl/stunnel.pem 127.0.0.1 143 imapd",
		"-n imaps -c 7 -b 9 -1 -V -u acct -j ./jail -s ./signer/socket 127.0.0.1 993 127.0.0.1:10143",
		"-n pop3 -r 2000000000:4194304 -L 10.0.0.1 -j ./jail -k ./ssl/stunnel.pem ::1 110 ./imapd.sock",
	} {
		o, err := parse(strings.Fields(args))
		if err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		ip, port, ok := chainAddress(o.chain())
		if !ok || ip != o.ip || port != o.port {
			t.Errorf("%s: chainAddress = %q %q %v, want %q %q", args, ip, port, ok, o.ip, o.port)
		}
	}
}

// TestBindable: a free address binds (and is free again after); one
// held by a listener is refused with the address and the holder named,
// as this process (the test) holds it; connections left open on the
// port by a previous listener do not count (SO_REUSEADDR, as tcpserver).
func TestBindable(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	err = bindable("127.0.0.1", port)
	status, msg := exit(err)
	want := "imap-tls-server: fatal: unable to bind 127.0.0.1:" + port + ": address already used (held by "
	if status != 111 || !strings.HasPrefix(msg, want) || !strings.Contains(msg, " pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("held: %d %q, want 111 %q... pid %d)", status, msg, want, os.Getpid())
	}
	if _, msg := exit(bindable("0", port)); !strings.Contains(msg, "unable to bind *:"+port+": address already used (held by ") {
		t.Fatalf("held, ip 0: %q", msg)
	}
	// A connection open on the port, the listener gone: as after svc -t
	// with sessions in progress.
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln.Close()
	if err := bindable("127.0.0.1", port); err != nil {
		t.Fatalf("with only connections left on the port: %v", err)
	}
	if err := bindable("127.0.0.1", "0"); err != nil {
		t.Fatalf("port 0: %v", err)
	}
	if _, msg := exit(bindable("192.0.2.1", port)); !strings.HasPrefix(msg, "imap-tls-server: fatal: unable to bind 192.0.2.1:"+port+": ") {
		t.Fatalf("an address not of this machine: %q", msg)
	}
}

func TestListenAddress(t *testing.T) {
	for _, c := range [][3]string{{"127.0.0.1", "143", "127.0.0.1:143"}, {"::1", "993", "[::1]:993"}, {"0", "110", "*:110"}} {
		if got := listenAddress(c[0], c[1]); got != c[2] {
			t.Errorf("listenAddress(%s, %s) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}
