package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/testkit"
)

// The tests below run the built binary as a user would, as root, and look
// at the exec'd program from outside (/proc/PID) and through what it says
// (testdata/statusprog, a static binary that is never inside the jail).

var (
	sgcBin     string // setuidgid-chroot
	statusProg string // testdata/statusprog
)

func TestMain(m *testing.M) {
	tb := testkit.MainTB()
	sgcBin = testkit.Bin(tb, "setuidgid-chroot")
	statusProg = testkit.Build(tb, "./testdata/statusprog")
	os.Exit(m.Run())
}

// tool finds a program the test needs, or fails the test naming the
// Debian package that provides it.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install the Debian package %s", name, pkg)
	}
	return p
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not running as root: setuidgid-chroot must chroot and change uid")
	}
}

// account returns the uid and gid of name, creating the system account
// when it is missing (the lead's redo.do does the same).
func account(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "already exists") {
			t.Fatalf("useradd %s: %v: %s", name, err, out)
		}
		if u, err = user.Lookup(name); err != nil {
			t.Fatalf("account %s: %v", name, err)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// jail makes an empty directory the target account can traverse, with
// the given files (name -> content, all 0644 root unless listed in
// modes).
func jail(t *testing.T, files map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sgc-jail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type result struct {
	stdout, stderr string
	code           int
}

// sgc runs setuidgid-chroot with args and extra environment, to the end.
func sgc(t *testing.T, env []string, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, sgcBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("setuidgid-chroot %q: %v (stderr %q)", args, err, r.stderr)
	}
	return r
}

// live is a setuidgid-chroot run whose program is still alive ("wait"),
// so that the test can read its /proc entry.
type live struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	pid   int
	errb  *strings.Builder
}

func start(t *testing.T, env []string, args ...string) *live {
	t.Helper()
	cmd := exec.Command(sgcBin, args...)
	cmd.Env = append(os.Environ(), env...)
	l := &live{cmd: cmd, errb: &strings.Builder{}}
	cmd.Stderr = l.errb
	var err error
	if l.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guard := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() }) // hang guard
	t.Cleanup(func() { guard.Stop(); cmd.Process.Kill(); cmd.Wait() })
	line := l.line(t)
	if _, err := fmt.Sscanf(line, "pid %d", &l.pid); err != nil {
		t.Fatalf("first line %q, want pid N (stderr %q)", line, l.errb.String())
	}
	if l.pid != cmd.Process.Pid {
		t.Errorf("program runs as pid %d, setuidgid-chroot was %d: exec must keep the pid", l.pid, cmd.Process.Pid)
	}
	return l
}

func (l *live) line(t *testing.T) string {
	t.Helper()
	s, err := l.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the program's output: %v (so far %q, stderr %q)", err, s, l.errb.String())
	}
	return strings.TrimSuffix(s, "\n")
}

// finish closes the program's stdin and returns the rest of its output.
func (l *live) finish(t *testing.T) string {
	t.Helper()
	l.stdin.Close()
	rest, _ := io.ReadAll(l.out)
	if err := l.cmd.Wait(); err != nil {
		t.Fatalf("program: %v (stderr %q)", err, l.errb.String())
	}
	return string(rest)
}

// statusFile reads a /proc status file into field -> value (tabs kept).
func statusFile(t *testing.T, file string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// checkIDs asserts from outside that pid runs with all four uids and gids
// equal to uid and gid, exactly groups, no_new_privs and no capability,
// and no core file; the credentials on every thread of the program (a Go
// program: several), since setuidgid-chroot drops them on its exec'ing
// thread only and relies on exec to leave nothing else.
func checkIDs(t *testing.T, pid, uid, gid int, groups string) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) < 2 {
		t.Errorf("the program has %d thread(s): want a multithreaded program, so that every thread is checked", len(tasks))
	}
	for _, task := range tasks {
		checkCreds(t, fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()), uid, gid, groups)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(limits), "Max core file size        0                    0") {
		t.Errorf("core file size is not limited to 0:\n%s", limits)
	}
}

