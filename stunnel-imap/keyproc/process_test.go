package keyproc

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"imap-tls/log"
	"imap-tls/stunnel-imap/keyproc/memscan"
	"imap-tls/stunnel-imap/seccomp"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the key process (`stunnel-imap -S`, through
// the real Run) and as a proxy that does one handshake with a Client.
func TestMain(m *testing.M) {
	switch os.Getenv("KEYPROC_TEST_CHILD") {
	case "key":
		l := log.New("stunnel-imap")
		l.Exit(Run(strings.Fields(os.Getenv("KEYPROC_TEST_ARGS")), l))
		return
	case "proxy":
		os.Exit(proxyChild())
	case "sleep":
		os.Exit(sleepChild())
	}
	os.Exit(m.Run())
}

// proxyChild is the network-facing side: key channel on fd 3, TLS peer on
// fd 4. It locks itself down as stunnel-imap does, serves one handshake
// and one echo, says "ready" and waits for stdin's EOF, so that the
// parent can read its memory.
func proxyChild() int {
	c, err := FileClient(3, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 111
	}
	f := os.NewFile(4, "tls")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 111
	}
	if err := seccomp.Harden(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 111
	}
	if err := seccomp.Install(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 111
	}
	srv := tls.Server(conn, &tls.Config{GetCertificate: c.GetCertificate})
	srv.SetDeadline(time.Now().Add(30 * time.Second))
	if err := srv.Handshake(); err != nil {
		fmt.Fprintln(os.Stderr, "proxy: handshake:", err)
		return 111
	}
	var b [5]byte
	if _, err := io.ReadFull(srv, b[:]); err != nil {
		return 111
	}
	srv.Write(b[:])
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
	return 0
}

type child struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

// wait returns the exit code (-1 for a signal) and stderr.
func (c *child) wait(t testing.TB) (int, string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill() // hang guard
		}
	}()
	c.cmd.Wait()
	close(done)
	return c.cmd.ProcessState.ExitCode(), c.stderr.String()
}

// startKey starts the key process with args, its channel on fd 0/1 and
// extra on fd 3...; it returns the process and the proxy's end.
func startKey(t testing.TB, args string, extra ...*os.File) (*child, net.Conn) {
	t.Helper()
	a, b := socketFiles(t)
	defer a.Close()
	defer b.Close()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), "KEYPROC_TEST_CHILD=key", "KEYPROC_TEST_ARGS="+args)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = b, b, &c.stderr
	c.cmd.ExtraFiles = extra
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	conn, err := net.FileConn(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return c, conn
}

func pemFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stunnel.pem")
	if err := os.WriteFile(p, data, 0o400); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func procField(t testing.TB, pid int, file, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			return strings.Join(strings.Fields(line[len(field):]), " ")
		}
	}
	t.Fatalf("/proc/%d/%s has no %q", pid, file, field)
	return ""
}

func TestKeyProcess(t *testing.T) {
	for _, kind := range []string{"rsa", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			k := genKey(t, kind)
			kp, conn := startKey(t, "-P 3", pemFile(t, k.pem))
			c := NewClient(conn, 0)
			if err := c.Ready(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Certificate(""); err != nil {
				t.Fatal(err)
			}
			// Loaded, waiting for the sign request: locked down.
			pid := kp.cmd.Process.Pid
			for field, want := range map[string]string{"Seccomp:": "2", "NoNewPrivs:": "1"} {
				if got := procField(t, pid, "status", field); got != want {
					t.Errorf("key process %s %s, want %s", field, got, want)
				}
			}
			if got := procField(t, pid, "limits", "Max core file size"); !strings.HasPrefix(got, "0 0 ") {
				t.Errorf("key process core limit %q, want 0 0", got)
			}
			_, serr, cerr := handshake(t, c, k.pool(t), "imap.example.test", nil)
			if serr != nil || cerr != nil {
				t.Fatalf("handshake: server %v, client %v", serr, cerr)
			}
			if code, stderr := kp.wait(t); code != 0 || stderr != "" {
				t.Errorf("key process: exit %d, stderr %q", code, stderr)
			}
		})
	}
}

