package main

// Tests that run the built makesock as tcpserver would, with small shell
// scripts and testdata/fdtool as prog1 and prog2, and check from outside.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

var (
	makesockBin string // the binary under test
	fdtoolBin   string // testdata/fdtool
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	tb := testkit.MainTB()
	makesockBin = testkit.Bin(tb, "makesock")
	fdtoolBin = testkit.Build(tb, "./testdata/fdtool")
	// Only what a test passes on purpose reaches makesock: descriptors
	// this process inherited (from a shell, a CI runner) are not passed on.
	if err := closeAllOnExec(); err != nil {
		fmt.Fprintln(os.Stderr, "unable to mark descriptors close-on-exec:", err)
		return 1
	}
	// The scripts call fdtool by name.
	os.Setenv("PATH", filepath.Dir(fdtoolBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	return m.Run()
}

func closeAllOnExec() error {
	fds, err := openFds()
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
	return nil
}

// result is what a run of makesock left behind.
type result struct {
	code           int
	stdout, stderr string
}

// runMakesock runs makesock with args, stdin as its stdin and extra as
// its descriptors 3, 4, ...; a hang guard kills it after a generous time.
func runMakesock(t *testing.T, stdin string, extra []*os.File, env []string, args ...string) result {
	t.Helper()
	return runProg(t, stdin, extra, env, makesockBin, args...)
}

// runProg is runMakesock for any program.
func runProg(t *testing.T, stdin string, extra []*os.File, env []string, prog string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.ExtraFiles = extra
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second // a lingering grandchild holding stdout
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("makesock %q hung; stdout %q stderr %q", args, out.String(), errb.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("makesock %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{code, out.String(), errb.String()}
}

func (r result) want(t *testing.T, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Errorf("exit %d stdout %q, want exit %d stdout %q (stderr %q)", r.code, r.stdout, code, stdout, r.stderr)
	}
}

const usageLine = "makesock: usage: makesock [ -d fd ] ( -c address prog1 [ arg ... ] | [ -w ] prog1 [ arg ... ] -makesock_connect_to prog2 [ arg ... ] )\n"

// prog2 upper-cases what it reads, then says it saw end-of-file: the
// second line proves end-of-file went from prog1 to prog2, and prog1's
// exit proves it came back when prog2 exited.
const upper = "tr a-z A-Z; echo prog2 saw eof"

func TestBytesBothWays(t *testing.T) {
	for _, tt := range []struct {
		opts []string
		fd   string
	}{{nil, "3"}, {[]string{"-d", "7"}, "7"}, {[]string{"-w"}, "3"}, {[]string{"-w", "-d", "12"}, "12"}} {
		t.Run(strings.Join(append([]string{"makesock"}, tt.opts...), " "), func(t *testing.T) {
			args := append(append([]string{}, tt.opts...), "fdtool", "relay", tt.fd, sep, "sh", "-c", upper)
			runMakesock(t, "hello\nworld\n", nil, nil, args...).want(t, 0, "HELLO\nWORLD\nprog2 saw eof\n")
		})
	}
}

// A megabyte each way at once: neither side may wait for the other.
func TestBytesBulk(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, "line %d of the bulk test\n", i)
	}
	for _, opts := range [][]string{nil, {"-w"}} {
		args := append(append([]string{}, opts...), "fdtool", "relay", "3", sep, "cat")
		r := runMakesock(t, b.String(), nil, nil, args...)
		if r.code != 0 || r.stdout != b.String() {
			t.Errorf("%q: exit %d, %d bytes back of %d (stderr %q)", args, r.code, len(r.stdout), b.Len(), r.stderr)
		}
	}
}

// extraFiles opens descriptors for makesock to inherit beyond 0, 1, 2:
// a file, both ends of a pipe and a socket, as a careless parent might
// leave them.
func extraFiles(t *testing.T) []*os.File {
	t.Helper()
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	s0, s1 := os.NewFile(uintptr(pair[0]), "s0"), os.NewFile(uintptr(pair[1]), "s1")
	files := []*os.File{null, r, w, s0}
	t.Cleanup(func() {
		for _, f := range append(files, s1) {
			f.Close()
		}
	})
	return files
}

// Inside prog2, /proc/self/fd lists exactly 0, 1, 2, whatever makesock
// inherited; prog1 keeps what makesock inherited, with the socket on the
// -d descriptor even where an inherited one sat.
func TestProg2GetsOnlyStdio(t *testing.T) {
	for _, opts := range [][]string{nil, {"-w"}, {"-d", "9"}, {"-w", "-d", "9"}} {
		// Inherited: 3, 4, 5, 6. By default the socket replaces 3; with
		// -d 9 it goes above them, and 3 is still the inherited file.
		fd, fds, at3 := "3", "0 1 2 3 4 5 6", "socket"
		if opts != nil && opts[len(opts)-1] == "9" {
			fd, fds, at3 = "9", "0 1 2 3 4 5 6 9", "/dev/null"
		}
		prog1 := "fdtool fds; readlink /proc/$$/fd/3 | sed 's/:.*//'; cat <&" + fd
		args := append(append([]string{}, opts...), "sh", "-c", prog1, sep, "fdtool", "fds")
		r := runMakesock(t, "", extraFiles(t), nil, args...)
		want := fds + "\n" + at3 + "\n0 1 2\n" // prog1's list, its fd 3, prog2's list
		t.Run(strings.Join(append([]string{"makesock"}, opts...), " "), func(t *testing.T) { r.want(t, 0, want) })
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		fatal string
	}{
		{nil, "missing -makesock_connect_to (or -c address)"},
		{[]string{"cat"}, "missing -makesock_connect_to (or -c address)"},
		{[]string{sep, "cat"}, "missing prog1 before -makesock_connect_to"},
		{[]string{"cat", sep}, "missing prog2 after -makesock_connect_to"},
		{[]string{"-w", "cat", sep}, "missing prog2 after -makesock_connect_to"},
		{[]string{"", sep, "cat"}, "empty prog1"},
		{[]string{"cat", sep, ""}, "empty prog2"},
		{[]string{"-d", "0", "cat", sep, "cat"}, `bad value for -d: "0" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "1", "cat", sep, "cat"}, `bad value for -d: "1" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "2", "cat", sep, "cat"}, `bad value for -d: "2" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", "three", "cat", sep, "cat"}, `bad value for -d: "three" (not a descriptor number from 3 to 1048575)`},
		{[]string{"-d", sep, "cat"}, "missing value after -d"},
		{[]string{"-w", "-c", "127.0.0.1:1", "cat"}, "-w has no use with -c: there is no second program to wait for"},
		{[]string{"-c", "localhost:143", "cat"}, `bad value for -c: "localhost:143" (not a unix socket path (starting with / or .), IPv4:port or [IPv6]:port)`},
		{[]string{"-c", "127.0.0.1:1", sep, "cat"}, "-c takes no -makesock_connect_to: the server is the address"},
		{[]string{"-z", "cat", sep, "cat"}, "unknown option -z"},
	} {
		// The marker proves neither program ran: "cat" stands for a
		// script that leaves it.
		dir := t.TempDir()
		marker := filepath.Join(dir, "ran")
		script := writeFile(t, "mark", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
		args := make([]string, len(tt.args))
		for i, a := range tt.args {
			if a == "cat" {
				a = script
			}
			args[i] = a
		}
		r := runMakesock(t, "", nil, nil, args...)
		wantErr := "makesock: fatal: " + tt.fatal + "\n" + usageLine
		if r.code != 100 || r.stderr != wantErr || r.stdout != "" {
			t.Errorf("makesock %q: exit %d stderr %q, want 100 and %q", args, r.code, r.stderr, wantErr)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("makesock %q ran a program after a usage error", args)
		}
	}
	// -h is no error of ours to name: the usage line alone.
	for _, args := range [][]string{{"-h", "cat", sep, "cat"}, {"-h"}} {
		r := runMakesock(t, "", nil, nil, args...)
		if r.code != 100 || r.stderr != usageLine {
			t.Errorf("makesock %q: exit %d stderr %q", args, r.code, r.stderr)
		}
	}
}

// writeFile makes a file in a fresh directory with the given mode.
func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnrunnable(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	touch := []string{"sh", "-c", "touch " + marker + "; cat <&3 2>/dev/null; cat >/dev/null"}
	notExec := writeFile(t, "not-exec", "#!/bin/sh\n", 0o644)
	badFormat := writeFile(t, "bad-format", "\x7fELF garbage", 0o755)

	for _, tt := range []struct {
		args  []string
		fatal string
	}{
		// prog1 missing: reported before prog2 is started.
		{append([]string{"no-such-prog1", sep}, touch...), "unable to run no-such-prog1: file does not exist"},
		{append([]string{"-w", "no-such-prog1", sep}, touch...), "unable to run no-such-prog1: file does not exist"},
		{append([]string{"/nonexistent/prog1", sep}, touch...), "unable to run /nonexistent/prog1: file does not exist"},
		{append([]string{notExec, sep}, touch...), "unable to run " + notExec + ": permission denied"},
		// prog2 unrunnable without -w: makesock exits 111 and does
		// not run prog1.
		{append(touch, sep, "no-such-prog2"), "unable to run no-such-prog2: file does not exist"},
		{append(touch, sep, notExec), "unable to run " + notExec + ": permission denied"},
		// Found, executable, but the kernel refuses it: known only
		// from the failed exec in the child.
		{append(touch, sep, badFormat), "unable to run " + badFormat + ": exec format error"},
	} {
		os.Remove(marker)
		r := runMakesock(t, "", nil, nil, tt.args...)
		if r.code != 111 || r.stderr != "makesock: fatal: "+tt.fatal+"\n" {
			t.Errorf("makesock %q: exit %d stderr %q, want 111 and %q", tt.args, r.code, r.stderr, tt.fatal)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("makesock %q ran the other program", tt.args)
		}
	}
}

// With -w, prog1 runs even when prog2 cannot, sees end-of-file on its
// end at once, and makesock then exits 111 whatever prog1's status.
func TestUnrunnableProg2Wait(t *testing.T) {
	badFormat := writeFile(t, "bad-format", "\x7fELF garbage", 0o755)
	for _, prog2 := range []string{"no-such-prog2", badFormat} {
		r := runMakesock(t, "", nil, nil, "-w", "sh", "-c", "cat <&3; echo prog1 saw eof; exit 0", sep, prog2)
		reason := "file does not exist"
		if prog2 == badFormat {
			reason = "exec format error"
		}
		msg := "unable to run " + prog2 + ": " + reason
		r.want(t, 111, "prog1 saw eof\n")
		if want := "makesock: warning: " + msg + "\nmakesock: fatal: " + msg + "\n"; r.stderr != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
	}
}

// A prog2 that runs but exits at once leaves prog1 with end-of-file, not
// a hang: makesock holds no copy of prog2's end.
func TestProg2ExitsEarly(t *testing.T) {
	for _, opts := range [][]string{nil, {"-w"}, {"-d", "5"}} {
		fd := "3"
		if len(opts) == 2 {
			fd = opts[1]
		}
		args := append(append([]string{}, opts...), "sh", "-c", "cat <&"+fd+"; echo prog1 saw eof", sep, "sh", "-c", "exit 3")
		runMakesock(t, "", nil, nil, args...).want(t, 0, "prog1 saw eof\n")
	}
}

func TestWaitStatus(t *testing.T) {
	for _, tt := range []struct {
		prog1 string
		code  int
	}{
		{"exit 0", 0},
		{"exit 5", 5},
		{"exit 111", 111},
		{"kill -KILL $$", 128 + 9},
		{"kill -TERM $$", 128 + 15},
		{"kill -SEGV $$", 128 + 11},
	} {
		// prog2's status is not makesock's.
		r := runMakesock(t, "", nil, nil, "-w", "sh", "-c", tt.prog1, sep, "sh", "-c", "exit 7")
		if r.code != tt.code || r.stderr != "" {
			t.Errorf("makesock -w sh -c %q: exit %d stderr %q, want %d", tt.prog1, r.code, r.stderr, tt.code)
		}
	}
	// Without -w, makesock is prog1: its status is prog1's too.
	r := runMakesock(t, "", nil, nil, "sh", "-c", "exit 9", sep, "true")
	r.want(t, 9, "")
}

// gone waits (hang guard only) until pid has left the process table, and
// reports whether it did; a zombie stays in it.
func gone(pid int) bool {
	for i := 0; i < 200; i++ {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// With -w, makesock reaps prog2 as soon as it exits, while prog1 still
// runs, and leaves nothing behind when it exits.
func TestWaitReapsBoth(t *testing.T) {
	// prog2 sends its pid and exits; prog1 waits until that pid has
	// left /proc (a zombie would not), then prints both pids.
	prog1 := `read p2 <&3
i=0
while [ -e /proc/$p2 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /proc/$p2 ]; then echo "prog2 not reaped: $(cat /proc/$p2/stat)"; fi
echo $p2 $$`
	r := runMakesock(t, "", nil, nil, "-w", "sh", "-c", prog1, sep, "sh", "-c", "echo $$")
	var p2, p1 int
	if _, err := fmt.Sscanf(r.stdout, "%d %d\n", &p2, &p1); err != nil || r.code != 0 {
		t.Fatalf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, pid := range []int{p1, p2} {
		if !gone(pid) {
			t.Errorf("pid %d still in the process table after makesock -w exited", pid)
		}
	}
}

// TERM, HUP and INT reach both programs; makesock exits with prog1's
// status, and both are reaped.
func TestWaitForwardsSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			// prog2 sends its pid and sleeps; prog1 forwards it to
			// stdout, says ready, and waits to be signalled.
			prog1 := `read p2 <&3; echo $p2; trap 'echo prog1 got signal; exit 3' TERM HUP INT; echo ready; while :; do sleep 0.05; done`
			prog2 := `echo $$; exec sleep 1000`
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, makesockBin, "-w", "sh", "-c", prog1, sep, "sh", "-c", prog2)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var p2 int
			var ready string
			if _, err := fmt.Fscanf(out, "%d\n%s\n", &p2, &ready); err != nil || ready != "ready" {
				t.Fatalf("prog1 did not start: %v %q", err, ready)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			rest := new(bytes.Buffer)
			rest.ReadFrom(out)
			err = cmd.Wait()
			if ctx.Err() != nil {
				t.Fatal("makesock -w did not exit after the signal")
			}
			if code := cmd.ProcessState.ExitCode(); code != 3 || rest.String() != "prog1 got signal\n" {
				t.Errorf("exit %d (%v), rest of stdout %q, stderr %q; want 3 and prog1's line", code, err, rest.String(), errb.String())
			}
			if !gone(p2) {
				t.Errorf("prog2 (pid %d) still there after makesock -w exited", p2)
			}
		})
	}
}

// The environment reaches both programs unchanged.
func TestEnvironment(t *testing.T) {
	env := []string{"TCPREMOTEIP=127.0.0.1", "MAKESOCK_TEST=a b=c"}
	for _, opts := range [][]string{nil, {"-w"}} {
		args := append(append([]string{}, opts...),
			"sh", "-c", `echo "1 $TCPREMOTEIP $MAKESOCK_TEST"; cat <&3`,
			sep, "sh", "-c", `echo "2 $TCPREMOTEIP $MAKESOCK_TEST"`)
		runMakesock(t, "", nil, env, args...).want(t, 0, "1 127.0.0.1 a b=c\n2 127.0.0.1 a b=c\n")
	}
	// And exactly: prog2's whole environment is ours.
	r := runMakesock(t, "", nil, env, "sh", "-c", "cat <&3", sep, "env", "-0")
	got := strings.Split(strings.TrimSuffix(r.stdout, "\x00"), "\x00")
	want := append(os.Environ(), env...)
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("prog2's environment differs:\n got %q\nwant %q", got, want)
	}
}

// When makesock starts with a non-blocking stdin, the Go runtime opens
// its epoll descriptor at start-up, on the lowest free number: 3, the
// default -d. makesock must not move the socket over it; it stays as
// with -w (prog1's parent is then makesock) and the bytes still flow.
func TestRuntimeDescriptorOnFd(t *testing.T) {
	prog1 := "cat /proc/$PPID/comm; readlink /proc/$$/fd/3 | sed 's/:.*//'; fdtool relay 3"
	r := runProg(t, "ping\n", nil, nil, fdtoolBin, "nonblock", makesockBin, "sh", "-c", prog1, sep, "sh", "-c", upper)
	r.want(t, 0, "makesock\nsocket\nPING\nprog2 saw eof\n")
}

// Without the collision (stdin blocking), makesock execs into prog1:
// prog1's parent is whoever started makesock.
func TestExecReplacesMakesock(t *testing.T) {
	r := runMakesock(t, "", nil, nil, "sh", "-c", "echo $$", sep, "true")
	r.want(t, 0, regexp.MustCompile(`^\d+\n$`).FindString(r.stdout))
	r2 := runMakesock(t, "", nil, nil, "sh", "-c", "cat /proc/$PPID/comm", sep, "true")
	if r2.stdout == "makesock\n" {
		t.Errorf("prog1's parent is makesock: makesock did not exec into prog1")
	}
}

// Under a real tcpserver on loopback, as in the pipeline: the network
// reaches prog1 on its stdin and stdout, prog2 gets only its socket (not
// the network connection) and tcpserver's environment.
func TestUnderTcpserver(t *testing.T) {
	tcpserver, err := exec.LookPath("tcpserver")
	if err != nil {
		t.Fatal("tcpserver is missing: install the Debian package ucspi-tcp")
	}
	prog2 := `fdtool fds; echo "remote $TCPREMOTEIP"; tr a-z A-Z`
	for _, opts := range [][]string{nil, {"-w"}} {
		t.Run(strings.Join(append([]string{"makesock"}, opts...), " "), func(t *testing.T) {
			args := append(append([]string{}, opts...), "fdtool", "relay", "3", sep, "sh", "-c", prog2)
			addr := startTcpserver(t, tcpserver, args)
			for i := 0; i < 3; i++ { // a fresh process tree per connection
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(20 * time.Second))
				fmt.Fprintf(c, "hello %d\n", i)
				c.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(c)
				c.Close()
				if want := fmt.Sprintf("0 1 2\nremote 127.0.0.1\nHELLO %d\n", i); err != nil || string(got) != want {
					t.Errorf("connection %d: %q (%v), want %q", i, got, err, want)
				}
			}
		})
	}
}

// startTcpserver runs tcpserver -R -H -l 0 on a free loopback port with
// makesock and args, and returns its address once it accepts.
func startTcpserver(t *testing.T, tcpserver string, args []string) string {
	t.Helper()
	for try := 0; try < 5; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().(*net.TCPAddr)
		l.Close()
		cmd := exec.Command(tcpserver, append([]string{"-R", "-H", "-l", "0", "127.0.0.1", strconv.Itoa(addr.Port), makesockBin}, args...)...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		for i := 0; i < 200; i++ {
			select {
			case <-exited:
				i = 200 // lost the port to someone else: try another
				continue
			default:
			}
			if c, err := net.Dial("tcp", addr.String()); err == nil {
				c.Close()
				return addr.String()
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("tcpserver on %v: %s", addr, errb.String())
	}
	t.Fatal("unable to start tcpserver")
	return ""
}

// A HUP or INT that makesock was started with ignored (nohup, a shell's
// background job) stays ignored for both programs, with and without -w.
func TestIgnoredSignalsStayIgnored(t *testing.T) {
	show := `grep SigIgn /proc/$$/status`
	for _, opts := range [][]string{nil, {"-w"}} {
		args := append([]string{"-c", `trap "" HUP INT; exec "$@"`, "sh", makesockBin}, opts...)
		args = append(args, "sh", "-c", show+"; cat <&3", sep, "sh", "-c", show)
		r := runProg(t, "", nil, nil, "sh", args...)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 2 {
			t.Fatalf("makesock %s: exit %d stdout %q stderr %q", opts, r.code, r.stdout, r.stderr)
		}
		for i, line := range lines {
			mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "SigIgn:")), 16, 64)
			want := uint64(1)<<(syscall.SIGHUP-1) | uint64(1)<<(syscall.SIGINT-1)
			if err != nil || mask&want != want {
				t.Errorf("makesock %s: prog%d %q: HUP and INT not both ignored", opts, i+1, line)
			}
		}
	}
}

// A nested makesock, as in the key-process pipeline: the last separator
// splits, so the inner makesock runs on prog1's side and prog1 ends up
// with the outer socket on fd 3 and the inner one on fd 4, while each
// prog2 holds only its own socket on 0 and 1.
func TestNested(t *testing.T) {
	r := runMakesock(t, "", nil, nil,
		makesockBin, "-d", "4", "sh", "-c", "fdtool fds; cat <&3; cat <&4",
		sep, "sh", "-c", "echo inner; fdtool fds",
		sep, "sh", "-c", "echo outer; fdtool fds")
	r.want(t, 0, "0 1 2 3 4\nouter\n0 1 2\ninner\n0 1 2\n")
}

// A -d past the descriptor limit is a wrong flag that parses: makesock
// exits 111 naming the step, and prog1 never runs (prog2, started
// first, sees end-of-file and exits).
func TestFdAboveLimit(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	for _, tt := range []struct {
		opts  []string
		fatal string
	}{
		{nil, "unable to move socket to fd 100: bad file descriptor"},
		{[]string{"-w"}, "unable to run sh: bad file descriptor"},
	} {
		os.Remove(marker)
		args := append([]string{"-c", `ulimit -n 64 && exec "$@"`, "sh", makesockBin}, tt.opts...)
		args = append(args, "-d", "100", "sh", "-c", "touch "+marker, sep, "cat")
		r := runProg(t, "", nil, nil, "sh", args...)
		if r.code != 111 || r.stderr != "makesock: fatal: "+tt.fatal+"\n" || r.stdout != "" {
			t.Errorf("makesock %q -d 100 under ulimit -n 64: exit %d stdout %q stderr %q, want 111 and %q", tt.opts, r.code, r.stdout, r.stderr, tt.fatal)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("makesock %q -d 100 under ulimit -n 64: prog1 ran", tt.opts)
		}
	}
}
