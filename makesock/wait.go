package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"imap-tls/log"
)

// forwarded are the signals -w passes on to both programs.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT}

// catchSignals starts catching the forwarded signals, before any child
// exists, so that none is lost. A signal that makesock was started with
// ignored stays ignored (signal.Notify would otherwise take it over), and
// the children inherit it ignored, as they would from a plain exec.
func catchSignals() chan os.Signal {
	sigs := make(chan os.Signal, 16)
	for _, s := range forwarded {
		if !signal.Ignored(s) {
			signal.Notify(sigs, s)
		}
	}
	return sigs
}

// child is a program that makesock started and must reap.
type child struct {
	name   string
	pid    int
	reaped bool
	status syscall.WaitStatus
}

// supervise is -w: start prog1 with end1 on fd c.fd (the kernel puts it
// there in the child, between fork and exec), forward signals to both,
// reap both, and return prog1's status. pid2 is 0 when prog2 could not
// be run (err2); prog1 then runs anyway, sees end-of-file at once, and
// makesock exits 111 when it is done.
func supervise(c *config, path1 string, env []string, end1 int, sigs chan os.Signal, pid2 int, err2 error, fds *descriptors) error {
	var mu sync.Mutex
	var kids []*child
	if pid2 != 0 {
		kids = append(kids, &child{name: c.prog2[0], pid: pid2})
	}

	pid1, err1 := syscall.ForkExec(path1, c.prog1, &syscall.ProcAttr{
		Env:   env,
		Files: prog1Files(c.fd, end1, fds),
	})
	syscall.Close(end1) // prog2 sees end-of-file when prog1 is gone, or never ran
	var prog1 *child
	if err1 == nil {
		prog1 = &child{name: c.prog1[0], pid: pid1}
		kids = append(kids, prog1)
	}

	go func() {
		for s := range sigs {
			mu.Lock()
			for _, k := range kids {
				if !k.reaped { // a zombie's pid is still ours: no reuse race
					syscall.Kill(k.pid, s.(syscall.Signal))
				}
			}
			mu.Unlock()
		}
	}()

	for left := len(kids); left > 0; {
		pid, err := waitExited()
		if err != nil {
			break // ECHILD: nothing left to wait for
		}
		mu.Lock()
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil {
			for _, k := range kids {
				if k.pid == pid && !k.reaped {
					k.reaped, k.status = true, ws
					left--
				}
			}
		}
		mu.Unlock()
	}
	signal.Stop(sigs)

	switch {
	case err1 != nil:
		return log.Temp(err1, "run %s", c.prog1[0])
	case err2 != nil:
		return err2
	}
	return exitStatus(statusOf(prog1.status))
}

// statusOf is a shell's $? for a wait status: the exit code, or 128 + the
// signal number when the program was killed.
func statusOf(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// prog1Files is prog1's descriptor table for ForkExec: our 0, 1, 2, what
// makesock inherited below fd kept in place, end1 on fd; -1 closes the
// others below fd in the child. Inherited descriptors above fd pass on by
// themselves (they are not close-on-exec).
func prog1Files(fd, end1 int, fds *descriptors) []uintptr {
	files := make([]uintptr, fd+1)
	for i := range files {
		files[i] = ^uintptr(0)
	}
	files[0], files[1], files[2] = 0, 1, 2
	for _, n := range fds.inherited {
		if n < fd {
			files[n] = uintptr(n)
		}
	}
	files[fd] = uintptr(end1)
	return files
}

// pidOffset is where si_pid sits in a siginfo_t: after three ints, at
// the alignment of the union that holds it (a pointer's).
const pidOffset = (12 + unsafe.Alignof(uintptr(0)) - 1) &^ (unsafe.Alignof(uintptr(0)) - 1)

// waitExited waits for any child to exit and returns its pid without
// reaping it (WNOWAIT): while it is a zombie its pid cannot be reused, so
// the signal forwarder can never hit a stranger.
func waitExited() (int, error) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		return int(*(*int32)(unsafe.Add(unsafe.Pointer(&info), pidOffset))), nil
	}
}
