// Command fdtool is a test helper for makesock's tests:
//
//	fdtool relay N        copy stdin to fd N, then shut fd N down for
//	                      writing (end-of-file for the peer); meanwhile copy
//	                      fd N to stdout; exit when both are done
//	fdtool fds            print this process's open descriptors, e.g. "0 1 2"
//	fdtool nonblock prog  set O_NONBLOCK on fd 0, then exec prog
//	fdtool noop           exit 0: a static Go program's exec cost
//
// The runtime keeps no cgroup files open (as in makesock).
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"imap-tls/log"
)

var l = log.New("fdtool")

const synopsis = "relay N | fds | nonblock prog... | noop"

func main() {
	if len(os.Args) < 2 {
		l.Exit(&log.UsageError{Synopsis: synopsis})
	}
	switch os.Args[1] {
	case "relay":
		relay()
	case "fds":
		fds()
	case "nonblock":
		nonblock()
	case "noop":
	default:
		l.Exit(&log.UsageError{Synopsis: synopsis, Msg: "unknown command " + os.Args[1]})
	}
}

func relay() {
	if len(os.Args) != 3 {
		l.Exit(&log.UsageError{Synopsis: synopsis})
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		l.Exit(log.Config(nil, "bad fd %s", os.Args[2]))
	}
	if _, err := syscall.Getsockname(n); err != nil {
		l.Exit(log.Config(err, "fd %d is not a socket", n))
	}
	sock := os.NewFile(uintptr(n), "socket")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(os.Stdout, sock); err != nil {
			l.Exit(log.Temp(err, "read socket"))
		}
	}()
	if _, err := io.Copy(sock, os.Stdin); err != nil {
		l.Exit(log.Temp(err, "write socket"))
	}
	if err := syscall.Shutdown(n, syscall.SHUT_WR); err != nil {
		l.Exit(log.Temp(err, "shut down socket"))
	}
	wg.Wait()
}

// fds lists the descriptors this process inherited: those in
// /proc/self/fd without close-on-exec (the kernel closed any other at
// exec; the ones the Go runtime or this listing open have it).
func fds() {
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		l.Exit(log.Temp(err, "open /proc/self/fd"))
	}
	buf := make([]byte, 8192)
	var list []int
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err != nil {
			l.Exit(log.Temp(err, "read /proc/self/fd"))
		}
		if n <= 0 {
			break
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err != nil || fd == dir {
				continue
			}
			flags, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
			if e == 0 && flags&syscall.FD_CLOEXEC == 0 {
				list = append(list, fd)
			}
		}
	}
	sort.Ints(list)
	s := make([]string, len(list))
	for i, fd := range list {
		s[i] = strconv.Itoa(fd)
	}
	fmt.Println(strings.Join(s, " "))
}

func nonblock() {
	if len(os.Args) < 3 {
		l.Exit(&log.UsageError{Synopsis: synopsis})
	}
	if err := syscall.SetNonblock(0, true); err != nil {
		l.Exit(log.Temp(err, "set fd 0 non-blocking"))
	}
	path, err := exec.LookPath(os.Args[2])
	if err != nil {
		l.Exit(log.Temp(err, "run %s", os.Args[2]))
	}
	err = syscall.Exec(path, os.Args[2:], os.Environ())
	l.Exit(log.Temp(err, "run %s", os.Args[2]))
}
