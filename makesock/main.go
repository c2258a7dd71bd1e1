// Command makesock gives prog1 a socket on fd 3: connected to a server's
// socket itself, or one end of a socketpair whose other end is prog2's
// stdin and stdout:
//
//	makesock [ -d fd ] -c address prog1 [ arg ... ]
//	makesock [ -d fd ] [ -w ] prog1 [ arg ... ] -makesock_connect_to prog2 [ arg ... ]
//
// With -c it connects to address (a unix socket path, IPv4:port or
// [IPv6]:port) and execs prog1; a failed connect is said, and prog1
// runs with nothing on fd and the reason in $FD3_ERROR (FDn_ERROR for
// -d n; connect.go).
// Otherwise it starts prog2 and then execs into prog1, so that nothing
// extra lingers for the life of the connection; with -w it stays, forwards
// TERM, HUP and INT to both, reaps both and exits with prog1's status.
// See README.md.
//
// The go:debug settings below keep the Go runtime from holding the cgroup
// CPU limit files open on the lowest free descriptors (3 and 4, the
// default -d) for as long as it runs: makesock runs for an instant and
// needs those numbers.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"imap-tls/internal/opt"
	"imap-tls/internal/sockaddr"
	"imap-tls/log"
)

const (
	// separator ends prog1's argv and starts prog2's: the seed's spelling.
	separator = "-makesock_connect_to"
	synopsis  = "[ -d fd ] ( -c address prog1 [ arg ... ] | [ -w ] prog1 [ arg ... ] " + separator + " prog2 [ arg ... ] )"
)

var l = log.New("makesock")

func main() {
	err := run(os.Args[1:])
	var st exitStatus
	if errors.As(err, &st) {
		os.Exit(int(st)) // -w: prog1's status; nothing to say about it
	}
	l.Exit(err)
}

// exitStatus is an exit code to take silently: prog1's, with -w.
type exitStatus int

func (e exitStatus) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// config is a parsed command line.
type config struct {
	fd      int               // prog1's end of the socket goes on this descriptor
	wait    bool              // -w: stay, forward signals, reap both
	connect *sockaddr.Address // -c: connect to a server instead of a socketpair and prog2
	prog1   []string          // the first program: the socket on fd, our stdio
	prog2   []string          // the second program: the socket on its fd 0 and 1
}

// parseArgs splits argv at the last -makesock_connect_to and parses the
// options in front of prog1. The last, not the first: a nested makesock
// belongs on prog1's side, the side that inherits descriptors (prog2 gets
// only its socket), so earlier separators are prog1's, e.g.
//
//	makesock makesock -d 4 proxy -makesock_connect_to keyd -makesock_connect_to imapd
//
// gives the proxy the IMAP server on fd 3 and the key process on fd 4.
// With -c every separator is prog1's (a nested makesock's):
//
//	makesock -c 127.0.0.1:10143 makesock -d 4 proxy -makesock_connect_to keyd
func parseArgs(args []string) (*config, error) {
	c := &config{fd: 3}
	set := opt.New(synopsis)
	// 0, 1 and 2 are prog1's stdio.
	set.FD('d', 3, &c.fd)
	set.Flag('w', &c.wait)
	set.Func('c', func(v string) (err error) {
		c.connect, err = sockaddr.Parse(v)
		return err
	})
	i := -1
	for j, a := range args {
		if a == separator {
			i = j
		}
	}
	// The options first, so that -h or a bad option is named as such
	// even when the separator is missing too.
	end := i
	if i < 0 {
		end = len(args)
	}
	operands, err := set.Parse(args[:end])
	if err != nil {
		return nil, err
	}
	if c.connect != nil {
		// Everything after the options is prog1's, separators too.
		c.prog1 = args[end-len(operands):]
		switch {
		case c.wait:
			return nil, set.Usage("-w has no use with -c: there is no second program to wait for")
		case len(c.prog1) == 0:
			return nil, set.Usage("missing prog1 after -c address")
		case c.prog1[0] == separator:
			return nil, set.Usage("-c takes no " + separator + ": the server is the address")
		case c.prog1[0] == "":
			return nil, set.Usage("empty prog1")
		}
		return c, nil
	}
	if i < 0 {
		return nil, set.Usage("missing " + separator + " (or -c address)")
	}
	c.prog1 = operands
	c.prog2 = args[i+1:]
	switch {
	case len(c.prog1) == 0:
		return nil, set.Usage("missing prog1 before " + separator)
	case len(c.prog2) == 0:
		return nil, set.Usage("missing prog2 after " + separator)
	case c.prog1[0] == "":
		return nil, set.Usage("empty prog1")
	case c.prog2[0] == "":
		return nil, set.Usage("empty prog2")
	}
	return c, nil
}

