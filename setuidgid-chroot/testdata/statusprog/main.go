// Command statusprog is the program the setuidgid-chroot tests run inside
// the jail: a static binary that reports what it is and what it can reach,
// one line per command, so the test can check it from outside.
//
//	ids          ids uid=R,E,S gid=R,E,S groups=G,... nnp=N
//	read PATH    read PATH ok "content" | read PATH error reason
//	fd N         fd N ok "content" | fd N error reason
//	ls DIR       ls DIR name,name,...
//	wait         pid PID, then block until stdin reaches end-of-file
//	exec PATH [arg ...]  become PATH (the rest of the line is its argv)
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	args := os.Args[1:]
	for len(args) > 0 {
		cmd := args[0]
		args = args[1:]
		switch cmd {
		case "ids":
			r, e, s := unix.Getresuid()
			gr, ge, gs := unix.Getresgid()
			groups, _ := unix.Getgroups()
			gl := make([]string, len(groups))
			for i, g := range groups {
				gl[i] = strconv.Itoa(g)
			}
			nnp, _ := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
			fmt.Printf("ids uid=%d,%d,%d gid=%d,%d,%d groups=%s nnp=%d\n", r, e, s, gr, ge, gs, strings.Join(gl, ","), nnp)
		case "read":
			b, err := os.ReadFile(args[0])
			report(cmd, args[0], b, err)
			args = args[1:]
		case "fd":
			n, _ := strconv.Atoi(args[0])
			b, err := io.ReadAll(os.NewFile(uintptr(n), "fd"))
			report(cmd, strconv.Itoa(n), b, err)
			args = args[1:]
		case "ls":
			p := args[0]
			args = args[1:]
			ents, err := os.ReadDir(p)
			if err != nil {
				fmt.Printf("ls %s error %v\n", p, reason(err))
				continue
			}
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			fmt.Printf("ls %s %s\n", p, strings.Join(names, ","))
		case "wait":
			fmt.Printf("pid %d\n", os.Getpid())
			io.Copy(io.Discard, os.Stdin)
		case "exec":
			err := syscall.Exec(args[0], args, os.Environ())
			fmt.Printf("exec %s error %v\n", args[0], reason(err))
			os.Exit(1)
		default:
			fmt.Fprintf(os.Stderr, "statusprog: unknown command %s\n", cmd)
			os.Exit(2)
		}
	}
}

// report prints "CMD ARG ok "content"" or "CMD ARG error reason".
func report(cmd, arg string, b []byte, err error) {
	if err != nil {
		fmt.Printf("%s %s error %s\n", cmd, arg, reason(err))
	} else {
		fmt.Printf("%s %s ok %q\n", cmd, arg, b)
	}
}

// reason is the errno text of err (its own text otherwise), one word.
func reason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}
