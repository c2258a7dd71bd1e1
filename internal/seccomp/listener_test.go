package seccomp

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestListenerDecisions: the signer's filter differs from the proxy's in
// accept and accept4 alone.
func TestListenerDecisions(t *testing.T) {
	proxy, signer := Program(), ListenerProgram()
	for _, nr := range []uint32{unix.SYS_ACCEPT, unix.SYS_ACCEPT4} {
		if got := run(t, signer, auditArch, nr, 0); got != retAllow {
			t.Errorf("syscall %d: action %#x, want allow", nr, got)
		}
	}
	for _, r := range append(append([]rule(nil), common...), archRules...) {
		if r.nr == unix.SYS_ACCEPT || r.nr == unix.SYS_ACCEPT4 {
			continue
		}
		if got, want := run(t, signer, auditArch, r.nr, 0), run(t, proxy, auditArch, r.nr, 0); got != want {
			t.Errorf("syscall %d: signer %#x, proxy %#x", r.nr, got, want)
		}
	}
	for _, nr := range []uint32{unix.SYS_SOCKET, unix.SYS_CONNECT, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_OPENAT, unix.SYS_EXECVE} {
		if got := run(t, signer, auditArch, nr, 0); got != retEPERM {
			t.Errorf("syscall %d: action %#x, want EPERM", nr, got)
		}
	}
}
