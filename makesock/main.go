// Command makesock makes a socketpair, starts prog2 on one end (its fd 0
// and 1) and runs prog1 with the other end on fd 3:
//
//	makesock [ -d fd ] [ -w ] prog1 [ arg ... ] -makesock_connect_to prog2 [ arg ... ]
//
// By default it starts prog2 and then execs into prog1, so that nothing
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
	"flag"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"imap-tls/log"
)

const (
	// separator ends prog1's argv and starts prog2's: the seed's spelling.
	separator = "-makesock_connect_to"
	synopsis  = "[ -d fd ] [ -w ] prog1 [ arg ... ] " + separator + " prog2 [ arg ... ]"
	// maxFd bounds -d: Linux's default fs.nr_open is 1048576, and -w
	// builds a table of that many entries for the child.
	maxFd = 1<<20 - 1
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
	fd    int      // prog1's end of the socket goes on this descriptor
	wait  bool     // -w: stay, forward signals, reap both
	prog1 []string // the first program: the socket on fd, our stdio
	prog2 []string // the second program: the socket on its fd 0 and 1
}

func usage(msg string) error { return &log.UsageError{Synopsis: synopsis, Msg: msg} }

// fdFlag is -d: a descriptor number, 3 or more, since 0, 1 and 2 are
// prog1's stdio. A bad value is kept in bad, for the message.
type fdFlag struct {
	fd  *int
	bad *string
}

func (f fdFlag) String() string {
	if f.fd == nil {
		return ""
	}
	return strconv.Itoa(*f.fd)
}

func (f fdFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 3 || n > maxFd {
		*f.bad = s
		return errors.New("bad fd")
	}
	*f.fd = n
	return nil
}

// parseArgs splits argv at the last -makesock_connect_to and parses the
// options in front of prog1. The last, not the first: a nested makesock
// belongs on prog1's side, the side that inherits descriptors (prog2 gets
// only its socket), so earlier separators are prog1's, e.g.
//
//	makesock makesock -d 4 proxy -makesock_connect_to keyd -makesock_connect_to imapd
//
// gives the proxy the IMAP server on fd 3 and the key process on fd 4.
func parseArgs(args []string) (*config, error) {
	c := &config{fd: 3}
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
	fs := flag.NewFlagSet("makesock", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	badFd := ""
	fs.Var(fdFlag{&c.fd, &badFd}, "d", "")
	fs.BoolVar(&c.wait, "w", false, "")
	if err := fs.Parse(args[:end]); err != nil {
		return nil, usage(flagMessage(err, badFd))
	}
	if i < 0 {
		return nil, usage("missing " + separator)
	}
	c.prog1 = fs.Args()
	c.prog2 = args[i+1:]
	switch {
	case len(c.prog1) == 0:
		return nil, usage("missing prog1 before " + separator)
	case len(c.prog2) == 0:
		return nil, usage("missing prog2 after " + separator)
	case c.prog1[0] == "":
		return nil, usage("empty prog1")
	case c.prog2[0] == "":
		return nil, usage("empty prog2")
	}
	return c, nil
}

// flagMessage rewords the flag package's errors in our grammar.
func flagMessage(err error, badFd string) string {
	s := err.Error()
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ""
	case strings.HasPrefix(s, "flag provided but not defined: "):
		return "unknown option " + strings.TrimPrefix(s, "flag provided but not defined: ")
	case strings.HasPrefix(s, "flag needs an argument: "):
		return "missing fd after -d"
	case strings.HasSuffix(s, " -d: bad fd"):
		return "bad fd for -d: " + badFd + " (must be 3 to " + strconv.Itoa(maxFd) + ")"
	case strings.Contains(s, " -w: "):
		return "bad value for -w"
	}
	return s
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
