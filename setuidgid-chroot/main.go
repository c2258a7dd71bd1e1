// Command setuidgid-chroot opens what must be opened while privileged,
// chroots, drops to an unprivileged uid, gid and groups with no way back,
// and execs the next program from a descriptor, so the jail can be empty.
//
//	setuidgid-chroot [ -/ dir ] ( -u account | -U | -r base:count ) [ -o fd:path ]... [ -c fd:address ]... [ -s fd:socket ]... [ -l fd:socket ]... prog [ arg ... ]
//
// See README.md for the whole story.
//
// The go:debug lines keep the runtime from holding descriptors of its own
// that -o could have to land on: since Go 1.25 it keeps the cgroup
// CPU-limit files open (fds 3 and 4 in a fresh process) to update
// GOMAXPROCS. This tool lives for a few microseconds and needs none of it.

//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"imap-tls/internal/opt"
	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

const synopsis = "[ -/ dir ] ( -u account | -U | -r base:count ) [ -o fd:path ]... [ -c fd:address ]... [ -s fd:socket ]... [ -l fd:socket ]... prog [ arg ... ]"

// One thread does every step that acts on credentials, and the exec: see
// drop. The tool runs from init, not from main: the runtime runs every
// init on the process's main thread (the thread group leader), with the
// main goroutine locked to it, and unlocks it only before main.main
// (runtime.main). So the whole drop and the exec happen on that one
// thread, and the exec has no leader to take over, without
// runtime.LockOSThread, which starts the runtime's template thread: one
// more thread per run, about 28k instructions and a few page faults
// (tests/bench/startcost.md). execFD checks that it is still the thread
// that dropped the credentials, and refuses to exec otherwise.
func init() {
	if testBinary {
		return // go test: the tests call the functions themselves
	}
	l := log.New("setuidgid-chroot")
	l.Exit(run(os.Args[1:]))
}

// testBinary is set by a variable's initializer in the tests, which runs
// before any init function: the test binary must not run the tool.
var testBinary bool

// main is never reached: init has exec'd prog or exited.
func main() {}

// openSpec is one -o, -c, -s or -l fd:path (kind is the option's
// letter: kindOpen, kindServer, kindConnect, kindListen); addr is -c's
// address, parsed.
type openSpec struct {
	fd   int
	path string
	kind byte
	addr *sockaddr.Address
}

type config struct {
	root    string // -/ dir, "" for none
	account string // -u
	env     bool   // -U
	rng     *idRange
	opens   []openSpec
	argv    []string // prog and its arguments
}

// addOpen is -o, -c, -s or -l fd:path (kind is the option's letter): fd is
// 3 or more, since 0, 1 and 2 are the network (under tcpserver) and the
// log: a key file there would cut the connection or swallow every later
// message.
func (c *config) addOpen(kind byte) func(string) error {
	return func(s string) error {
		f, p, ok := strings.Cut(s, ":")
		if !ok || p == "" {
			return errors.New("not fd:path")
		}
		var fd int
		if err := opt.FD(3, &fd)(f); err != nil {
			if n, e := strconv.Atoi(f); e == nil && n >= 0 && n < 3 {
				return fmt.Errorf("fd %s is %s: 0, 1 and 2 are the connection and the log", f, err.Error())
			}
			return fmt.Errorf("fd %s is %s", f, err.Error())
		}
		for _, e := range c.opens {
			if e.fd == fd {
				return fmt.Errorf("-o, -c, -s and -l name fd %d twice", fd)
			}
		}
		o := openSpec{fd: fd, path: p, kind: kind}
		if kind == kindServer {
			a, err := sockaddr.Parse(p)
			if err != nil {
				return err
			}
			o.addr = a
		}
		c.opens = append(c.opens, o)
		return nil
	}
}

