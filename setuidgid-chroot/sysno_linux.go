//go:build linux && !386 && !arm

package main

import "golang.org/x/sys/unix"

// The system calls that take 32-bit ids. On these architectures the plain
// numbers are the 32-bit ones; 386 and arm keep 16-bit calls under the
// plain names (sysno_linux16.go).
const (
	sysSetgroups = unix.SYS_SETGROUPS
	sysSetresgid = unix.SYS_SETRESGID
	sysSetresuid = unix.SYS_SETRESUID
)
