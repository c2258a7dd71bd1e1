// Package seccomp locks a jailed process of the suite (the proxy, a key
// holder) down once it holds everything it needs (its descriptors, its
// certificate, its TLS config): from then on it can open no file or
// socket, start no process, and make none of the calls that only an
// attacker would make, while Go's runtime (threads, timers, netpoll,
// signals, getrandom) keeps working.
//
// The filter is classic BPF assembled by hand (no cgo, no libseccomp) and
// is installed with seccomp(SECCOMP_SET_MODE_FILTER,
// SECCOMP_FILTER_FLAG_TSYNC) so that every thread of the process, present
// and future, carries it. Two actions are used:
//
//   - EPERM for calls that Go's runtime or standard library may make on
//     its own and must survive: open and friends (the runtime and package
//     time read files lazily), socket and friends, execve and process
//     creation (os/exec). The caller sees "operation not permitted".
//   - SECCOMP_RET_KILL_PROCESS for calls that no correct proxy ever makes
//     (ptrace, process_vm_*, mount family, chroot, setns, unshare, kexec,
//     modules, bpf, perf_event_open, keyctl, io_uring, foreign
//     architectures and x32): reaching one means the process is already
//     compromised, so it gets no second try and the kernel records SIGSYS.
//
// A deny list rather than an allow list: the set of calls Go's runtime
// makes changes between releases (it did for clone3, pidfd, rseq), and a
// runtime call refused by an allow list kills every connection; the calls
// refused here are the ones that give an attacker something new.
package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (linux/seccomp.h).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits of args[0] on a little-endian machine
)

