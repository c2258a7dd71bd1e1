package seccomp

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Attempt is the outcome of one forbidden action tried by TryForbidden.
type Attempt struct {
	Name string // execve, open, socket, fork
	Err  error  // nil when the action succeeded: the jail leaks
}

// Refused reports whether the filter refused the attempt (EPERM), as
// opposed to its succeeding or failing for an unrelated reason.
func (a Attempt) Refused() bool { return errors.Is(a.Err, unix.EPERM) }

// Result is "refused", "allowed" or the unrelated error's text.
func (a Attempt) Result() string {
	switch {
	case a.Err == nil:
		return "allowed"
	case a.Refused():
		return "refused"
	}
	var e syscall.Errno
	if errors.As(a.Err, &e) {
		return "failed:" + e.Error()
	}
	return "failed:" + a.Err.Error()
}

// TryForbidden tries, once each, the four things a jailed proxy must not
// be able to do, in ways that are harmless when they succeed: execve of
// a path that does not exist (without the filter: ENOENT, and the process
// goes on), open of the jail's root directory (closed at once), a unix
// socket (closed at once), and fork+exec of a path that does not exist
// (the child exits by itself). Under the filter every one is EPERM.
func TryForbidden() []Attempt {
	const nowhere = "/nonexistent-jailprobe"
	var out []Attempt

	err := syscall.Exec(nowhere, []string{nowhere}, nil)
	out = append(out, Attempt{"execve", err})

	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	out = append(out, Attempt{"open", err})

	fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	out = append(out, Attempt{"socket", err})

	pid, err := syscall.ForkExec(nowhere, []string{nowhere}, &syscall.ProcAttr{Files: []uintptr{}})
	if err == nil {
		// Not reached while execve of nowhere fails, but never leave a
		// child behind.
		p, _ := os.FindProcess(pid)
		p.Kill()
		p.Wait()
	}
	out = append(out, Attempt{"fork", err})
	return out
}