// checkCreds reads one /proc status file: all four Uid and Gid fields,
// Groups, NoNewPrivs and every capability set.
func checkCreds(t *testing.T, file string, uid, gid int, groups string) {
	t.Helper()
	st := statusFile(t, file)
	four := func(id int) string { s := strconv.Itoa(id); return s + "\t" + s + "\t" + s + "\t" + s }
	if st["Uid"] != four(uid) {
		t.Errorf("%s: Uid: %q, want %q", file, st["Uid"], four(uid))
	}
	if st["Gid"] != four(gid) {
		t.Errorf("%s: Gid: %q, want %q", file, st["Gid"], four(gid))
	}
	if st["Groups"] != groups {
		t.Errorf("%s: Groups: %q, want %q", file, st["Groups"], groups)
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("%s: NoNewPrivs: %q, want 1", file, st["NoNewPrivs"])
	}
	for _, c := range []string{"CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"} {
		if st[c] != "0000000000000000" {
			t.Errorf("%s: %s: %q, want none", file, c, st[c])
		}
	}
}

func TestJail(t *testing.T) {
	needRoot(t)
	uid, gid := account(t, "imaptls")
	dir := jail(t, map[string]string{"hello": "hello from the jail\n"})
	l := start(t, nil, "-/", dir, "-u", "imaptls", statusProg, "wait", "ids", "read", "/hello", "ls", "/", "read", "/proc/self/status", "read", statusProg)
	checkIDs(t, l.pid, uid, gid, strconv.Itoa(gid))
	if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", l.pid)); err != nil || root != dir {
		t.Errorf("/proc/PID/root is %q (%v), want the jail %s", root, err, dir)
	}
	out := l.finish(t)
	want := []string{
		fmt.Sprintf("ids uid=%d,%d,%d gid=%d,%d,%d groups=%d nnp=1", uid, uid, uid, gid, gid, gid, gid),
		`read /hello ok "hello from the jail\n"`,
		"ls / hello", // the jail holds no binary, yet the program runs
		"read /proc/self/status error no_such_file_or_directory",
		"read " + statusProg + " error no_such_file_or_directory", // its own path is outside
	}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("program said:\n%s\nwant:\n%s", out, strings.Join(want, "\n"))
	}
}

func TestNoJail(t *testing.T) {
	needRoot(t)
	uid, gid := account(t, "imaptls")
	// $PATH lookup, and no -/: the program sees the real root.
	r := sgc(t, []string{"PATH=/nonexistent:" + filepath.Dir(statusProg)}, "", "-u", "imaptls", "statusprog", "ids", "read", "/proc/self/status")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("ids uid=%d,%d,%d gid=%d,%d,%d groups=%d nnp=1\n", uid, uid, uid, gid, gid, gid, gid)) {
		t.Errorf("ids: %q", r.stdout)
	}
	if !strings.Contains(r.stdout, `read /proc/self/status ok`) {
		t.Errorf("without -/ the program does not see /proc: %q", r.stdout)
	}
}