const (
	// seccomp(2) operation; x/sys has only the prctl mode constants.
	setModeFilter = 1

	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	// clone3 answers ENOSYS, so that Go's runtime and os/exec fall back
	// to clone, whose flags a classic BPF filter can inspect (clone3
	// passes them in memory, out of the filter's reach).
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// rule is one system call and what the filter does with it.
type rule struct {
	nr     uint32
	action uint32
}

// common holds the calls refused on every architecture; arch_*.go adds
// the ones only some architectures have (open, fork, ...).
var common = []rule{
	// Starting programs and processes (clone is handled on its flags).
	{unix.SYS_EXECVE, retEPERM},
	{unix.SYS_EXECVEAT, retEPERM},
	{unix.SYS_CLONE3, retENOSYS},
	// New files: the jail is empty, but a descriptor to a directory
	// inherited by mistake would otherwise be a way out.
	{unix.SYS_OPENAT, retEPERM},
	{unix.SYS_OPENAT2, retEPERM},
	{unix.SYS_OPEN_BY_HANDLE_AT, retEPERM},
	{unix.SYS_NAME_TO_HANDLE_AT, retEPERM},
	{unix.SYS_MEMFD_CREATE, retEPERM},
	// New sockets and their use: the proxy already has its two.
	{unix.SYS_SOCKET, retEPERM},
	{unix.SYS_SOCKETPAIR, retEPERM},
	{unix.SYS_CONNECT, retEPERM},
	{unix.SYS_BIND, retEPERM},
	{unix.SYS_LISTEN, retEPERM},
	{unix.SYS_ACCEPT, retEPERM},
	{unix.SYS_ACCEPT4, retEPERM},
	// Descriptors of other processes.
	{unix.SYS_PIDFD_OPEN, retEPERM},
	{unix.SYS_PIDFD_GETFD, retKill},
	// Reading or steering other processes.
	{unix.SYS_PTRACE, retKill},
	{unix.SYS_PROCESS_VM_READV, retKill},
	{unix.SYS_PROCESS_VM_WRITEV, retKill},
	{unix.SYS_KCMP, retKill},
	// The file system namespace.
	{unix.SYS_MOUNT, retKill},
	{unix.SYS_UMOUNT2, retKill},
	{unix.SYS_PIVOT_ROOT, retKill},
	{unix.SYS_CHROOT, retKill},
	{unix.SYS_SETNS, retKill},
	{unix.SYS_UNSHARE, retKill},
	{unix.SYS_OPEN_TREE, retKill},
	{unix.SYS_MOVE_MOUNT, retKill},
	{unix.SYS_FSOPEN, retKill},
	{unix.SYS_FSCONFIG, retKill},
	{unix.SYS_FSMOUNT, retKill},
	{unix.SYS_FSPICK, retKill},
	{unix.SYS_MOUNT_SETATTR, retKill},
	// The kernel itself.
	{unix.SYS_KEXEC_LOAD, retKill},
	{unix.SYS_KEXEC_FILE_LOAD, retKill},
	{unix.SYS_INIT_MODULE, retKill},
	{unix.SYS_FINIT_MODULE, retKill},
	{unix.SYS_DELETE_MODULE, retKill},
	{unix.SYS_BPF, retKill},
	{unix.SYS_PERF_EVENT_OPEN, retKill},
	{unix.SYS_KEYCTL, retKill},
	{unix.SYS_ADD_KEY, retKill},
	{unix.SYS_REQUEST_KEY, retKill},
	{unix.SYS_USERFAULTFD, retKill},
	{unix.SYS_FANOTIFY_INIT, retKill},
	{unix.SYS_REBOOT, retKill},
	{unix.SYS_SWAPON, retKill},
	{unix.SYS_SWAPOFF, retKill},
	{unix.SYS_ACCT, retKill},
	// io_uring runs opens, connects and more in the kernel's own context,
	// where this filter never sees them.
	{unix.SYS_IO_URING_SETUP, retKill},
	{unix.SYS_IO_URING_ENTER, retKill},
	{unix.SYS_IO_URING_REGISTER, retKill},
}

// Program returns the filter for the running architecture, ready for
// Install; exported for tests that check its decisions.
func Program() []unix.SockFilter {
	return build(auditArch, x32Bit, append(append([]rule(nil), common...), archRules...))
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

const (
	ldAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	jsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	retK   = unix.BPF_RET | unix.BPF_K
	cloneT = unix.CLONE_THREAD
	// The namespace flags clone(2) takes; CLONE_NEWTIME is not one (its
	// bit is the exit signal's there: clone3 and unshare only).
	cloneNS = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
)

// build assembles the filter: check the architecture, refuse x32 numbers
// where the architecture has them, decide clone on its flags and prctl on
// its option, then one compare-and-return pair per refused call, and
// allow the rest. Every jump is forward and short, as the kernel demands.
func build(arch, x32 uint32, rules []rule) []unix.SockFilter {
	p := []unix.SockFilter{
		// A process may enter the kernel through another architecture's
		// gate (int 0x80 on x86_64), where the numbers mean other calls.
		stmt(ldAbs, offArch),
		jump(jeqK, arch, 1, 0),
		stmt(retK, retKill),
		stmt(ldAbs, offNr),
	}
	if x32 != 0 {
		p = append(p,
			jump(jsetK, x32, 0, 1),
			stmt(retK, retKill),
		)
	}
	p = append(p,
		// clone: threads (CLONE_THREAD) yes, processes no; a thread in
		// new namespaces is unshare by another name, killed as unshare is.
		jump(jeqK, unix.SYS_CLONE, 0, 6),
		stmt(ldAbs, offArg0),
		jump(jsetK, cloneT, 0, 3),
		jump(jsetK, cloneNS, 0, 1),
		stmt(retK, retKill),
		stmt(retK, retAllow),
		stmt(retK, retEPERM),
		// prctl(PR_SET_DUMPABLE, ...): the process stays undumpable, so
		// /proc/PID/mem and ptrace stay closed to its own uid.
		jump(jeqK, unix.SYS_PRCTL, 0, 4),
		stmt(ldAbs, offArg0),
		jump(jeqK, unix.PR_SET_DUMPABLE, 0, 1),
		stmt(retK, retEPERM),
		stmt(retK, retAllow),
	)
	for _, r := range rules {
		p = append(p,
			jump(jeqK, r.nr, 0, 1),
			stmt(retK, r.action),
		)
	}
	return append(p, stmt(retK, retAllow))
}

// Install sets no_new_privs and installs the filter on every thread of
// the process. It is the last step of the lock-down: call it once the
// process holds every descriptor it will ever use. An error means the
// process is NOT filtered and must not go on.
func Install() error { return install(Program()) }

// install sets no_new_privs and installs filter on every thread.
func install(filter []unix.SockFilter) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	if r != 0 {
		// TSYNC names the thread it could not synchronise.
		return fmt.Errorf("install seccomp filter: thread %d cannot be synchronised", r)
	}
	return nil
}
