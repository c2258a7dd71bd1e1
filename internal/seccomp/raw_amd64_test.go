package seccomp_test

import "golang.org/x/sys/unix"

// x32Getpid is getpid through the x32 numbering.
const x32Getpid = 0x40000000 | unix.SYS_GETPID

// rawOpen calls open(2) itself, which Go never uses on x86_64.
func rawOpen() error {
	p, _ := unix.BytePtrFromString("/")
	fd, _, e := unix.Syscall(unix.SYS_OPEN, uintptr(unsafePointer(p)), unix.O_RDONLY, 0)
	if e != 0 {
		return e
	}
	unix.Close(int(fd))
	return nil
}

// rawFork calls fork(2); a child, if the filter let one through, exits
// at once.
func rawFork() error {
	pid, _, e := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}
