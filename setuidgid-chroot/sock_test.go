package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
