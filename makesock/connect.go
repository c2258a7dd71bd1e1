package main

// This file is the connect form, -c address: makesock connects to a
// server's socket itself (package internal/sockaddr, the connect that
// setuidgid-chroot -s fd:address makes too) and gives prog1 the
// connection on fd, instead of a socketpair and a second program
// (socat) in between.

import (
	"os"
	"strings"
	"syscall"

	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

// runConnect is the connect form: find prog1, connect, put the socket
// on fd, exec prog1. A failed connect does not end the connection's
// chain: makesock says why, closes fd (nothing there for prog1 to take
// for the server), and execs prog1 with the reason in FDn_ERROR (n: fd,
// sockaddr.ErrorVar), so
// that prog1 can tell the client rather than leave it a bare end of file.
func runConnect(c *config) error {
	path1, err := lookPath(c.prog1[0])
	if err != nil {
		return log.Temp(err, "run %s", c.prog1[0])
	}
	errorVar := sockaddr.ErrorVar(c.fd)
	// A stale value from our own environment is no failure of this run.
	env := withoutVar(os.Environ(), errorVar)
	sock, err := sockaddr.Dial(c.connect, sockaddr.Timeout)
	if err != nil {
		why := log.Temp(err, "connect to %s", c.connect.Text).Error()
		l.Warning("%s%s", why, sockaddr.RemoteSuffix(os.LookupEnv))
		env = append(env, errorVar+"="+why)
		if flags, err := fcntl(c.fd, syscall.F_GETFD, 0); err == nil && flags&syscall.FD_CLOEXEC == 0 {
			syscall.Close(c.fd) // inherited: not the server
		}
		err = syscall.Exec(path1, c.prog1, env)
		return log.Temp(err, "run %s", c.prog1[0])
	}
	if sock != c.fd {
		// A close-on-exec descriptor on fd is the Go runtime's own (see
		// descriptors.runtimeAtFd): then stay, as the socketpair form
		// does, and let the kernel place the socket in prog1.
		if flags, err := fcntl(c.fd, syscall.F_GETFD, 0); err == nil && flags&syscall.FD_CLOEXEC != 0 {
			sigs := catchSignals()
			fds, err := closeOnExec(sock, sock, c.fd)
			if err != nil {
				return log.Temp(err, "list descriptors")
			}
			fds.restore()
			return supervise(c, path1, env, sock, sigs, 0, nil, fds)
		}
	}
	if err := moveFd(sock, c.fd); err != nil {
		return log.Temp(err, "move socket to fd %d", c.fd)
	}
	err = syscall.Exec(path1, c.prog1, env)
	return log.Temp(err, "run %s", c.prog1[0])
}

// withoutVar is env without name's entries.
func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