// parseArgs reads the options; it does no system call.
func parseArgs(args []string) (*config, error) {
	c := &config{}
	set := opt.New(synopsis)
	set.String('/', &c.root)
	set.String('u', &c.account)
	set.Flag('U', &c.env)
	set.Func('r', func(v string) error {
		r, err := parseRange(v)
		if err != nil {
			return err
		}
		c.rng = &r
		return nil
	})
	set.Func('o', c.addOpen(kindOpen))
	set.Func('c', c.addOpen(kindServer))
	set.Func('s', c.addOpen(kindConnect))
	set.Func('l', c.addOpen(kindListen))
	argv, err := set.Parse(args)
	if err != nil {
		return nil, err
	}
	c.argv = argv
	n := 0
	for _, given := range []bool{c.account != "", c.env, c.rng != nil} {
		if given {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, set.Usage("one of -u, -U or -r is required: this tool always drops privilege")
	case n > 1:
		return nil, set.Usage("-u, -U and -r exclude each other")
	case len(c.argv) == 0 || c.argv[0] == "":
		return nil, set.Usage("no program to run")
	}
	return c, nil
}

// run does the steps of README.md in their order; it returns only on
// failure, since on success the process has become prog.
func run(args []string) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	restoreNofile()

	// 1. The target, looked up before any chroot.
	t, err := findTarget(c)
	if err != nil {
		return err
	}

	// 2. -o, -c, -s, -l: each file or socket onto exactly its
	// descriptor, while privileged. A -c or -s that cannot connect
	// leaves its descriptor closed and says why in $FDn_ERROR (sock.go);
	// a stale value from our own environment is no failure of this run.
	for _, o := range c.opens {
		if o.kind == kindServer || o.kind == kindConnect {
			if _, ok := os.LookupEnv(sockaddr.ErrorVar(o.fd)); ok {
				os.Unsetenv(sockaddr.ErrorVar(o.fd))
			}
		}
	}
	for _, o := range c.opens {
		if err := openOnto(o); err != nil {
			return err
		}
	}

	// 3. prog, found in $PATH and opened, so the jail needs no binary.
	progFD, err := openProg(c.argv[0])
	if err != nil {
		return err
	}

	// 4. The jail.
	if c.root != "" {
		if err := unix.Chdir(c.root); err != nil {
			return log.Temp(err, "chroot to %s", c.root)
		}
		if err := unix.Chroot("."); err != nil {
			return log.Temp(err, "chroot to %s", c.root)
		}
		if err := unix.Chdir("/"); err != nil {
			return log.Temp(err, "chdir to / in %s", c.root)
		}
	}

	// 5. No core file, ever (a core of the TLS proxy would hold session
	// keys); an empty capability bounding set; then groups, gid, uid; no
	// capability left; then no way back. From the bounding set on, every
	// step acts on this thread only (see drop), and a failure returns
	// straight to main, which prints one line and exits: nothing else runs
	// half-dropped.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return log.Temp(err, "set core size limit to 0")
	}
	dropper := unix.Gettid()
	if err := dropBounding(); err != nil {
		return err
	}
	if err := drop(t); err != nil {
		return err
	}
	if err := clearCaps(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return log.Temp(err, "set no_new_privs")
	}

	// 6. Exec from the descriptor, environment unchanged, on the thread
	// that dropped the credentials.
	return execFD(progFD, c.argv, dropper)
}

func findTarget(c *config) (target, error) {
	var t target
	var who string
	switch {
	case c.account != "":
		passwd, err := readDB("/etc/passwd", 7)
		if err != nil {
			return t, err
		}
		var ok bool
		if t, ok = accountTarget(passwd, c.account); !ok {
			return t, log.Config(nil, "unknown account %s", c.account)
		}
		who = "account " + c.account
	case c.env:
		var err error
		if t, err = envTarget(os.LookupEnv); err != nil {
			return t, log.Config(nil, "-U: %s", err.Error())
		}
		who = "$UID/$GID"
	default:
		b, err := readFile("/proc/sys/kernel/pid_max")
		if err != nil {
			return t, log.Temp(err, "read /proc/sys/kernel/pid_max")
		}
		pidMax, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return t, log.Temp(err, "read /proc/sys/kernel/pid_max")
		}
		passwd, err := readDB("/etc/passwd", 7)
		if err != nil {
			return t, err
		}
		group, err := readDB("/etc/group", 4)
		if err != nil {
			return t, err
		}
		if err := c.rng.check(pidMax, passwd, group); err != nil {
			return t, log.Config(nil, "%s", err.Error())
		}
		if t, err = c.rng.target(uint64(unix.Getpid())); err != nil {
			return t, log.Temp(err, "pick a uid")
		}
		who = "-r range"
	}
	if err := t.refuseRoot(who); err != nil {
		return t, log.Config(nil, "%s", err.Error())
	}
	return t, nil
}

func readDB(file string, fields int) ([]entry, error) {
	b, err := readFile(file)
	if err != nil {
		return nil, log.Temp(err, "read %s", file)
	}
	e, err := parseDB(b, file, fields)
	if err != nil {
		return nil, log.Config(nil, "%s", err.Error())
	}
	return e, nil
}

// restoreNofile undoes the Go runtime's one change to the process: at
// start it raises the soft RLIMIT_NOFILE to the hard limit, and puts the
// original back only for children it starts itself (os/exec, and
// syscall.Exec). Our execveat would otherwise hand prog the raised limit,
// silently undoing an administrator's softlimit -o. syscall.Exec restores
// the original before it calls execve; an empty path makes execve fail at
// once with ENOENT, and the original soft limit stays in place for every
// step that follows.
func restoreNofile() {
	syscall.Exec("", nil, nil)
}

