package seccomp_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"imap-tls/internal/keyholder"
	"imap-tls/internal/keyproto"
	"imap-tls/internal/nodump"
	"imap-tls/internal/seccomp"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// The test binary re-executes itself to install the filter in a process
// of its own: a filter cannot be removed, and would break the test runner.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SECCOMP_TEST_CHILD"); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func say(name string, err error) {
	res := "allowed"
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res = "errno:" + errno.Error()
		} else {
			res = "error:" + err.Error()
		}
	}
	fmt.Printf("%s=%s\n", name, res)
}

func child(mode string) int {
	switch mode {
	case "lockdown":
		return lockdown()
	case "bare":
		// No filter: the same attempts must succeed or fail otherwise,
		// or the probe would prove nothing.
		for _, a := range seccomp.TryForbidden() {
			fmt.Printf("%s=%s\n", a.Name, a.Result())
		}
		return 0
	case "probe":
		if err := seccomp.Install(); err != nil {
			return 111
		}
		seccomp.Probe(log.NewTo("stunnel-imap", os.Stdout, os.Exit))
		return 0
	}
	// kill:NAME: install the filter, then make a call that must kill.
	if err := seccomp.Install(); err != nil {
		fmt.Println("install:", err)
		return 111
	}
	switch mode {
	case "kill:ptrace":
		unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	case "kill:mount":
		unix.Syscall6(unix.SYS_MOUNT, 0, 0, 0, 0, 0, 0)
	case "kill:unshare":
		unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
	case "kill:clone-newnet":
		// A thread in a new network namespace. Without CLONE_VM and
		// CLONE_SIGHAND the kernel would refuse it (EINVAL) even if the
		// filter let it through, so no thread can start on this stack.
		unix.RawSyscall(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWNET, 0, 0)
	case "kill:x32":
		if x32Getpid == 0 {
			return 77 // no x32 on this architecture
		}
		unix.Syscall(x32Getpid, 0, 0, 0)
	}
	fmt.Println("survived")
	return 0
}

func pair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fa, fb := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer fa.Close()
	defer fb.Close()
	a, err := net.FileConn(fa)
	if err != nil {
		return nil, nil, err
	}
	b, err := net.FileConn(fb)
	return a, b, err
}

// lockdown does what the proxy does: take its sockets, harden, install
// the filter, then serve a TLS handshake signed through keyproc, and
// only then try what the filter must refuse.
func lockdown() int {
	cert, err := testkit.GenerateCert(testkit.CertOptions{Names: []string{"imap.example.test"}, SelfSigned: true})
	if err != nil {
		fmt.Println("setup:", err)
		return 111
	}
	key, err := keyholder.ParsePEM(cert.PEM)
	if err != nil {
		fmt.Println("setup:", err)
		return 111
	}
	kc, pc, err1 := pair()
	sc, cc, err2 := pair()
	if err1 != nil || err2 != nil {
		fmt.Println("setup:", err1, err2)
		return 111
	}
	spare, _, _ := pair()
	spareFile, _ := spare.(*net.UnixConn).File()

	say("harden", nodump.Set())
	say("install", seccomp.Install())

	// The runtime keeps working: new threads, timers, netpoll.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // forces a new thread per goroutine
			time.Sleep(5 * time.Millisecond)
		}()
	}
	wg.Wait()
	runtime.GC()

	go keyholder.Serve(kc, kc, keyholder.Keys{key})
	client := keyproto.NewClient(pc, 30*time.Second) // a hang guard
	srv := tls.Server(sc, &tls.Config{GetCertificate: client.GetCertificate})
	cli := tls.Client(cc, cert.ClientConfig("imap.example.test"))
	sc.SetDeadline(time.Now().Add(30 * time.Second))
	cc.SetDeadline(time.Now().Add(30 * time.Second))
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cerr := cli.Handshake()
	serr := <-errc
	if cerr == nil {
		cerr = serr
	}
	say("handshake", cerr)

	for _, a := range seccomp.TryForbidden() {
		say("probe-"+a.Name, a.Err)
	}
	_, err = os.Open("/etc/passwd")
	say("os.Open", err)
	say("exec.Command", exec.Command("/bin/true").Run())
	_, _, e := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	say("clone3", e)
	_, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	say("socket-inet", err)
	_, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	say("socketpair", err)
	say("bind", unix.Bind(int(spareFile.Fd()), &unix.SockaddrUnix{Name: "@jail"}))
	say("connect", unix.Connect(int(spareFile.Fd()), &unix.SockaddrInet4{Port: 143, Addr: [4]byte{127, 0, 0, 1}}))
	say("set-dumpable", unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0))
	say("open", rawOpen())
	say("fork", rawFork())

	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // the parent reads /proc/PID meanwhile
	return 0
}

