package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0 // arm64 has no second numbering to refuse
)

// archRules: arm64 has no open, creat, fork or vfork; openat, clone and
// the rest in common cover them.
var archRules = []rule{}