func TestEnvUIDGID(t *testing.T) {
	needRoot(t)
	dir := jail(t, nil)
	env := []string{"UID=4000001", "GID=4000002", "GIDLIST=4000002,4000003"}
	l := start(t, env, "-/", dir, "-U", statusProg, "wait")
	checkIDs(t, l.pid, 4000001, 4000002, "4000002 4000003")
	l.finish(t)

	// Without $GIDLIST the groups are exactly $GID; an empty one means none.
	r := sgc(t, []string{"UID=4000001", "GID=4000002", "GIDLIST="}, "", "-U", statusProg, "ids")
	if r.code != 0 || !strings.Contains(r.stdout, "gid=4000002,4000002,4000002 groups= nnp=1") {
		t.Errorf("GIDLIST empty: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = sgc(t, []string{"UID=4000001", "GID=4000002"}, "", "-U", statusProg, "ids")
	if r.code != 0 || !strings.Contains(r.stdout, "groups=4000002 nnp=1") {
		t.Errorf("GIDLIST unset: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// TestOpenKey: a root-only file reaches the program on its descriptor,
// while the program itself cannot open that file.
func TestOpenKey(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	dir := jail(t, nil)
	key := filepath.Join(dir, "key")
	if err := os.WriteFile(key, []byte("secret key\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	// The path is relative to the starting directory, opened before the
	// chroot; fd 5 is past a gap, to show the exact number is kept.
	cwd := filepath.Dir(dir)
	r := sgc(t, nil, cwd, "-/", dir, "-u", "imaptls", "-o", "5:"+filepath.Base(dir)+"/key", "-o", "3:/dev/null",
		statusProg, "fd", "5", "read", "/key", "fd", "4", "fd", "3")
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := `fd 5 ok "secret key\n"` + "\n" +
		"read /key error permission_denied\n" +
		"fd 4 error bad_file_descriptor\n" + // nothing else leaks: not prog's own descriptor
		`fd 3 ok ""` + "\n"
	if r.stdout != want {
		t.Errorf("program said:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// TestSetuidInJail: a setuid-root binary inside the jail does not give
// root back. The control run (daemontools setuidgid, without
// no_new_privs) shows the jail's filesystem honours setuid bits, so the
// test would catch a setuidgid-chroot that forgot no_new_privs.
func TestSetuidInJail(t *testing.T) {
	needRoot(t)
	uid, _ := account(t, "imaptls")
	setuidgid := tool(t, "setuidgid", "daemontools")
	dir := jail(t, nil)
	b, err := os.ReadFile(statusProg)
	if err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(dir, "suid")
	if err := os.WriteFile(suid, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(suid, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	ctl, err := exec.Command(setuidgid, "imaptls", suid, "ids").Output()
	if err != nil {
		t.Fatalf("control run: %v", err)
	}
	if !strings.HasPrefix(string(ctl), fmt.Sprintf("ids uid=%d,0,0 ", uid)) {
		t.Fatalf("control run without no_new_privs did not get euid 0 (%q): the jail's filesystem ignores setuid, so this test proves nothing", ctl)
	}
	r := sgc(t, nil, "", "-/", dir, "-u", "imaptls", statusProg, "exec", "/suid", "ids")
	want := fmt.Sprintf("ids uid=%d,%d,%d ", uid, uid, uid)
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("setuid binary in the jail: exit %d, %q (stderr %q), want %q...", r.code, r.stdout, r.stderr, want)
	}
}

func pidMax(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRangeUIDs: -r gives uid = gid = base + pid, so two live runs get
// two uids.
func TestRangeUIDs(t *testing.T) {
	needRoot(t)
	const base = 2000000000
	spec := fmt.Sprintf("%d:%d", base, max(pidMax(t), 4194304))
	dir := jail(t, nil)
	var ls []*live
	for range 2 {
		ls = append(ls, start(t, nil, "-/", dir, "-r", spec, statusProg, "wait"))
	}
	uids := map[int]bool{}
	for _, l := range ls {
		id := base + l.pid
		checkIDs(t, l.pid, id, id, strconv.Itoa(id))
		uids[id] = true
	}
	if len(uids) != 2 {
		t.Errorf("two live runs share a uid: %v", uids)
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() { defer wg.Done(); l.stdin.Close() }()
	}
	wg.Wait()
	for _, l := range ls {
		l.finish(t)
	}
}

func TestExitCodes(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	dir := jail(t, nil)
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755)
	rootOnly := filepath.Join(dir, "rootonly")
	b, _ := os.ReadFile(statusProg)
	os.WriteFile(rootOnly, b, 0o700)
	pm := pidMax(t)
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		msg  string
	}{
		{"no args", nil, nil, 100, "usage: setuidgid-chroot [ -/ dir ] ( -u account | -U | -r base:count ) [ -o fd:path ]... [ -c fd:address ]... [ -s fd:socket ]... [ -l fd:socket ]... prog [ arg ... ]"},
		{"no drop", nil, []string{statusProg}, 100, "fatal: one of -u, -U or -r is required"},
		{"no prog", nil, []string{"-u", "imaptls"}, 100, "fatal: no program to run"},
		{"unknown option", nil, []string{"-x", "-u", "imaptls", statusProg}, 100, "fatal: unknown option -x\n"},
		{"two targets", nil, []string{"-u", "imaptls", "-U", statusProg}, 100, "exclude each other"},
		{"unknown account", nil, []string{"-u", "nosuchaccount", statusProg}, 100, "fatal: unknown account nosuchaccount"},
		{"root account", nil, []string{"-u", "root", statusProg}, 100, "fatal: account root has uid 0: refusing to run as root"},
		{"-U uid 0", []string{"UID=0", "GID=5"}, []string{"-U", statusProg}, 100, "fatal: $UID/$GID has uid 0"},
		{"-U gid 0", []string{"UID=5", "GID=0"}, []string{"-U", statusProg}, 100, "fatal: $UID/$GID has gid 0"},
		{"-U group 0", []string{"UID=5", "GID=5", "GIDLIST=5,0"}, []string{"-U", statusProg}, 100, "has group 0"},
		{"-U no UID", []string{"UID=", "GID=5"}, []string{"-U", statusProg}, 100, "fatal: -U: $UID is not"},
		{"-o fd 1", nil, []string{"-u", "imaptls", "-o", "1:/etc/hostname", statusProg}, 100, `fatal: bad value for -o: "1:/etc/hostname" (fd 1 is not a descriptor number from 3 to 1048575: 0, 1 and 2 are the connection and the log)`},
		{"-o bad", nil, []string{"-u", "imaptls", "-o", "key", statusProg}, 100, `fatal: bad value for -o: "key" (not fd:path)`},
		{"-o twice", nil, []string{"-u", "imaptls", "-o", "3:a", "-o", "3:b", statusProg}, 100, "twice"},
		{"-o missing", nil, []string{"-u", "imaptls", "-o", "3:/nonexistent/key", statusProg}, 111, "fatal: unable to open /nonexistent/key: file does not exist"},
		{"-o too high", nil, []string{"-u", "imaptls", "-o", "99999999:/dev/null", statusProg}, 100, `fatal: bad value for -o: "99999999:/dev/null" (fd 99999999 is not a descriptor number from 3 to 1048575)`},
		{"-o above the limit", nil, []string{"-u", "imaptls", "-o", "1048575:/dev/null", statusProg}, 111, "fatal: unable to open /dev/null on fd 1048575: bad file descriptor"},
		{"missing prog", []string{"PATH=/nonexistent:/bin"}, []string{"-u", "imaptls", "nosuchprog"}, 111, "fatal: unable to run nosuchprog: file does not exist"},
		{"missing prog path", nil, []string{"-u", "imaptls", "/nonexistent/prog"}, 111, "fatal: unable to run /nonexistent/prog: file does not exist"},
		{"script", nil, []string{"-u", "imaptls", script}, 100, "fatal: unable to run " + script + ": it is a script, and only a binary can run from a descriptor\n"},
		{"not executable by target", nil, []string{"-u", "imaptls", rootOnly}, 111, "fatal: unable to run " + rootOnly + ": permission denied"},
		{"missing jail", nil, []string{"-/", "/nonexistent-jail", "-u", "imaptls", statusProg}, 111, "fatal: unable to chroot to /nonexistent-jail: file does not exist"},
		{"jail is a file", nil, []string{"-/", script, "-u", "imaptls", statusProg}, 111, "fatal: unable to chroot to " + script + ": not a directory"},
		{"-r malformed", nil, []string{"-r", "2000000000", statusProg}, 100, `fatal: bad value for -r: "2000000000" (not base:count)`},
		{"-r count small", nil, []string{"-r", fmt.Sprintf("2000000000:%d", pm-1), statusProg}, 100, "below kernel.pid_max"},
		{"-r base 0", nil, []string{"-r", "0:4194304", statusProg}, 100, "start at 1"},
		{"-r overflow", nil, []string{"-r", "4294000000:4194304", statusProg}, 100, "goes past uid 4294967294"},
		{"-r nobody", nil, []string{"-r", "60000:4194304", statusProg}, 100, "includes uid 65534"},
	}
	for _, tc := range tests {
		r := sgc(t, tc.env, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, "setuidgid-chroot: ") || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.name, r.code, r.stderr, tc.code, tc.msg)
		}
		if r.stdout != "" {
			t.Errorf("%s: the program ran: %q", tc.name, r.stdout)
		}
	}
}

// The per-exec cost: go test -run '^$' -bench . ./setuidgid-chroot/
func BenchmarkPlainExec(b *testing.B) {
	for b.Loop() {
		if err := exec.Command(statusProg).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSetuidgidChroot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("not running as root")
	}
	dir, _ := os.MkdirTemp("", "sgc-jail-")
	defer os.RemoveAll(dir)
	for b.Loop() {
		if err := exec.Command(sgcBin, "-u", "imaptls", "-/", dir, statusProg).Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNofileKept: the Go runtime raises its own soft RLIMIT_NOFILE; prog
// must get the soft limit setuidgid-chroot was started with (an
// administrator's softlimit -o), and -o beyond it fails.
func TestNofileKept(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	out, err := exec.Command("/bin/sh", "-c", `ulimit -Sn 77 && ulimit -Hn 4096 && exec "$0" -u imaptls /bin/sh -c 'ulimit -Sn; ulimit -Hn'`, sgcBin).CombinedOutput()
	if err != nil || string(out) != "77\n4096\n" {
		t.Errorf("prog's nofile limits: %q (%v), want 77 and 4096", out, err)
	}
	out, err = exec.Command("/bin/sh", "-c", `ulimit -Sn 77 && ulimit -Hn 4096 && exec "$0" -u imaptls -o 80:/dev/null /bin/true`, sgcBin).CombinedOutput()
	if code := exitCode(err); code != 111 || !strings.Contains(string(out), "unable to open /dev/null on fd 80: bad file descriptor") {
		t.Errorf("-o past the soft limit: exit %d, %q", code, out)
	}
}

// TestOpenReplacesInherited: -o on a descriptor the caller passed in
// replaces it, as a shell's 3<file would.
func TestOpenReplacesInherited(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	dir := jail(t, map[string]string{"file": "from -o\n"})
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	pw.WriteString("from the pipe\n")
	pw.Close()
	cmd := exec.Command(sgcBin, "-u", "imaptls", "-o", "3:"+filepath.Join(dir, "file"), statusProg, "fd", "3")
	cmd.ExtraFiles = []*os.File{pr}
	out, err := cmd.Output()
	if err != nil || string(out) != `fd 3 ok "from -o\n"`+"\n" {
		t.Errorf("got %q (%v), want the file's content on fd 3", out, err)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestOpenRuntimeFD: with a non-blocking stdin the Go runtime starts its
// poller before main, on the lowest free descriptors (3 and 4 here); an
// -o on one of them is refused, not pulled from under the runtime, while
// a free number still works.
func TestOpenRuntimeFD(t *testing.T) {
	needRoot(t)
	account(t, "imaptls")
	var in [2]int
	if err := syscall.Pipe2(in[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(in[0])
	defer syscall.Close(in[1])
	run := func(args ...string) (int, string) {
		er, ew, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer er.Close()
		// syscall.ForkExec, not os/exec: os/exec would make stdin blocking.
		pid, err := syscall.ForkExec(sgcBin, append([]string{sgcBin}, args...), &syscall.ProcAttr{
			Env:   os.Environ(),
			Files: []uintptr{uintptr(in[0]), ew.Fd(), ew.Fd()},
		})
		ew.Close()
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(er)
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
			t.Fatal(err)
		}
		return ws.ExitStatus(), string(msg)
	}
	code, msg := run("-u", "imaptls", "-o", "3:/dev/null", statusProg)
	if code != 111 || msg != "setuidgid-chroot: fatal: unable to open /dev/null on fd 3: descriptor in use by setuidgid-chroot itself\n" {
		t.Errorf("-o 3 over the runtime's poller: exit %d, %q", code, msg)
	}
	code, msg = run("-u", "imaptls", "-o", "9:/dev/null", statusProg, "fd", "9")
	if code != 0 || msg != `fd 9 ok ""`+"\n" {
		t.Errorf("-o 9: exit %d, %q", code, msg)
	}
}

// TestPartialDrop: when a drop step fails half-way (root without
// CAP_SETUID or CAP_SETGID, taken away from the bounding set by setpriv),
// setuidgid-chroot exits 111 naming the step, and prog never runs.
func TestPartialDrop(t *testing.T) {
	needRoot(t)
	uid, gid := account(t, "imaptls")
	setpriv := tool(t, "setpriv", "util-linux")
	tests := []struct {
		cap, msg string
	}{
		{"-setuid", fmt.Sprintf("setuidgid-chroot: fatal: unable to set uid to %d: operation not permitted\n", uid)},
		{"-setgid", fmt.Sprintf("setuidgid-chroot: fatal: unable to set groups to %d: operation not permitted\n", gid)},
	}
	for _, tc := range tests {
		cmd := exec.Command(setpriv, "--bounding-set", tc.cap, sgcBin, "-u", "imaptls", statusProg, "ids")
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if code := exitCode(err); code != 111 || errb.String() != tc.msg || out.String() != "" {
			t.Errorf("bounding set %s: exit %d, stdout %q, stderr %q; want 111, nothing, %q", tc.cap, code, out.String(), errb.String(), tc.msg)
		}
	}
}

// TestAccountFiles: the account database as it may be found, in a
// private mount namespace: missing (111), malformed (100, for -u and for
// -r's /etc/group) and endless (a line that never ends: /dev/zero, cut
// off at 64 MB, 111). prog never runs.
func TestAccountFiles(t *testing.T) {
	needRoot(t)
	unshare := tool(t, "unshare", "util-linux")
	bad := filepath.Join(jail(t, map[string]string{"bad": "no colons here\n"}), "bad")
	spec := fmt.Sprintf("2000000000:%d", max(pidMax(t), 4194304))
	for _, tc := range []struct {
		name, mount string
		args        []string
		code        int
		msg         string
	}{
		{"missing", "mount -t tmpfs none /etc", []string{"-u", "imaptls"}, 111, "unable to read /etc/passwd: file does not exist"},
		{"malformed passwd", "mount --bind " + bad + " /etc/passwd", []string{"-u", "imaptls"}, 100, "malformed line 1 in /etc/passwd"},
		{"malformed group", "mount --bind " + bad + " /etc/group", []string{"-r", spec}, 100, "malformed line 1 in /etc/group"},
		{"endless", "mount --bind /dev/zero /etc/passwd", []string{"-u", "imaptls"}, 111, "unable to read /etc/passwd: file is larger than 64 MB"},
	} {
		args := append([]string{"-m", "sh", "-c", tc.mount + ` && exec "$@"`, "sh", sgcBin}, tc.args...)
		cmd := exec.Command(unshare, append(args, statusProg, "ids")...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		want := "setuidgid-chroot: fatal: " + tc.msg + "\n"
		if code := exitCode(err); code != tc.code || errb.String() != want || out.String() != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %d, nothing, %q", tc.name, code, out.String(), errb.String(), tc.code, want)
		}
	}
}

// TestSignerUnreachable: -s with nothing to connect to (after its 2 s of
// retries) warns in one line that names the socket by its absolute
// path, what to check, and the client; then the program runs as before
// (the drop, no_new_privs), with that descriptor closed and the reason,
// without the client, in $FD4_ERROR, so that it can tell its client.
// A stale $FD4_ERROR is gone when -s connects.
func TestSignerUnreachable(t *testing.T) {
	needRoot(t)
	n, _ := account(t, "imaptls")
	uid := strconv.Itoa(n)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=4711", "FD4_ERROR=stale"}
	// statusprog's runtime holds fds 3 and 4 itself: a shell looks at
	// fd 4 (the exec closes the runtime's).
	sh := `if [ -e /proc/self/fd/4 ]; then echo fd 4 open; else echo fd 4 closed; fi; echo "FD4_ERROR=$FD4_ERROR"`
	r := sgc(t, env, dir, "-u", "imaptls", "-s", "4:./signer/socket", statusProg, "ids", "exec", "/bin/sh", "-c", sh)
	want := "setuidgid-chroot: warning: unable to reach the signer at " + dir + "/signer/socket: file does not exist (is the signer service linked and up?); remote=192.0.2.7:4711\n"
	envWant := "\nfd 4 closed\nFD4_ERROR=unable to reach the signer at " + dir + "/signer/socket: file does not exist (is the signer service linked and up?)\n"
	if r.code != 0 || r.stderr != want || !strings.HasPrefix(r.stdout, "ids uid="+uid+","+uid+","+uid+" ") ||
		!strings.Contains(r.stdout, " nnp=1\n") || !strings.HasSuffix(r.stdout, envWant) {
		t.Errorf("exit %d stdout %q stderr %q, want 0, the drop, fd 4 closed, %q and %q", r.code, r.stdout, r.stderr, envWant, want)
	}

	// Connected: no warning, and no $FD4_ERROR at all.
	if err := os.Mkdir(filepath.Join(dir, "signer"), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "signer", "socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r = sgc(t, env, dir, "-u", "imaptls", "-s", "4:./signer/socket", statusProg, "read", "/proc/self/environ")
	if r.code != 0 || r.stderr != "" || strings.Contains(r.stdout, "FD4_ERROR") {
		t.Errorf("connected: exit %d stdout %q stderr %q, want 0, no line, no FD4_ERROR", r.code, r.stdout, r.stderr)
	}
}

// TestServerConnect: -c fd:address, the server's connect of the chain
// (makesock -c's, package internal/sockaddr): a unix socket, TCP over
// IPv4 and IPv6 each land on fd, blocking, as root before the drop, and
// carry bytes both ways; a server that closes at once gives prog an end
// of file on fd, no warning. Refused and unreachable: one warning that
// names the address, the reason and the client, fd closed, the reason
// in $FD3_ERROR, and the drop and the exec exactly as always. A stale
// $FD3_ERROR is gone when -c connects.
func TestServerConnect(t *testing.T) {
	needRoot(t)
	n, _ := account(t, "imaptls")
	uid := strconv.Itoa(n)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"TCPREMOTEIP=192.0.2.7", "TCPREMOTEPORT=4711", "FD3_ERROR=stale"}
	// The shell reads the server's line from fd 3 and answers on it;
	// statusprog's runtime holds fds 3 and 4 itself, so a shell looks.
	sh := `read -r l <&3; echo "got $l"; echo pong >&3; echo "[$FD3_ERROR]"; grep flags /proc/self/fdinfo/3`
	serve := func(network, addr string, say bool) string {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Skipf("%s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if say {
					c.Write([]byte("ping\n"))
					b := make([]byte, 16)
					c.Read(b)
				}
				c.Close()
			}
		}()
		if network == "unix" {
			return addr
		}
		return ln.Addr().String()
	}
	for _, tc := range []struct{ network, addr string }{
		{"unix", dir + "/server.sock"},
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		addr := serve(tc.network, tc.addr, true)
		r := sgc(t, env, dir, "-u", "imaptls", "-c", "3:"+addr, statusProg, "ids", "exec", "/bin/sh", "-c", sh)
		// flags 02: O_RDWR alone, neither O_NONBLOCK nor O_CLOEXEC.
		if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "ids uid="+uid+","+uid+","+uid+" ") ||
			!strings.HasSuffix(r.stdout, "\ngot ping\n[]\nflags:\t02\n") {
			t.Errorf("%s: exit %d stdout %q stderr %q, want 0, the drop, the server's ping, no FD3_ERROR", tc.network, r.code, r.stdout, r.stderr)
		}
	}

	// A server that accepts and closes at once: prog reads an end of
	// file on fd 3; for this tool that is a connect that worked.
	closes := serve("tcp4", "127.0.0.1:0", false)
	r := sgc(t, nil, dir, "-u", "imaptls", "-c", "3:"+closes, statusProg, "ids", "exec", "/bin/sh", "-c", `cat <&3; echo "eof [$FD3_ERROR]"`)
	if r.code != 0 || r.stderr != "" || !strings.HasSuffix(r.stdout, "\neof []\n") {
		t.Errorf("closes at once: exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}

	// Refused: a port bound and closed again.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	fd3 := `if [ -e /proc/self/fd/3 ]; then echo fd 3 open; else echo fd 3 closed; fi; echo "FD3_ERROR=$FD3_ERROR"`
	for _, tc := range []struct{ addr, why string }{
		{down, "connection refused"},
		{dir + "/none.sock", "file does not exist"},
	} {
		r := sgc(t, env, dir, "-u", "imaptls", "-c", "3:"+tc.addr, statusProg, "ids", "exec", "/bin/sh", "-c", fd3)
		why := "unable to connect to " + tc.addr + ": " + tc.why
		want := "setuidgid-chroot: warning: " + why + "; remote=192.0.2.7:4711\n"
		if r.code != 0 || r.stderr != want || !strings.HasPrefix(r.stdout, "ids uid="+uid+","+uid+","+uid+" ") ||
			!strings.Contains(r.stdout, " nnp=1\n") || !strings.HasSuffix(r.stdout, "\nfd 3 closed\nFD3_ERROR="+why+"\n") {
			t.Errorf("%s: exit %d stdout %q stderr %q, want 0, the drop, fd 3 closed, FD3_ERROR and %q", tc.addr, r.code, r.stdout, r.stderr, want)
		}
	}

	// Unreachable: a TEST-NET address in a network namespace with no
	// route; the connect gives up at once (no route), never hangs.
	unshare := tool(t, "unshare", "util-linux")
	cmd := exec.Command(unshare, "-n", sgcBin, "-u", "imaptls", "-c", "3:192.0.2.1:143", "/bin/sh", "-c", `echo "$FD3_ERROR"`)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || !strings.HasPrefix(errb.String(), "setuidgid-chroot: warning: unable to connect to 192.0.2.1:143: ") ||
		!strings.HasPrefix(out.String(), "unable to connect to 192.0.2.1:143: ") {
		t.Errorf("unreachable: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
}
