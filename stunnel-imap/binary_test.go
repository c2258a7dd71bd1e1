package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fileOf returns the *os.File of a socketpair end, for a child's
// descriptors.
func fileOf(t *testing.T, c net.Conn) *os.File {
	t.Helper()
	f, err := c.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// runBinary runs the built stunnel-imap with the client socket as fd 0
// and 1, extra as fd 3 and up, and returns its exit code, its stderr and
// what the client end received.
func runBinary(t *testing.T, args []string, extra ...*os.File) (int, string, string) {
	t.Helper()
	return runBinaryEnv(t, nil, args, extra...)
}

// runBinaryEnv is runBinary with env added to the environment.
func runBinaryEnv(t *testing.T, env []string, args []string, extra ...*os.File) (int, string, string) {
	t.Helper()
	cTest, cProc := socketpair(t)
	defer cTest.Close()
	f := fileOf(t, cProc)
	cProc.Close()
	cmd := exec.Command(binary, args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
	cmd.ExtraFiles = extra
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(guard):
		cmd.Process.Kill()
		t.Fatalf("%v did not exit", args)
	}
	cTest.SetReadDeadline(time.Now().Add(guard))
	got, _ := io.ReadAll(cTest)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stderr.String(), string(got)
}

func TestBinaryExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	os.WriteFile(good, testPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	regular, _ := os.Open(good)
	defer regular.Close()
	serverPair := func() *os.File {
		a, b := socketpair(t)
		t.Cleanup(func() { a.Close() })
		f := fileOf(t, b)
		b.Close()
		t.Cleanup(func() { f.Close() })
		return f
	}
	usage := "stunnel-imap: usage: stunnel-imap " + synopsis + "\n"
	cases := []struct {
		name   string
		args   []string
		extra  []*os.File
		code   int
		stderr string
	}{
		{"no certificate option", []string{"-n", "imap"}, nil, 100,
			"stunnel-imap: fatal: exactly one of -p, -P, -d and -K is needed\n" + usage},
		{"unknown flag", []string{"-n", "imaps", "-x", "-p", good}, nil, 100, "stunnel-imap: fatal: unknown option -x\n" + usage},
		{"bad protocol", []string{"-n", "smtp", "-p", good}, nil, 100, `fatal: unknown mode "smtp": use imap, imap-, imaps, pop3, pop3- or pop3s`},
		{"no mode", []string{"-p", good}, nil, 100, "stunnel-imap: fatal: no -n: name the mode: imap, imap-, imaps, pop3, pop3- or pop3s\n" + usage},
		{"implicit is no mode", []string{"-n", "implicit", "-p", good}, nil, 100, `fatal: unknown mode "implicit": use imap, imap-, imaps, pop3, pop3- or pop3s`},
		{"two certificate options", []string{"-n", "imaps", "-p", good, "-d", dir}, nil, 100, "exactly one of -p, -P, -d and -K"},
		{"zero timeout", []string{"-n", "imaps", "-p", good, "-T", "0"}, nil, 100, "stunnel-imap: fatal: bad value for -T: \"0\" (not a positive number of seconds)\n" + usage},
		{"bad -F", []string{"-n", "imaps", "-p", good, "-F", "x"}, nil, 100, "stunnel-imap: fatal: bad value for -F: \"x\" (not a descriptor number from 0 to 1048575)\n" + usage},
		{"bad -A", []string{"-n", "imaps", "-p", good, "-A", "x"}, nil, 100, "stunnel-imap: fatal: bad value for -A: \"x\" (not a positive number of seconds)\n" + usage},
		{"negative -K", []string{"-n", "imaps", "-K", "-1"}, nil, 100, "stunnel-imap: fatal: bad value for -K: \"-1\" (not a descriptor number from 0 to 1048575)\n" + usage},
		{"empty -p", []string{"-n", "imaps", "-p", ""}, nil, 100, "stunnel-imap: fatal: bad value for -p: \"\" (empty)\n" + usage},
		{"empty -d", []string{"-n", "imaps", "-d", ""}, nil, 100, "stunnel-imap: fatal: bad value for -d: \"\" (empty)\n" + usage},
		{"one certificate option twice", []string{"-n", "imaps", "-P", "3", "-P", "4"}, nil, 100, "exactly one of -p, -P, -d and -K"},
		{"-v and -q", []string{"-n", "imaps", "-p", good, "-v", "-q"}, nil, 100, "-v and -q exclude each other"},
		{"extra argument", []string{"-n", "imaps", "-p", good, "--", "child"}, nil, 100, `unexpected argument "child"`},
		{"missing certificate", []string{"-n", "imap", "-p", filepath.Join(dir, "missing.pem")}, []*os.File{serverPair()}, 111,
			"stunnel-imap: fatal: unable to read certificate " + dir + "/missing.pem: file does not exist\n"},
		{"bad certificate", []string{"-n", "imaps", "-p", filepath.Join(dir, "bad.pem")}, []*os.File{serverPair()}, 100, "fatal: unable to load certificate"},
		{"certificate directory without default.pem", []string{"-n", "imaps", "-d", filepath.Join(dir, "nodir")}, []*os.File{serverPair()}, 111,
			"default.pem: file does not exist"},
		{"certificate descriptor not open", []string{"-n", "imaps", "-P", "7"}, []*os.File{serverPair()}, 111,
			"fatal: unable to read certificate from descriptor 7: bad file descriptor\n"},
		{"server descriptor not open", []string{"-n", "imaps", "-p", good, "-F", "9"}, nil, 111,
			"stunnel-imap: fatal: unable to use descriptor 9 for the server: bad file descriptor\n"},
		{"server descriptor not a socket", []string{"-n", "imaps", "-p", good}, []*os.File{regular}, 111,
			"stunnel-imap: fatal: unable to use descriptor 3 for the server: socket operation on non-socket\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr, got := runBinary(t, tc.args, tc.extra...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.stderr)
			}
			if got != "" {
				t.Errorf("the client got %q", got)
			}
		})
	}
	// -h is no error of ours to name: the usage line alone.
	if code, stderr, _ := runBinary(t, []string{"-h"}); code != 100 || stderr != usage {
		t.Errorf("-h: exit %d stderr %q, want 100 and %q", code, stderr, usage)
	}
}

