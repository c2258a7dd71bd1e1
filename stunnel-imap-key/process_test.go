package main

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
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/certfile/certfiletest"
	"imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
	"imap-tls/internal/nodump"
	"imap-tls/internal/seccomp"
	"imap-tls/internal/testkit"
	"imap-tls/internal/testkit/memscan"

	"golang.org/x/sys/unix"
)

// The key process is the real program, stunnel-imap-key (startKey);
// the test binary doubles as a proxy that does one handshake with a
// Client, and as a plain process for the core-file control.
func TestMain(m *testing.M) {
	switch os.Getenv("KEYPROC_TEST_CHILD") {
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
	c, err := keyproto.FileClient(3, kt.Timeout)
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
	if err := nodump.Set(); err != nil {
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

// startKey starts stunnel-imap-key with args (split at spaces), its
// channel on fd 0/1 and extra on fd 3...; it returns the process and the
// proxy's end.
func startKey(t testing.TB, args string, extra ...*os.File) (*child, net.Conn) {
	t.Helper()
	a, b := kt.SocketFiles(t)
	defer a.Close()
	defer b.Close()
	c := &child{cmd: exec.Command(testkit.Bin(t, "stunnel-imap-key"), strings.Fields(args)...)}
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
			k := kt.GenKey(t, kind)
			kp, conn := startKey(t, "-P 3", pemFile(t, k.PEM))
			c := keyproto.NewClient(conn, kt.Timeout)
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
			_, serr, cerr := kt.Handshake(t, c, k.Pool(), "imap.example.test", nil)
			if serr != nil || cerr != nil {
				t.Fatalf("handshake: server %v, client %v", serr, cerr)
			}
			if code, stderr := kp.wait(t); code != 0 || stderr != "" {
				t.Errorf("key process: exit %d, stderr %q", code, stderr)
			}
		})
	}
}

// TestKeyProcessCertDir: -d serves the shared SNI table
// (certfiletest.SNIDir) through real handshakes, as the proxy's -d does
// (stunnel-imap's TestSNI): by the certificates' own names.
func TestKeyProcessCertDir(t *testing.T) {
	dir, cases := certfiletest.SNIDir(t)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a key"), 0o400)
	for _, tc := range cases {
		kp, conn := startKey(t, "-d "+dir)
		st, serr, cerr := kt.Handshake(t, keyproto.NewClient(conn, kt.Timeout), nil, tc.SNI, &tls.Config{InsecureSkipVerify: true})
		if serr != nil || cerr != nil {
			t.Fatalf("sni %q: server %v, client %v", tc.SNI, serr, cerr)
		}
		if got := st.PeerCertificates[0].Subject.CommonName; got != tc.Want {
			t.Errorf("sni %q: served %s, want %s", tc.SNI, got, tc.Want)
		}
		if code, stderr := kp.wait(t); code != 0 {
			t.Errorf("exit %d: %s", code, stderr)
		}
	}
}

// TestKeyProcessPolicy: every case of the shared table
// (certfiletest.Cases) through the real program: the exit status and
// the one fatal line, as the proxy's -p, -P and -d give them
// (stunnel-imap's TestCertPolicy); a source that loads makes a key
// process that says ready.
func TestKeyProcessPolicy(t *testing.T) {
	for _, c := range certfiletest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			args := c.Option + " " + c.Arg
			var extra []*os.File
			fd := 3
			if c.Option == "-P" {
				if c.Arg == "" {
					fd = 9 // not open in the child
				} else {
					f, err := os.Open(c.Arg)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					extra = append(extra, f)
				}
				args = "-P " + strconv.Itoa(fd)
			}
			kp, conn := startKey(t, args, extra...)
			err := keyproto.NewClient(conn, kt.Timeout).Ready()
			conn.Close()
			code, stderr := kp.wait(t)
			if c.Code == 0 {
				if err != nil || code != 0 || stderr != "" {
					t.Errorf("%s: ready %v, exit %d, stderr %q; want ready, 0, nothing", args, err, code, stderr)
				}
				return
			}
			// The proxy learns of it before it greets its client.
			if err == nil || err.Error() != "key holder ended" {
				t.Errorf("%s: Ready: %v", args, err)
			}
			if want := "stunnel-imap-key: fatal: " + c.Message(fd) + "\n"; code != c.Code || stderr != want {
				t.Errorf("%s:\n got %d %q\nwant %d %q", args, code, stderr, c.Code, want)
			}
		})
	}
}

