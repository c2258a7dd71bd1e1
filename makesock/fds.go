package main

import (
	"strconv"
	"syscall"

	"imap-tls/internal/opt"
)

// descriptors records what closeOnExec changed, to undo it for prog1.
type descriptors struct {
	inherited []int // open, >= 3, without close-on-exec when we looked
	// runtimeAtFd: the -d descriptor holds a close-on-exec descriptor
	// that is not ours. Everything inherited across an exec lacks
	// close-on-exec (the kernel closed the rest), so this one was opened
	// in this process: by the Go runtime (its epoll and eventfd, made at
	// start-up when stdin, stdout or stderr is non-blocking).
	runtimeAtFd bool
}

// closeOnExec marks every open descriptor >= 3 close-on-exec, so that a
// child started now gets only what its ProcAttr.Files names: fork and
// exec by themselves pass on every descriptor without the flag
// (syscall.ForkExec does not close them, and Go cannot run code in the
// child between the two). end1 and end2 are skipped: they are already
// close-on-exec. fd is the -d descriptor.
func closeOnExec(end1, end2, fd int) (*descriptors, error) {
	open, err := openFds()
	if err != nil {
		return nil, err
	}
	d := &descriptors{}
	for _, n := range open {
		if n < 3 || n == end1 || n == end2 {
			continue
		}
		flags, err := fcntl(n, syscall.F_GETFD, 0)
		if err != nil {
			continue // closed meanwhile (the listing's own descriptor)
		}
		if flags&syscall.FD_CLOEXEC != 0 {
			if n == fd {
				d.runtimeAtFd = true
			}
			continue
		}
		if _, err := fcntl(n, syscall.F_SETFD, flags|syscall.FD_CLOEXEC); err != nil {
			return nil, err
		}
		d.inherited = append(d.inherited, n)
	}
	return d, nil
}

// restore clears close-on-exec again on what closeOnExec marked: prog1
// keeps what makesock inherited, as any program keeps across an exec.
func (d *descriptors) restore() {
	for _, n := range d.inherited {
		fcntl(n, syscall.F_SETFD, 0)
	}
}

// openFds lists this process's open descriptors from /proc/self/fd, with
// raw system calls: os.Open would start the Go netpoller, whose epoll
// descriptor could then sit on the very number -d names. Without /proc
// (makesock run inside a chroot), it probes every descriptor up to the
// limit instead.
func openFds() ([]int, error) {
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return probeFds()
	}
	defer syscall.Close(dir)
	var fds []int
	buf := direntBuf[:]
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return fds, nil
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
}

// direntBuf is openFds's buffer: a package variable, since on the
// stack its 8 KiB made the runtime grow (copy) the goroutine's stack on
// every run, about 40k instructions.
var direntBuf [8192]byte

// probeFds asks F_GETFD of every descriptor below RLIMIT_NOFILE.
func probeFds() ([]int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	max := lim.Cur
	if max > opt.MaxFD+1 {
		max = opt.MaxFD + 1
	}
	var fds []int
	for n := 0; n < int(max); n++ {
		if _, err := fcntl(n, syscall.F_GETFD, 0); err == nil {
			fds = append(fds, n)
		}
	}
	return fds, nil
}

func fcntl(fd, cmd, arg int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}
