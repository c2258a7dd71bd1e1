package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// TestConnectChainRuns runs the built chain (IMAPTLS_BIN, or a fresh
// build) with the server as one address, as imap-tls-server spells it:
// the proxy's setuidgid-chroot -c 3:ADDRESS to a unix socket (relative
// and absolute), IPv4:port and [IPv6]:port, each with a key process per
// connection (-k: makesock -d 4 starts it) and with the signer (-s, no
// makesock at all); a TLS client
// gets the server's greeting and its answers through it. Needs root
// (setuidgid-chroot) and tcpserver.
func TestConnectChainRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: setuidgid-chroot")
	}
	if _, err := exec.LookPath("tcpserver"); err != nil {
		t.Skip("needs tcpserver (ucspi-tcp-ipv6)")
	}
	binDir := t.TempDir()
	for _, p := range []string{"imap-tls-server", "makesock", "setuidgid-chroot", "stunnel-imap", "stunnel-imap-key", "stunnel-imap-signer"} {
		if err := os.Symlink(testkit.Bin(t, p), filepath.Join(binDir, p)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", binDir+":"+os.Getenv("PATH"))
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Mkdir(filepath.Join(dir, "jail"), 0o755)
	os.Mkdir(filepath.Join(dir, "ssl"), 0o700)
	os.Mkdir(filepath.Join(dir, "signer"), 0o700)
	cert := testkit.NewCert(t, testkit.CertOptions{Intermediate: true})
	cert.Write(t, filepath.Join(dir, "ssl"), "stunnel")

	// The server: greets, answers each command, says BYE to LOGOUT.
	serve := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				c.Write([]byte("* OK fake ready\r\n"))
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadString('\n')
					if err != nil {
						return
					}
					tag, cmd, _ := strings.Cut(strings.TrimSpace(l), " ")
					if strings.EqualFold(cmd, "LOGOUT") {
						c.Write([]byte("* BYE bye\r\n" + tag + " OK LOGOUT done\r\n"))
						return
					}
					c.Write([]byte(tag + " OK " + strings.ToLower(cmd) + " done\r\n"))
				}
			}()
		}
	}
	var addrs []string
	for _, a := range [][2]string{{"unix", filepath.Join(dir, "imap.sock")}, {"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		ln, err := net.Listen(a[0], a[1])
		if err != nil {
			t.Logf("no %s listener: %v", a[0], err)
			continue
		}
		defer ln.Close()
		go serve(ln)
		addrs = append(addrs, ln.Addr().String())
		if a[0] == "unix" {
			addrs = append(addrs, "./imap.sock")
		}
	}

	signer := exec.Command("setuidgid-chroot", "-/", "./jail", "-r", "2000000000:4194304", "-o", "3:./ssl/stunnel.pem", "-l", "4:./signer/socket", "stunnel-imap-signer", "-P", "3", "-L", "4")
	signer.Dir = dir
	var signerLog testkit.LockedBuffer
	signer.Stderr = &signerLog
	if err := signer.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { signer.Process.Kill(); signer.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "signer", "socket")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the signer did not listen: %s", signerLog.String())
		}
	}

	for _, addr := range addrs {
		for _, key := range [][]string{{"-k", "./ssl/stunnel.pem"}, {"-s", "./signer/socket", "-C", "./ssl/stunnel.pem"}} {
			args := append([]string{"-1", "-n", "imaps", "-r", "2000000000:4194304", "-j", "./jail"}, key...)
			args = append(args, "127.0.0.1", "0", addr)
			x := exec.Command("imap-tls-server", append([]string{"-x"}, args...)...)
			x.Dir = dir
			out, err := x.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "\n-c\n3:"+addr+"\n") || strings.Contains(string(out), "-makesock_connect_to\n"+addr) ||
				(key[0] == "-s" && strings.Contains(string(out), "\nmakesock\n")) {
				t.Errorf("%s %s: -x: %v\n%s", addr, key[0], err, out)
			}
			func() {
				cmd := exec.Command("imap-tls-server", args...)
				cmd.Dir = dir
				var log testkit.LockedBuffer
				cmd.Stderr = &log
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { cmd.Process.Kill(); cmd.Wait() }()
				port, err := bufio.NewReader(stdout).ReadString('\n')
				if err != nil {
					t.Fatalf("%s %s: no port: %v: %s", addr, key[0], err, log.String())
				}
				c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", "127.0.0.1:"+strings.TrimSpace(port), cert.ClientConfig("localhost"))
				if err != nil {
					t.Fatalf("%s %s: %v: %s", addr, key[0], err, log.String())
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				c.Write([]byte("a1 NOOP\r\na2 LOGOUT\r\n"))
				var got []string
				for r := bufio.NewReader(c); ; {
					l, err := r.ReadString('\n')
					if err != nil {
						break
					}
					got = append(got, strings.TrimSpace(l))
				}
				if want := "* OK fake ready|a1 OK noop done|* BYE bye|a2 OK LOGOUT done"; strings.Join(got, "|") != want {
					t.Errorf("%s %s: the client read %q, want %q; log:\n%s", addr, key[0], got, want, log.String())
				}
			}()
		}
	}
}