// lookPath finds a program as execvp would, with the error in our
// grammar's words: a name not found in $PATH "does not exist".
func lookPath(name string) (string, error) {
	path, err := exec.LookPath(name)
	if errors.Is(err, exec.ErrDot) {
		return path, nil // found through "." in $PATH: execvp would run it too
	}
	if errors.Is(err, exec.ErrNotFound) {
		return "", syscall.ENOENT
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return "", ee.Err
	}
	return path, err
}

func run(args []string) error {
	c, err := parseArgs(args)
	if err != nil {
		return err
	}
	if c.connect != nil {
		return runConnect(c)
	}
	// prog1 is looked up first, so that a missing prog1 is reported
	// before prog2 has been started for nothing.
	path1, err := lookPath(c.prog1[0])
	if err != nil {
		return log.Temp(err, "run %s", c.prog1[0])
	}
	path2, err2 := lookPath(c.prog2[0])
	if err2 != nil && !c.wait {
		return log.Temp(err2, "run %s", c.prog2[0])
	}

	// Both ends close on exec: each program gets its end only where we
	// put it explicitly.
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return log.Temp(err, "create socket pair")
	}
	end1, end2 := pair[0], pair[1]

	fds, err := closeOnExec(end1, end2, c.fd)
	if err != nil {
		return log.Temp(err, "list descriptors")
	}
	// The -d descriptor may hold one of the Go runtime's own descriptors
	// (its epoll, when our stdio was non-blocking): moving the socket
	// there before exec could crash the runtime, so then makesock stays,
	// as with -w, and lets the kernel place the socket in the child.
	stay := c.wait || fds.runtimeAtFd
	var sigs chan os.Signal
	if stay {
		sigs = catchSignals()
	}
	env := os.Environ()
	var pid2 int
	if err2 == nil {
		pid2, err2 = startProg2(path2, c.prog2, env, end2)
	}
	// Give the inherited descriptors back to prog1, and drop our copy of
	// prog2's end: if prog2 could not run, prog1 then sees end-of-file.
	fds.restore()
	syscall.Close(end2)
	if err2 != nil {
		err2 = log.Temp(err2, "run %s", c.prog2[0])
		if !c.wait {
			return err2 // prog1 never runs
		}
		// With -w, prog1 still runs and sees end-of-file at once; the
		// failure is said now, and again as makesock exits 111.
		l.Warning("%s", err2.Error())
	}
	if stay {
		return supervise(c, path1, env, end1, sigs, pid2, err2, fds)
	}
	if err := moveFd(end1, c.fd); err != nil {
		return log.Temp(err, "move socket to fd %d", c.fd)
	}
	err = syscall.Exec(path1, c.prog1, env)
	return log.Temp(err, "run %s", c.prog1[0])
}

// moveFd puts the socket on fd without close-on-exec.
func moveFd(from, to int) error {
	if from == to {
		_, err := fcntl(to, syscall.F_SETFD, 0)
		return err
	}
	if err := syscall.Dup3(from, to, 0); err != nil {
		return err
	}
	return syscall.Close(from)
}

// startProg2 starts prog2 with its end of the socket on fd 0 and 1 and
// our fd 2. Every other descriptor is close-on-exec by now (closeOnExec),
// so it gets nothing else.
func startProg2(path string, argv, env []string, end2 int) (int, error) {
	return syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{uintptr(end2), uintptr(end2), 2},
	})
}
