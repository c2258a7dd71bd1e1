//go:build linux && (386 || arm)

package main

import "golang.org/x/sys/unix"

// On 386 and arm the plain setgroups, setresgid and setresuid take 16-bit
// ids and would truncate ours: use the 32-bit calls.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)