// TestBinarySession runs a whole implicit-TLS session through the built
// program, with the key read from a descriptor (-P) and the server on
// fd 4 (-F 4), as setuidgid-chroot and makesock hand them over.
func TestBinarySession(t *testing.T) {
	cTest, cProc := socketpair(t)
	defer cTest.Close()
	sProc, sTest := socketpair(t)
	defer sTest.Close()
	cf, sf := fileOf(t, cProc), fileOf(t, sProc)
	cProc.Close()
	sProc.Close()
	pr, pw, _ := os.Pipe()
	pw.Write(testPEM)
	pw.Close()

	cmd := exec.Command(binary, "-n", "imaps", "-P", "3", "-F", "4", "-t", "10")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cf, cf, &stderr
	cmd.ExtraFiles = []*os.File{pr, sf}
	cmd.Env = append(os.Environ(), "TCPREMOTEIP=198.51.100.7", "TCPREMOTEPORT=50143")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cf.Close()
	sf.Close()
	pr.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	h := &harness{t: t, client: cTest, rawCli: cTest, server: sTest}
	h.run([]step{handshakeWith(&tls.Config{RootCAs: testPool, ServerName: "imap.test", NextProtos: []string{"imap"}}),
		s(serverGreeting), C(serverGreeting), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
		s("a OK in\r\n"), C("a OK in\r\n"), c("b LOGOUT\r\n"), S("b LOGOUT\r\n"),
		s("* BYE bye\r\nb OK done\r\n"), serverClose(), C("* BYE bye\r\nb OK done\r\n"), clientEnds(), clientClose()})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(guard):
		cmd.Process.Kill()
		t.Fatal("stunnel-imap did not exit")
	}
	want := "stunnel-imap: info: remote=198.51.100.7:50143 mode=imaps starttls=no tls=1.3 cipher=TLS_AES_128_GCM_SHA256 sni=imap.test auth=yes in=32 out=86 warnings=0 duration="
	if !strings.HasPrefix(stderr.String(), want) || !strings.HasSuffix(stderr.String(), "s end=server-eof\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s...s end=server-eof", stderr.String(), want)
	}
}

// TestBinaryPipes: with pipes rather than a socket on fd 0 and 1, the
// client is read from fd 0 and written to fd 1.
func TestBinaryPipes(t *testing.T) {
	sProc, sTest := socketpair(t)
	defer sTest.Close()
	sf := fileOf(t, sProc)
	sProc.Close()
	good := filepath.Join(t.TempDir(), "good.pem")
	os.WriteFile(good, testPEM, 0o600)
	cmd := exec.Command(binary, "-n", "imap-", "-p", good)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{sf}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	sTest.SetDeadline(time.Now().Add(guard))
	io.WriteString(sTest, serverGreeting)
	buf := make([]byte, len(greetOptional))
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != greetOptional {
		t.Errorf("client got %q (%v)", buf, err)
	}
	io.WriteString(stdin, "a LOGIN alice secret\r\n")
	buf = make([]byte, len("a LOGIN alice secret\r\n"))
	if _, err := io.ReadFull(sTest, buf); err != nil || string(buf) != "a LOGIN alice secret\r\n" {
		t.Errorf("server got %q (%v)", buf, err)
	}
	io.WriteString(sTest, "a OK in\r\n")
	buf = make([]byte, len("a OK in\r\n"))
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "a OK in\r\n" {
		t.Errorf("client got %q (%v)", buf, err)
	}
	// The server's end of file reaches the client as end of file on the
	// pipe while the process still runs (the client has not closed).
	sTest.(*net.UnixConn).CloseWrite()
	if rest, err := io.ReadAll(stdout); len(rest) != 0 || err != nil {
		t.Errorf("client got %q (%v) before its end of file", rest, err)
	}
	stdin.Close()
	rest, _ := io.ReadAll(sTest) // the client's end of file reaches the server
	if len(rest) != 0 {
		t.Errorf("server got %q", rest)
	}
	sTest.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "mode=imap- starttls=no tls=none cipher=none sni=- auth=yes") {
		t.Errorf("stderr: %s", stderr.String())
	}
}
