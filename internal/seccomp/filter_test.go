package seccomp

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// run interprets the classic BPF subset the filter uses against one
// struct seccomp_data, as the kernel would, and fails on anything else.
func run(t *testing.T, prog []unix.SockFilter, arch, nr uint32, arg0 uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	binary.LittleEndian.PutUint64(data[offArg0:], arg0)
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case ldAbs:
			if in.K%4 != 0 || in.K+4 > uint32(len(data)) {
				t.Fatalf("pc %d: load outside seccomp_data at %d", pc, in.K)
			}
			a = binary.LittleEndian.Uint32(data[in.K:])
		case jeqK, jsetK:
			cond := a == in.K
			if in.Code == jsetK {
				cond = a&in.K != 0
			}
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
			if pc+1 >= len(prog) {
				t.Fatalf("pc %d: jump past the end", pc)
			}
		case retK:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
	t.Fatal("fell off the end of the filter")
	return 0
}

func TestFilterDecisions(t *testing.T) {
	prog := Program()
	if len(prog) > 4096 || len(prog) == 0 {
		t.Fatalf("filter of %d instructions", len(prog))
	}
	if prog[len(prog)-1] != stmt(retK, retAllow) {
		t.Error("filter does not end with ALLOW")
	}
	const sigchld = uint64(unix.SIGCHLD)
	goThread := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD)
	for _, tc := range []struct {
		name string
		nr   uint32
		arg0 uint64
		want uint32
	}{
		// What Go's runtime and the relay need.
		{"read", unix.SYS_READ, 0, retAllow},
		{"write", unix.SYS_WRITE, 0, retAllow},
		{"mmap", unix.SYS_MMAP, 0, retAllow},
		{"munmap", unix.SYS_MUNMAP, 0, retAllow},
		{"madvise", unix.SYS_MADVISE, 0, retAllow},
		{"futex", unix.SYS_FUTEX, 0, retAllow},
		{"epoll_pwait", unix.SYS_EPOLL_PWAIT, 0, retAllow},
		{"epoll_ctl", unix.SYS_EPOLL_CTL, 0, retAllow},
		{"nanosleep", unix.SYS_NANOSLEEP, 0, retAllow},
		{"getrandom", unix.SYS_GETRANDOM, 0, retAllow},
		{"tgkill", unix.SYS_TGKILL, 0, retAllow},
		{"sched_yield", unix.SYS_SCHED_YIELD, 0, retAllow},
		{"rt_sigaction", unix.SYS_RT_SIGACTION, 0, retAllow},
		{"sigaltstack", unix.SYS_SIGALTSTACK, 0, retAllow},
		{"close", unix.SYS_CLOSE, 0, retAllow},
		{"shutdown", unix.SYS_SHUTDOWN, 0, retAllow},
		{"exit_group", unix.SYS_EXIT_GROUP, 0, retAllow},
		{"clone thread", unix.SYS_CLONE, goThread, retAllow},
		{"prctl set name", unix.SYS_PRCTL, unix.PR_SET_NAME, retAllow},
		// Refused.
		{"clone fork", unix.SYS_CLONE, sigchld, retEPERM},
		{"clone vfork", unix.SYS_CLONE, unix.CLONE_VM | unix.CLONE_VFORK | sigchld, retEPERM},
		{"clone newns", unix.SYS_CLONE, unix.CLONE_NEWNS | sigchld, retEPERM},
		{"clone thread newnet", unix.SYS_CLONE, goThread | unix.CLONE_NEWNET, retKill},
		{"clone thread newuts", unix.SYS_CLONE, goThread | unix.CLONE_NEWUTS, retKill},
		{"clone thread newipc", unix.SYS_CLONE, goThread | unix.CLONE_NEWIPC, retKill},
		{"clone thread newcgroup", unix.SYS_CLONE, goThread | unix.CLONE_NEWCGROUP, retKill},
		{"clone thread newns", unix.SYS_CLONE, goThread | unix.CLONE_NEWNS, retKill},
		{"clone3", unix.SYS_CLONE3, 0, retENOSYS},
		{"prctl set dumpable", unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, retEPERM},
		{"execve", unix.SYS_EXECVE, 0, retEPERM},
		{"execveat", unix.SYS_EXECVEAT, 0, retEPERM},
		{"openat", unix.SYS_OPENAT, 0, retEPERM},
		{"openat2", unix.SYS_OPENAT2, 0, retEPERM},
		{"socket", unix.SYS_SOCKET, 0, retEPERM},
		{"connect", unix.SYS_CONNECT, 0, retEPERM},
		{"bind", unix.SYS_BIND, 0, retEPERM},
		{"accept4", unix.SYS_ACCEPT4, 0, retEPERM},
		{"ptrace", unix.SYS_PTRACE, 0, retKill},
		{"process_vm_readv", unix.SYS_PROCESS_VM_READV, 0, retKill},
		{"mount", unix.SYS_MOUNT, 0, retKill},
		{"unshare", unix.SYS_UNSHARE, 0, retKill},
		{"bpf", unix.SYS_BPF, 0, retKill},
		{"io_uring_setup", unix.SYS_IO_URING_SETUP, 0, retKill},
		{"keyctl", unix.SYS_KEYCTL, 0, retKill},
	} {
		if got := run(t, prog, auditArch, tc.nr, tc.arg0); got != tc.want {
			t.Errorf("%s: action %#x, want %#x", tc.name, got, tc.want)
		}
	}
	// Every rule decides its own call.
	for _, r := range append(append([]rule(nil), common...), archRules...) {
		if got := run(t, prog, auditArch, r.nr, 0); got != r.action {
			t.Errorf("syscall %d: action %#x, want %#x", r.nr, got, r.action)
		}
	}
	// Another architecture's gate: killed whatever the call.
	for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, 0} {
		if arch == auditArch {
			continue
		}
		if got := run(t, prog, arch, unix.SYS_READ, 0); got != retKill {
			t.Errorf("arch %#x: action %#x, want kill", arch, got)
		}
	}
	if x32Bit != 0 {
		if got := run(t, prog, auditArch, x32Bit|unix.SYS_GETPID, 0); got != retKill {
			t.Errorf("x32 getpid: action %#x, want kill", got)
		}
	}
}