// TestKeyProcessRefuses: what a compromised proxy might send ends the
// key process with one fatal line, and never yields a second signature.
func TestKeyProcessRefuses(t *testing.T) {
	name := kt.Frame(keyproto.TypeName)
	sign := kt.SignFrame(0x05, 0, 32) // SHA-256
	for _, tc := range []struct {
		name, in, want string
	}{
		{"oversized", string(kt.Cat(name, []byte{1, keyproto.TypeSign, 0x10, 0})), "frame too long (type S)"},
		{"bad version", "\x07N\x00\x00", "unknown protocol version (type N)"},
		{"unknown type", "\x01Z\x00\x00", "unknown frame type (type Z)"},
		{"malformed name", string(kt.Frame(keyproto.TypeName, []byte("a/../b")...)), "malformed server name (type N)"},
		{"sign before name", string(sign), "sign request before the server name"},
		{"second name", string(kt.Cat(name, name)), "second server name request"},
		{"bad digest", string(kt.Cat(name, kt.SignFrame(0x05, 0, 20))), "digest length does not match the hash (type S)"},
		{"truncated", string(kt.Cat(name, sign[:10])), "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := kt.GenKey(t, "ecdsa")
			kp, conn := startKey(t, "-P 3", pemFile(t, k.PEM))
			conn.Write([]byte(tc.in))
			if tc.name == "truncated" {
				conn.(*net.UnixConn).CloseWrite()
			}
			var buf [keyproto.MaxFrame]byte
			sigs := 0
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			for {
				rep, err := keyproto.ReadReply(conn, &buf)
				if err != nil {
					break
				}
				if rep.Type == keyproto.TypeSig {
					sigs++
				}
			}
			code, stderr := kp.wait(t)
			want := "stunnel-imap-key: fatal: unable to answer the proxy: " + tc.want + "\n"
			if code != 111 || stderr != want {
				t.Errorf("exit %d, stderr %q; want 111, %q", code, stderr, want)
			}
			if sigs != 0 {
				t.Errorf("%d signatures", sigs)
			}
		})
	}
	t.Run("request beyond one handshake", func(t *testing.T) {
		k := kt.GenKey(t, "ecdsa")
		kp, conn := startKey(t, "-P 3", pemFile(t, k.PEM))
		conn.Write(kt.Cat(name, sign, sign, sign))
		var buf [keyproto.MaxFrame]byte
		var types []byte
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			rep, err := keyproto.ReadReply(conn, &buf)
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
	k := kt.GenKey(t, "ecdsa")
	empty := t.TempDir()
	badDir := t.TempDir()
	os.WriteFile(filepath.Join(badDir, "default.pem"), []byte("not a pem"), 0o400)
	huge := append(bytes.Repeat([]byte("#"), certfile.MaxPEM), k.PEM...)
	usage := "stunnel-imap-key: usage: stunnel-imap-key " + synopsis + "\n"
	for _, tc := range []struct {
		args  string
		extra []byte
		code  int
		want  string // a regexp for the whole stderr
	}{
		{"", nil, 100, "^stunnel-imap-key: fatal: no certificate given\n" + regexp.QuoteMeta(usage) + "$"},
		{"-x", nil, 100, "^stunnel-imap-key: fatal: unknown option -x\n" + regexp.QuoteMeta(usage) + "$"},
		{"-h", nil, 100, "^" + regexp.QuoteMeta(usage) + "$"},
		{"-S -P 3", k.PEM, 100, "^stunnel-imap-key: fatal: unknown option -S\n" + regexp.QuoteMeta(usage) + "$"},
		{"-P 3 extra", k.PEM, 100, "^stunnel-imap-key: fatal: unexpected argument extra\n" + regexp.QuoteMeta(usage) + "$"},
		{"-P three", nil, 100, "^stunnel-imap-key: fatal: bad value for -P: \"three\" \\(not a descriptor number from 0 to 1048575\\)\n" + regexp.QuoteMeta(usage) + "$"},
		{"-P 3", []byte("not a pem"), 100, "^stunnel-imap-key: fatal: unable to load certificate from descriptor 3: no PEM data\n$"},
		// -P fd:name: the file by the name its opener gave, never "descriptor 3".
		{"-P 3:/etc/imap-tls/ssl/stunnel.pem", []byte("not a pem"), 100, "^stunnel-imap-key: fatal: unable to load certificate /etc/imap-tls/ssl/stunnel.pem: no PEM data\n$"},
		{"-P 3:", nil, 100, "^stunnel-imap-key: fatal: bad value for -P: \"3:\" \\(no file name after the colon\\)\n" + regexp.QuoteMeta(usage) + "$"},
		{"-P 3", k.PEM[:len(k.PEM)-40], 100, "^stunnel-imap-key: fatal: unable to load certificate from descriptor 3: no private key\n$"},
		{"-p /nonexistent/stunnel.pem", nil, 111, "^stunnel-imap-key: fatal: unable to read certificate /nonexistent/stunnel.pem: file does not exist\n$"},
		{"-d /nonexistent", nil, 111, "^stunnel-imap-key: fatal: unable to read certificate /nonexistent/default.pem: file does not exist\n$"},
		{"-P 99", nil, 111, "^stunnel-imap-key: fatal: unable to read certificate from descriptor 99: bad file descriptor\n$"},
		{"-P -1", nil, 100, "^stunnel-imap-key: fatal: bad value for -P: \"-1\" \\(not a descriptor number from 0 to 1048575\\)\n" + regexp.QuoteMeta(usage) + "$"},
		{"-P 3", huge, 100, "^stunnel-imap-key: fatal: unable to load certificate from descriptor 3: larger than 1048576 bytes\n$"},
		{"-d " + empty, nil, 111, "^stunnel-imap-key: fatal: unable to read certificate " + regexp.QuoteMeta(empty) + "/default.pem: file does not exist\n$"},
		{"-d " + badDir, nil, 100, "^stunnel-imap-key: fatal: unable to load certificate " + regexp.QuoteMeta(badDir) + "/default.pem: no PEM data\n$"},
		{"-P 3 -p /nonexistent/second.pem", k.PEM, 111, "^stunnel-imap-key: fatal: unable to read certificate /nonexistent/second.pem: file does not exist\n$"},
	} {
		var extra []*os.File
		if tc.extra != nil {
			extra = append(extra, pemFile(t, tc.extra))
		}
		kp, conn := startKey(t, tc.args, extra...)
		// The proxy learns of it before it greets its client.
		if err := keyproto.NewClient(conn, kt.Timeout).Ready(); err == nil || err.Error() != "key holder ended" {
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
	k := kt.GenKey(t, "ecdsa")
	kp, kconn := startKey(t, "-P 3", pemFile(t, k.PEM))
	pc, relay := kt.SocketConns(t)
	go func() {
		defer relay.Close()
		var buf [keyproto.MaxFrame]byte
		// Each frame decoded and encoded again: the relay passes on
		// only what the protocol allows.
		reply := func() bool { // key process to proxy
			rep, err := keyproto.ReadReply(kconn, &buf)
			if err != nil {
				return false
			}
			f, err := keyproto.EncodeReply(rep)
			if err != nil {
				return false
			}
			_, err = relay.Write(f)
			return err == nil
		}
		if !reply() { // ready
			return
		}
		req, err := keyproto.ReadRequest(relay, &buf) // the name
		if err != nil {
			return
		}
		if f, err := keyproto.EncodeRequest(req); err != nil || func() error { _, err := kconn.Write(f); return err }() != nil {
			return
		}
		if !reply() { // the chain
			return
		}
		if req, err := keyproto.ReadRequest(relay, &buf); err == nil && req.Type == keyproto.TypeSign {
			kp.cmd.Process.Kill()
		}
	}()
	_, serr, cerr := kt.Handshake(t, keyproto.NewClient(pc, kt.Timeout), k.Pool(), "imap.example.test", nil)
	if serr == nil || !strings.Contains(serr.Error(), "key holder ended") || strings.Contains(serr.Error(), "\n") {
		t.Errorf("proxy's handshake error: %v", serr)
	}
	if cerr == nil {
		t.Error("client got a session")
	}
	if code, _ := kp.wait(t); code != -1 {
		t.Errorf("key process exit %d, want killed", code)
	}
}

func secrets(t testing.TB, k *kt.Key) map[string][]byte {
	t.Helper()
	s, err := memscan.Secrets(k.Priv)
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
			k := kt.GenKey(t, tc.kind)
			nd := memscan.Needles(secrets(t, k))

			// Control: the key process, loaded, holds the key.
			kp, kconn := startKey(t, "-P 3", pemFile(t, k.PEM))
			if _, err := keyproto.NewClient(kconn, kt.Timeout).Certificate(""); err != nil {
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
			kp, kconn = startKey(t, "-P 3", pemFile(t, k.PEM))
			kf, err := kconn.(*net.UnixConn).File()
			if err != nil {
				t.Fatal(err)
			}
			kconn.Close()
			tp, tc2 := kt.SocketFiles(t)
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
			cli := tls.Client(cc, &tls.Config{RootCAs: k.Pool(), ServerName: "imap.example.test", MinVersion: tc.version, MaxVersion: tc.version})
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
	name := kt.Frame(keyproto.TypeName)
	sign := kt.SignFrame(0x05, 0, 32) // SHA-256
	for _, tc := range []struct {
		name      string
		readyRead bool
		send      []byte
	}{
		{"ready unread", false, nil},
		{"after ready", true, nil},
		{"name sent, ready unread", false, name},
		{"name sent, chain unread", true, name},
		{"sign sent, signature unread", true, kt.Cat(name, sign)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := kt.GenKey(t, "ecdsa")
			kp, conn := startKey(t, "-P 3", pemFile(t, k.PEM))
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			if tc.readyRead {
				if err := keyproto.NewClient(conn, kt.Timeout).Ready(); err != nil {
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
					var b [4]byte // a frame's header
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