// readFile reads a small file with bare system calls. The os package would
// start the runtime's network poller, whose descriptors could then sit on a
// number that -o must fill.
func readFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// 4 KiB holds /etc/passwd on most machines in one read; a larger
	// buffer would cost this short-lived process page faults, not reads.
	// The reads go straight into the result: a buffer on the stack made
	// the runtime grow (copy) the goroutine's stack on every run.
	out := make([]byte, 0, 4<<10)
	for {
		if len(out) == cap(out) {
			out = slices.Grow(out, len(out))
		}
		n, err := unix.Read(fd, out[len(out):cap(out)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = out[:len(out)+n]
		if len(out) > 64<<20 {
			return nil, errors.New("file is larger than 64 MB")
		}
	}
}

// openOnto opens o.path read-only and leaves it on exactly o.fd, open
// across exec. A descriptor we inherited on that number is replaced, as a
// shell's 3<file would; one that this process opened itself (close-on-exec:
// every inherited descriptor lacks that flag, or it would not have
// survived our own exec) is refused rather than pulled from under the
// runtime.
func openOnto(o openSpec) error {
	var fd int
	var err error
	switch o.kind {
	case kindServer:
		if fd, err = sockaddr.Dial(o.addr, sockaddr.Timeout); err != nil {
			serverDown(o, err)
			return nil
		}
	case kindConnect:
		if fd, err = connectUnix(o.path); err != nil {
			signerDown(o, err)
			return nil
		}
	case kindListen:
		if fd, err = listenUnix(o.path); err != nil {
			return log.Temp(err, "listen on %s", o.path)
		}
	default:
		if fd, err = unix.Open(o.path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0); err != nil {
			return log.Temp(err, "open %s", o.path)
		}
	}
	if fd == o.fd {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return log.Temp(err, "open %s on fd %d", o.path, o.fd)
		}
		return nil
	}
	defer unix.Close(fd)
	if flags, err := unix.FcntlInt(uintptr(o.fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC != 0 {
		return log.Temp(errors.New("descriptor in use by setuidgid-chroot itself"), "open %s on fd %d", o.path, o.fd)
	}
	if err := unix.Dup3(fd, o.fd, 0); err != nil {
		return log.Temp(err, "open %s on fd %d", o.path, o.fd)
	}
	return nil
}

// findProg is execvp's search: a name with a slash is used as it is,
// otherwise the first regular file with an execute bit in $PATH.
func findProg(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var firstErr error = unix.ENOENT
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			if err != unix.ENOENT && err != unix.ENOTDIR && firstErr == unix.ENOENT {
				firstErr = err
			}
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return p, nil
		}
		if firstErr == unix.ENOENT {
			firstErr = unix.EACCES
		}
	}
	return "", firstErr
}

// errScript says why prog cannot run (see openProg).
var errScript = errors.New("it is a script, and only a binary can run from a descriptor")

// openProg opens prog for execveat. The descriptor is close-on-exec, so it
// does not leak into prog; the price is that the kernel cannot hand a
// script its own path (/dev/fd/N would be closed by then), so a script
// fails with ENOENT: refuse it here with a message that says why.
func openProg(name string) (int, error) {
	path, ok := os.LookupEnv("PATH")
	if !ok {
		path = "/bin:/usr/bin"
	}
	p, err := findProg(name, path)
	if err != nil {
		return -1, log.Temp(err, "run %s", name)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, log.Temp(err, "run %s", p)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, log.Temp(err, "run %s", p)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, log.Temp(unix.EACCES, "run %s", p)
	}
	magic := make([]byte, 2)
	if n, _ := unix.Pread(fd, magic, 0); n == 2 && string(magic) == "#!" {
		return -1, log.Perm(errScript, "run %s", p)
	}
	return fd, nil
}