func startChild(t *testing.T, mode string, env ...string) (*exec.Cmd, io.WriteCloser, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "SECCOMP_TEST_CHILD="+mode), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() }) // hang guard
	t.Cleanup(func() { timer.Stop(); in.Close(); cmd.Process.Kill(); cmd.Wait() })
	return cmd, in, bufio.NewReader(out), &stderr
}

func readResults(t *testing.T, r *bufio.Reader) map[string]string {
	t.Helper()
	got := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("child ended before ready: %v (got %v)", err, got)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "ready" {
			return got
		}
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
}

func TestLockdown(t *testing.T) {
	cmd, in, out, stderr := startChild(t, "lockdown")
	got := readResults(t, out)
	eperm := "errno:" + syscall.EPERM.Error()
	want := map[string]string{
		"harden": "allowed", "install": "allowed", "handshake": "allowed",
		"probe-execve": eperm, "probe-open": eperm, "probe-socket": eperm, "probe-fork": eperm,
		"os.Open": eperm, "exec.Command": eperm, "clone3": "errno:" + syscall.ENOSYS.Error(),
		"socket-inet": eperm, "socketpair": eperm, "bind": eperm, "connect": eperm,
		"set-dumpable": eperm, "open": eperm, "fork": eperm,
	}
	if runtime.GOARCH != "amd64" {
		delete(want, "open") // no open(2), no fork(2) on arm64
		delete(want, "fork")
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	// From outside, while it waits: filtered, no new privileges, no core.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"\nSeccomp:\t2\n", "\nNoNewPrivs:\t1\n"} {
		if !bytes.Contains(status, []byte(w)) {
			t.Errorf("/proc/PID/status lacks %q", strings.TrimSpace(w))
		}
	}
	// Every thread carries the filter (TSYNC).
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
	if len(tasks) < 2 {
		t.Errorf("only %d threads", len(tasks))
	}
	for _, task := range tasks {
		s, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
		if err == nil && !bytes.Contains(s, []byte("\nSeccomp:\t2\n")) {
			t.Errorf("thread %s is not filtered", task.Name())
		}
	}
	limits, _ := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if !strings.Contains(strings.Join(strings.Fields(string(limits)), " "), "Max core file size 0 0 bytes") {
		t.Errorf("core limit not 0:\n%s", limits)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("child: %v, stderr %s", err, stderr)
	}
}

// TestBareProbe: without the filter, the probe's attempts are not
// refused; the lockdown test's EPERMs come from the filter.
func TestBareProbe(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_CHILD=bare")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "execve=failed:no such file or directory\nopen=allowed\nsocket=allowed\nfork=failed:no such file or directory\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestProbeLogsOnlyWithTag(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SECCOMP_TEST_CHILD=probe", "IMAPTLS_JAILPROBE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	if seccomp.ProbeBuilt {
		want = "stunnel-imap: info: jailprobe: execve=refused open=refused socket=refused fork=refused\n"
	}
	if string(out) != want {
		t.Errorf("probe wrote %q, want %q", out, want)
	}
}

// TestKilled: the calls only an attacker makes end the process with
// SIGSYS at once.
func TestKilled(t *testing.T) {
	for _, mode := range []string{"kill:ptrace", "kill:mount", "kill:unshare", "kill:clone-newnet", "kill:x32"} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "SECCOMP_TEST_CHILD="+mode)
		out, _ := cmd.Output()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if mode == "kill:x32" && ws.Exited() && ws.ExitStatus() == 77 {
			continue
		}
		if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
			t.Errorf("%s: %v, output %q; want killed by SIGSYS", mode, cmd.ProcessState, out)
		}
	}
}