func TestKeyProcessCertDir(t *testing.T) {
	a := genKey(t, "ecdsa", "a.example.test")
	b := genKey(t, "ecdsa", "b.example.test")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "default.pem"), a.pem, 0o400)
	os.WriteFile(filepath.Join(dir, "mail.example.test.pem"), b.pem, 0o400)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key"), 0o400)
	for sni, want := range map[string]*testKey{"mail.example.test": b, "b.example.test": b, "": a, "x.test": a} {
		kp, conn := startKey(t, "-d "+dir)
		st, serr, cerr := handshake(t, NewClient(conn, 0), want.pool(t), sni, &tls.Config{InsecureSkipVerify: true})
		if serr != nil || cerr != nil {
			t.Fatalf("sni %q: server %v, client %v", sni, serr, cerr)
		}
		if !bytes.Equal(st.PeerCertificates[0].Raw, want.der) {
			t.Errorf("sni %q: wrong certificate", sni)
		}
		if code, stderr := kp.wait(t); code != 0 {
			t.Errorf("exit %d: %s", code, stderr)
		}
	}
}

// TestKeyProcessRefuses: what a compromised proxy might send ends the
// key process with one fatal line, and never yields a second signature.
func TestKeyProcessRefuses(t *testing.T) {
	name := frame(TypeName)
	sign := signFrame(0x05, 0, 32) // SHA-256
	for _, tc := range []struct {
		name, in, want string
	}{
		{"oversized", string(cat(name, []byte{1, TypeSign, 0x10, 0})), "frame too long (type S)"},
		{"bad version", "\x07N\x00\x00", "unknown protocol version (type N)"},
		{"unknown type", "\x01Z\x00\x00", "unknown frame type (type Z)"},
		{"malformed name", string(frame(TypeName, []byte("a/../b")...)), "malformed server name (type N)"},
		{"sign before name", string(sign), "sign request before the server name"},
		{"second name", string(cat(name, name)), "second server name request"},
		{"bad digest", string(cat(name, signFrame(0x05, 0, 20))), "digest length does not match the hash (type S)"},
		{"truncated", string(cat(name, sign[:10])), "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := genKey(t, "ecdsa")
			kp, conn := startKey(t, "-P 3", pemFile(t, k.pem))
			conn.Write([]byte(tc.in))
			if tc.name == "truncated" {
				conn.(*net.UnixConn).CloseWrite()
			}
			var buf [MaxFrame]byte
			sigs := 0
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				rep, err := ReadReply(conn, &buf)
				if err != nil {
					break
				}
				if rep.Type == TypeSig {
					sigs++
				}
			}
			code, stderr := kp.wait(t)
			want := "stunnel-imap: fatal: unable to answer the proxy: " + tc.want + "\n"
			if code != 111 || stderr != want {
				t.Errorf("exit %d, stderr %q; want 111, %q", code, stderr, want)
			}
			if sigs != 0 {
				t.Errorf("%d signatures", sigs)
			}
		})
	}
	t.Run("request beyond one handshake", func(t *testing.T) {
		k := genKey(t, "ecdsa")
		kp, conn := startKey(t, "-P 3", pemFile(t, k.pem))
		conn.Write(cat(name, sign, sign, sign))
		var buf [MaxFrame]byte
		var types []byte
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			rep, err := ReadReply(conn, &buf)
			if err != nil {
				break
			}
			types = append(types, rep.Type)
		}
		if string(types) != "RCG" {
			t.Errorf("replies %q, want a chain and one signature", types)
		}
		if code, _ := kp.wait(t); code != 0 {
			t.Errorf("exit %d", code)
		}
	})
}