// drop sets groups, gid, uid, in that order, on this thread only, then
// checks on this thread that real, effective and saved uid and gid and the
// group list are exactly the target's (the filesystem ids follow the
// effective ones).
//
// Why one thread is enough. In Linux, credentials belong to a thread, not
// to the process: the setgroups, setresgid and setresuid system calls
// change only the calling thread's (glibc's "setxid broadcast" and Go's
// syscall.Setgroups/Setresgid/Setresuid, through AllThreadsSyscall,
// repeat them on every thread by signalling each one and spinning until
// each has switched: 0.25 to 0.35 ms of wall time and 0.4 to 0.7 ms of
// CPU per run here, more under load; README.md has the figures). So are
// the capability sets (capset with pid 0, PR_CAPBSET_DROP) and
// no_new_privs (PR_SET_NO_NEW_PRIVS, a task flag). execve from a
// multithreaded process kills every other thread (de_thread) and builds
// the new program's credentials from the calling thread's alone
// (prepare_exec_creds copies current->cred), with that thread's
// no_new_privs. What the threads share, and we change once for all,
// is per-process: the root and working directory (fs_struct: the runtime
// clones its threads with CLONE_FS), the descriptor table and the
// resource limits (RLIMIT_CORE).
//
// The goroutine that does all of it is locked to the main thread from
// init, and execs from there (execFD), so the exec'd program starts as
// one thread with exactly the dropped credentials: the tests read them
// from /proc for every thread of the running program. The runtime's
// other threads keep root's credentials until the exec kills them, but
// they run only the runtime (scheduler, sysmon, GC) and never our code.
// The calls are raw (no scheduler hand-off): none of them can block.
func drop(t target) error {
	groups := t.groups
	var gp unsafe.Pointer
	if len(groups) > 0 {
		gp = unsafe.Pointer(&groups[0])
	}
	if _, _, e := unix.RawSyscall(sysSetgroups, uintptr(len(groups)), uintptr(gp), 0); e != 0 {
		return log.Temp(e, "set groups to %s", joinIDs(t.groups))
	}
	runtime.KeepAlive(groups)
	if _, _, e := unix.RawSyscall(sysSetresgid, uintptr(t.gid), uintptr(t.gid), uintptr(t.gid)); e != 0 {
		return log.Temp(e, "set gid to %d", t.gid)
	}
	if _, _, e := unix.RawSyscall(sysSetresuid, uintptr(t.uid), uintptr(t.uid), uintptr(t.uid)); e != 0 {
		return log.Temp(e, "set uid to %d", t.uid)
	}
	r, e, s := unix.Getresuid()
	if r != int(t.uid) || e != int(t.uid) || s != int(t.uid) {
		return log.Temp(unix.EPERM, "set uid to %d", t.uid)
	}
	r, e, s = unix.Getresgid()
	if r != int(t.gid) || e != int(t.gid) || s != int(t.gid) {
		return log.Temp(unix.EPERM, "set gid to %d", t.gid)
	}
	got, err := unix.Getgroups()
	if err != nil {
		return log.Temp(err, "set groups to %s", joinIDs(t.groups))
	}
	if !sameGroups(got, groups) {
		return log.Temp(unix.EPERM, "set groups to %s", joinIDs(t.groups))
	}
	return nil
}

// sameGroups: the kernel keeps the group list sorted, so compare sorted.
func sameGroups(got []int, want []uint32) bool {
	if len(got) != len(want) {
		return false
	}
	a := make([]uint32, len(got))
	for i, g := range got {
		a[i] = uint32(g)
	}
	b := slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// dropBounding empties the capability bounding set of this thread (the
// one that execs, so prog inherits it), while root still holds
// CAP_SETPCAP: should anything ever hand prog uid 0 again, it still gets
// no capability.
func dropBounding() error {
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			return nil // past the kernel's last capability
		}
		if err != nil {
			return log.Temp(err, "drop capability %d from the bounding set", c)
		}
	}
	return nil
}

// clearCaps empties the effective, permitted and inheritable sets (the
// uid change has already emptied effective, permitted and ambient; the
// inheritable set survives it) and checks that all are empty.
func clearCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return log.Temp(err, "clear capabilities")
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return log.Temp(err, "clear capabilities")
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return log.Temp(unix.EPERM, "clear capabilities")
		}
	}
	return nil
}

func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// errThread says why execFD refused: credentials are per thread, and
// prog would get those of the thread that execs.
var errThread = errors.New("not on the thread that dropped privileges")

// execFD is execveat(fd, "", argv, environ, AT_EMPTY_PATH) from thread
// tid, the one that dropped the credentials; it returns only on failure.
func execFD(fd int, argv []string, tid int) error {
	cargv, err := cStrings(argv)
	if err != nil {
		return log.Perm(err, "run %s", argv[0])
	}
	cenv, err := cStrings(os.Environ())
	if err != nil {
		return log.Perm(err, "run %s", argv[0])
	}
	empty := []byte{0}
	// Never seen: init runs locked to the main thread, and that lock is
	// the guarantee; this check is the tripwire, should that ever change.
	if unix.Gettid() != tid {
		return log.Temp(errThread, "run %s", argv[0])
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd),
		uintptr(unsafe.Pointer(&empty[0])),
		uintptr(unsafe.Pointer(&cargv[0])),
		uintptr(unsafe.Pointer(&cenv[0])),
		unix.AT_EMPTY_PATH, 0)
	runtime.KeepAlive(empty)
	runtime.KeepAlive(cargv)
	runtime.KeepAlive(cenv)
	return log.Temp(errno, "run %s", argv[0])
}

// cStrings is a NULL-terminated array of NUL-terminated strings.
func cStrings(ss []string) ([]*byte, error) {
	out := make([]*byte, len(ss)+1)
	for i, s := range ss {
		p, err := unix.BytePtrFromString(s)
		if err != nil {
			return nil, fmt.Errorf("argument or environment holds a NUL byte")
		}
		out[i] = p
	}
	return out, nil
}
