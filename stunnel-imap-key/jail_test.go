package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
	"imap-tls/internal/testkit"

	"golang.org/x/sys/unix"
)

const uidRange = "2000000000:4194304"

// startJailedKey runs the key process as the pipeline does:
// setuidgid-chroot -/ jail -r RANGE -o 3:pem stunnel-imap-key -P 3.
func startJailedKey(t *testing.T, jail, pem string, env ...string) (*child, *keyproto.Client) {
	t.Helper()
	sgc, key := testkit.Bin(t, "setuidgid-chroot"), testkit.Bin(t, "stunnel-imap-key")
	a, b := kt.SocketFiles(t)
	defer a.Close()
	defer b.Close()
	c := &child{cmd: exec.Command(sgc, "-/", jail, "-r", uidRange, "-o", "3:"+pem, key, "-P", "3")}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdin, c.cmd.Stdout, c.cmd.Stderr = b, b, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	conn, err := net.FileConn(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl := keyproto.NewClient(conn, kt.Timeout)
	if err := cl.Ready(); err != nil {
		code, stderr := c.wait(t)
		t.Fatalf("jailed key process: %v (exit %d, %s)", err, code, stderr)
	}
	return c, cl
}

// TestKeyProcessJail checks, from outside and as root, what the issue
// asks of the key process: a uid and gid of its own (base + pid, unlike
// a second live one's), no groups but its own, no capabilities, no new
// privileges, the seccomp filter, the empty chroot, no core limit, no
// descriptor but its channel; a SIGABRT leaves no core; and it still
// signs a real handshake.
func TestKeyProcessJail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not running as root: setuidgid-chroot needs root")
	}
	k := kt.GenKey(t, "ecdsa")
	dir := t.TempDir()
	pem := filepath.Join(dir, "stunnel.pem")
	if err := os.WriteFile(pem, k.PEM, 0o400); err != nil {
		t.Fatal(err)
	}
	jail := filepath.Join(dir, "jail")
	if err := os.Mkdir(jail, 0o755); err != nil {
		t.Fatal(err)
	}
	base, _ := strconv.Atoi(uidRange[:strings.IndexByte(uidRange, ':')])

	one, _ := startJailedKey(t, jail, pem, "GOTRACEBACK=crash")
	two, cl2 := startJailedKey(t, jail, pem)
	uids := map[string]bool{}
	for _, kp := range []*child{one, two} {
		pid := kp.cmd.Process.Pid
		id := strconv.Itoa(base + pid)
		for field, want := range map[string]string{
			"Uid:":        strings.Repeat(id+" ", 3) + id,
			"Gid:":        strings.Repeat(id+" ", 3) + id,
			"Groups:":     id,
			"NoNewPrivs:": "1",
			"Seccomp:":    "2",
			"CapEff:":     "0000000000000000",
			"CapPrm:":     "0000000000000000",
			"CapBnd:":     "0000000000000000",
		} {
			if got := procField(t, pid, "status", field); got != want {
				t.Errorf("key process %d: %s %q, want %q", pid, field, got, want)
			}
		}
		uids[procField(t, pid, "status", "Uid:")] = true
		// Named as itself in ps: its own program, not the proxy's
		// (comm is cut at 15 bytes by the kernel).
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if argv0, _, _ := strings.Cut(string(cmdline), "\x00"); filepath.Base(argv0) != "stunnel-imap-key" || string(comm) != "stunnel-imap-ke\n" {
			t.Errorf("key process %d: argv[0] %q, comm %q; want stunnel-imap-key", pid, argv0, comm)
		}
		if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err != nil || root != jail {
			t.Errorf("key process root %q (%v), want %s", root, err, jail)
		}
		if got := procField(t, pid, "limits", "Max core file size"); !strings.HasPrefix(got, "0 0 ") {
			t.Errorf("core limit %q", got)
		}
		// The key file is closed, and the channel is its only socket
		// (the runtime's dup of fd 0 aside).
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		channel, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/0", pid))
		for _, e := range ents {
			target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if target == pem || (strings.HasPrefix(target, "socket:") && target != channel) {
				t.Errorf("key process %d: fd %s is %s", pid, e.Name(), target)
			}
		}
	}
	if len(uids) != 2 {
		t.Errorf("two live key processes share a uid: %v", uids)
	}

	// The second one signs a real handshake from inside its jail.
	if _, serr, cerr := kt.Handshake(t, cl2, k.Pool(), "imap.example.test", nil); serr != nil || cerr != nil {
		t.Errorf("handshake through the jailed key process: server %v, client %v", serr, cerr)
	}
	if code, stderr := two.wait(t); code != 0 {
		t.Errorf("jailed key process: exit %d, %s", code, stderr)
	}

	// SIGABRT with GOTRACEBACK=crash: the runtime aborts for a core, and
	// none is written.
	one.cmd.Process.Signal(syscall.SIGABRT)
	one.wait(t)
	ws := one.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
		t.Errorf("after SIGABRT: %v", one.cmd.ProcessState)
	}
	if ws.CoreDump() {
		t.Error("the key process dumped core")
	}
	if ents, _ := os.ReadDir(jail); len(ents) != 0 {
		t.Errorf("the jail holds %v after SIGABRT", ents)
	}
	coreControl(t)
}

// coreControl shows that this system does write cores for a process
// that is neither undumpable nor limited, so the check above can fail.
func coreControl(t *testing.T) {
	pattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	if len(pattern) == 0 || pattern[0] == '|' {
		t.Logf("core_pattern %q pipes cores elsewhere: no control", pattern)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYPROC_TEST_CHILD=sleep", "GOTRACEBACK=crash")
	cmd.Dir = dir
	r, w, _ := os.Pipe()
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var b [1]byte
	r.Read(b[:]) // it has raised its core limit
	r.Close()
	cmd.Process.Signal(syscall.SIGABRT)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.CoreDump() {
		t.Errorf("control: an unhardened process did not dump core either (%v): the check proves nothing", cmd.ProcessState)
	}
	os.RemoveAll(dir)
}

// sleepChild raises its own core limit, says so, and waits for a signal.
func sleepChild() int {
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_CORE, &rl)
	rl.Cur = rl.Max
	unix.Setrlimit(unix.RLIMIT_CORE, &rl)
	os.Stdout.Write([]byte("x"))
	time.Sleep(time.Minute)
	return 0
}