func TestKeyProcessUsageAndConfig(t *testing.T) {
	k := genKey(t, "ecdsa")
	empty := t.TempDir()
	badDir := t.TempDir()
	os.WriteFile(filepath.Join(badDir, "default.pem"), []byte("not a pem"), 0o400)
	huge := append(bytes.Repeat([]byte("#"), MaxPEM), k.pem...)
	usage := "stunnel-imap: usage: stunnel-imap " + Synopsis + "\n"
	for _, tc := range []struct {
		args  string
		extra []byte
		code  int
		want  string // a regexp for the whole stderr
	}{
		{"", nil, 100, "^stunnel-imap: fatal: no certificate given\n" + regexp.QuoteMeta(usage) + "$"},
		{"-x", nil, 100, "^stunnel-imap: fatal: flag provided but not defined: -x\n" + regexp.QuoteMeta(usage) + "$"},
		{"-h", nil, 100, "^" + regexp.QuoteMeta(usage) + "$"},
		{"-P 3 extra", k.pem, 100, "^stunnel-imap: fatal: unexpected argument extra\n"},
		{"-P three", nil, 100, "^stunnel-imap: fatal: bad descriptor three\n"},
		{"-P 3", []byte("not a pem"), 100, "^stunnel-imap: fatal: unable to load certificate and key from descriptor 3: tls: .*\n$"},
		{"-P 3", k.pem[:len(k.pem)-40], 100, "^stunnel-imap: fatal: unable to load certificate and key from descriptor 3: .*\n$"},
		{"-p /nonexistent/stunnel.pem", nil, 111, "^stunnel-imap: fatal: unable to open /nonexistent/stunnel.pem: file does not exist\n$"},
		{"-d /nonexistent", nil, 111, "^stunnel-imap: fatal: unable to read directory /nonexistent: file does not exist\n$"},
		{"-P 99", nil, 111, "^stunnel-imap: fatal: unable to read descriptor 99: bad file descriptor\n$"},
		{"-P -1", nil, 100, "^stunnel-imap: fatal: bad descriptor -1\n"},
		{"-P 3", huge, 100, "^stunnel-imap: fatal: certificate file descriptor 3 is larger than 1048576 bytes\n$"},
		{"-d " + empty, nil, 100, "^stunnel-imap: fatal: no .pem file in " + regexp.QuoteMeta(empty) + "\n$"},
		{"-d " + badDir, nil, 100, "^stunnel-imap: fatal: unable to load certificate and key from " + regexp.QuoteMeta(badDir) + "/default.pem: tls: .*\n$"},
	} {
		var extra []*os.File
		if tc.extra != nil {
			extra = append(extra, pemFile(t, tc.extra))
		}
		kp, conn := startKey(t, tc.args, extra...)
		// The proxy learns of it before it greets its client.
		if err := NewClient(conn, 0).Ready(); err == nil || err.Error() != "key process ended" {
			t.Errorf("%q: Ready: %v", tc.args, err)
		}
		conn.Close()
		code, stderr := kp.wait(t)
		if code != tc.code || !regexp.MustCompile(tc.want).MatchString(stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %s", tc.args, code, stderr, tc.code, tc.want)
		}
	}
}

// TestKeyProcessDiesMidHandshake kills the real key process when the
// proxy's sign request reaches it: the proxy's handshake must fail with
// a clear error and the client must see the end, not hang.
func TestKeyProcessDiesMidHandshake(t *testing.T) {
	k := genKey(t, "ecdsa")
	kp, kconn := startKey(t, "-P 3", pemFile(t, k.pem))
	pc, relay := socketConns(t)
	go func() {
		defer relay.Close()
		var buf [MaxFrame]byte
		typ, p, err := readFrame(kconn, &buf, maxReply) // ready
		if err != nil {
			return
		}
		relay.Write(appendFrame(nil, typ, p))
		typ, p, err = readFrame(relay, &buf, maxRequest)
		if err != nil {
			return
		}
		kconn.Write(appendFrame(nil, typ, p))
		typ, p, err = readFrame(kconn, &buf, maxReply)
		if err != nil {
			return
		}
		relay.Write(appendFrame(nil, typ, p))
		if typ, _, _ = readFrame(relay, &buf, maxRequest); typ == TypeSign {
			kp.cmd.Process.Kill()
		}
	}()
	_, serr, cerr := handshake(t, NewClient(pc, 0), k.pool(t), "imap.example.test", nil)
	if serr == nil || !strings.Contains(serr.Error(), "key process ended") || strings.Contains(serr.Error(), "\n") {
		t.Errorf("proxy's handshake error: %v", serr)
	}
	if cerr == nil {
		t.Error("client got a session")
	}
	if code, _ := kp.wait(t); code != -1 {
		t.Errorf("key process exit %d, want killed", code)
	}
}

