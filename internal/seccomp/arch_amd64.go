package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32 system calls carry this bit in their number; they share the
	// x86_64 audit arch, so only the number tells them apart.
	x32Bit = 0x40000000
)

// archRules are the calls that exist only on x86_64.
var archRules = []rule{
	{unix.SYS_OPEN, retEPERM},
	{unix.SYS_CREAT, retEPERM},
	{unix.SYS_FORK, retEPERM},
	{unix.SYS_VFORK, retEPERM},
	{unix.SYS_USELIB, retKill},
	{unix.SYS_IOPL, retKill},
	{unix.SYS_IOPERM, retKill},
}
