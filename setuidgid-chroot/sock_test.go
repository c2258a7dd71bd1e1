package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/log"
)

// TestListenConnect: -l makes a socket only its owner may connect to,
// replaces a stale one, refuses to remove anything else; -s connects to
// it, and to a listener that appears while it waits.
func TestListenConnect(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "socket")
	l, err := listenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v %v, want a socket of mode 0600", st.Mode(), err)
	}
	c, err := connectUnix(path)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	a, _, err := unix.Accept(l)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	unix.Write(c, []byte("x"))
	var b [1]byte
	if n, _ := unix.Read(a, b[:]); n != 1 || b[0] != 'x' {
		t.Errorf("read %q", b[:n])
	}
	for _, fd := range []int{a, c, l} {
		unix.Close(fd)
	}

	// The listener is gone, its file stays: a restart replaces it, and a
	// connect waiting meanwhile gets through.
	done := make(chan error, 1)
	go func() {
		fd, err := connectUnix(path)
		if err == nil {
			unix.Close(fd)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if l, err = listenUnix(path); err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer unix.Close(l)
	if err := <-done; err != nil {
		t.Errorf("connect while the listener restarts: %v", err)
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := listenUnix(file); err == nil {
		t.Errorf("listen over a regular file: no error")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the regular file was touched")
	}
	start := time.Now()
	if _, err := connectUnix(filepath.Join(dir, "none")); err != unix.ENOENT {
		t.Errorf("connect to nothing: %v, want ENOENT", err)
	}
	if d := time.Since(start); d < connectWait || d > connectWait+time.Second {
		t.Errorf("connect to nothing gave up after %v, want about %v", d, connectWait)
	}
}

// TestConnectRetryFD: -s 4:socket whose listener appears only after the
// first connect failed: the wait between tries must not start the
// runtime's poller, whose descriptors would take fd 4 first (time.Sleep
// did: "descriptor in use by setuidgid-chroot itself" on every connect
// to a restarting signer).
func TestConnectRetryFD(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	path := filepath.Join(t.TempDir(), "socket")
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := listenUnix(path)
		if err != nil {
			return
		}
		defer unix.Close(l)
		a, _, err := unix.Accept(l)
		if err != nil {
			return
		}
		unix.Write(a, []byte("hi"))
		unix.Close(a)
	}()
	out, _ := exec.Command(sgcBin, "-u", "imaptls", "-s", "4:"+path, statusProg, "fd", "4").CombinedOutput()
	if string(out) != `fd 4 ok "hi"`+"\n" {
		t.Errorf("-s 4 to a listener that came late: %q", out)
	}
}

// TestUnreachable: -s's failure names the signer's socket by its
// absolute path, says what to check when nothing listens, and ends with
// the client's address when tcpserver set it.
func TestUnreachable(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	for _, tt := range []struct {
		err    error
		socket string
		env    func(string) (string, bool)
		want   string
	}{
		{unix.ECONNREFUSED, "/etc/imap-tls/signer/socket", env("TCPREMOTEIP", "192.0.2.7", "TCPREMOTEPORT", "4711"),
			"unable to reach the signer at /etc/imap-tls/signer/socket: connection refused (is the signer service linked and up?); remote=192.0.2.7:4711"},
		{unix.ENOENT, "./signer/socket", env(),
			"unable to reach the signer at " + wd + "/signer/socket: file does not exist (is the signer service linked and up?)"},
		{unix.EACCES, "../x/./socket", env("TCPREMOTEIP", "2001:db8::7", "TCPREMOTEPORT", "1"),
			"unable to reach the signer at " + filepath.Join(wd, "../x/socket") + ": permission denied; remote=[2001:db8::7]:1"},
	} {
		err := unreachable(tt.err, tt.socket, tt.env)
		var e *log.Error
		if !errors.As(err, &e) || e.Code != log.ExitTemp || err.Error() != tt.want {
			t.Errorf("unreachable(%v, %s) = %v, want exit 111 and %q", tt.err, tt.socket, err, tt.want)
		}
	}
}