func secrets(t testing.TB, k *testKey) map[string][]byte {
	t.Helper()
	s, err := memscan.Secrets(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func scanMemory(t testing.TB, pid int, nd map[string][]byte) (map[string]bool, int64) {
	t.Helper()
	found, n, err := memscan.Scan(pid, nd)
	if err != nil {
		t.Fatal(err)
	}
	return found, n
}

// TestProxyMemoryHoldsNoKey runs the proxy side in its own process,
// completes a handshake through it, and reads all its memory for the
// private key; the control reads the key process's memory and must find
// the key there, so the scan itself is shown to work.
func TestProxyMemoryHoldsNoKey(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not running as root: /proc/PID/mem of an undumpable process needs root")
	}
	for _, tc := range []struct {
		kind    string
		version uint16
	}{{"rsa", tls.VersionTLS13}, {"ecdsa", tls.VersionTLS12}, {"ecdsa", tls.VersionTLS13}} {
		t.Run(tc.kind+"/"+tls.VersionName(tc.version), func(t *testing.T) {
			k := genKey(t, tc.kind)
			nd := memscan.Needles(secrets(t, k))

			// Control: the key process, loaded, holds the key.
			kp, kconn := startKey(t, "-P 3", pemFile(t, k.pem))
			if _, err := NewClient(kconn, 0).Certificate(""); err != nil {
				t.Fatal(err)
			}
			found, n := scanMemory(t, kp.cmd.Process.Pid, nd)
			for s := range secrets(t, k) {
				if !found[s+"/be"] && !found[s+"/le"] {
					t.Errorf("control: secret %s not found in the key process's %d bytes: the scan is blind", s, n)
				}
			}
			kconn.Close()
			kp.wait(t)

			// The proxy: a fresh key process, the proxy in its own process.
			kp, kconn = startKey(t, "-P 3", pemFile(t, k.pem))
			kf, err := kconn.(*net.UnixConn).File()
			if err != nil {
				t.Fatal(err)
			}
			kconn.Close()
			tp, tc2 := socketFiles(t)
			proxy := exec.Command(os.Args[0], "-test.run=^$")
			proxy.Env = append(os.Environ(), "KEYPROC_TEST_CHILD=proxy")
			proxy.ExtraFiles = []*os.File{kf, tp}
			var perr bytes.Buffer
			proxy.Stderr = &perr
			stdin, _ := proxy.StdinPipe()
			stdout, _ := proxy.StdoutPipe()
			if err := proxy.Start(); err != nil {
				t.Fatal(err)
			}
			kf.Close()
			tp.Close()
			defer func() { stdin.Close(); proxy.Process.Kill(); proxy.Wait() }()
			cc, err := net.FileConn(tc2)
			tc2.Close()
			if err != nil {
				t.Fatal(err)
			}
			cc.SetDeadline(time.Now().Add(30 * time.Second))
			cli := tls.Client(cc, &tls.Config{RootCAs: k.pool(t), ServerName: "imap.example.test", MinVersion: tc.version, MaxVersion: tc.version})
			if err := cli.Handshake(); err != nil {
				t.Fatalf("handshake through the proxy process: %v (proxy: %s)", err, perr.String())
			}
			cli.Write([]byte("ping\n"))
			var b [5]byte
			if _, err := io.ReadFull(cli, b[:]); err != nil || string(b[:]) != "ping\n" {
				t.Fatalf("echo: %q %v", b, err)
			}
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			if line != "ready\n" {
				t.Fatalf("proxy said %q (stderr %s)", line, perr.String())
			}
			if code, _ := kp.wait(t); code != 0 {
				t.Errorf("key process exit %d after the handshake", code)
			}
			found, n = scanMemory(t, proxy.Process.Pid, nd)
			if n < 1<<20 {
				t.Fatalf("read only %d bytes of the proxy's memory", n)
			}
			for s, ok := range found {
				if ok {
					t.Errorf("the proxy's memory holds the private key (%s)", s)
				}
			}
			t.Logf("scanned %d bytes of the proxy: no key", n)
		})
	}
}

// TestKeyProcessProxyVanishes closes the proxy's end at each step of the
// session, with the key process's last frame read or left unread (the
// kernel then reports a reset, not an end of file): a proxy whose client
// left is no fault of the key process's, so it exits 0 without a word.
func TestKeyProcessProxyVanishes(t *testing.T) {
	name := frame(TypeName)
	sign := signFrame(0x05, 0, 32) // SHA-256
	for _, tc := range []struct {
		name      string
		readyRead bool
		send      []byte
	}{
		{"ready unread", false, nil},
		{"after ready", true, nil},
		{"name sent, ready unread", false, name},
		{"name sent, chain unread", true, name},
		{"sign sent, signature unread", true, cat(name, sign)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := genKey(t, "ecdsa")
			kp, conn := startKey(t, "-P 3", pemFile(t, k.pem))
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			if tc.readyRead {
				if err := NewClient(conn, 0).Ready(); err != nil {
					t.Fatal(err)
				}
			} else {
				// Wait for the ready frame, and leave it queued.
				raw, err := conn.(*net.UnixConn).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var peekErr error
				raw.Read(func(fd uintptr) bool {
					var b [headerLen]byte
					_, _, peekErr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
					return peekErr != unix.EAGAIN
				})
				if peekErr != nil {
					t.Fatal(peekErr)
				}
			}
			if tc.send != nil {
				conn.Write(tc.send)
				time.Sleep(50 * time.Millisecond) // the key process at its write
			}
			conn.Close()
			if code, stderr := kp.wait(t); code != 0 || stderr != "" {
				t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
			}
		})
	}
}
