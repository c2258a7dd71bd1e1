package main

import (
	"io"
	"os"
	"strconv"
	"syscall"

	"imap-tls/internal/check"
	"imap-tls/log"
)

// This file is the memory bound: the data limit (softlimit -d,
// RLIMIT_DATA) every process of the chain runs under, checked against
// check.MinMemLimit, the one place the floor is written.

// memArgs reports whether args are the form imap-tls-server -M NAME: the
// run files call it before softlimit, because under a data limit too
// small for Go nothing can say so (the Go runtime, and even sh, die
// before their first line).
func memArgs(args []string) (name string, ok bool) {
	if len(args) == 2 && args[0] == "-M" {
		return args[1], true
	}
	return "", false
}

// memLimit is -M NAME: the data limit in $NAME (env/NAME, which envdir
// has put in the environment) must be one a Go program of the chain
// starts under; then GOMEMLIMIT for it is written to w, for the run file
// to export.
func memLimit(name string, w io.Writer) error {
	if name == "" {
		return log.Config(nil, "-M: empty name")
	}
	v, ok := os.LookupEnv(name)
	if !ok {
		return log.Config(nil, "env/%s is not set", name)
	}
	if err := check.MemLimit(v); err != nil {
		return log.Config(nil, "env/%s %s", name, err)
	}
	if _, err := io.WriteString(w, check.GoMemLimit(v)+"\n"); err != nil {
		return log.Temp(err, "write GOMEMLIMIT")
	}
	return nil
}

// dataLimit checks the data limit this process runs under, which every
// process of the chain inherits: a run file without -M's line, or a
// softlimit of its own, gets the same refusal at start, rather than a
// Go runtime failing on each connection.
func dataLimit() error {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_DATA, &r); err != nil {
		return nil // nothing known: the runtime has started, which says enough
	}
	return dataLimitOf(r.Cur)
}

// dataLimitOf is dataLimit for a limit of cur bytes.
func dataLimitOf(cur uint64) error {
	if cur >= 1<<62 { // unlimited (RLIM_INFINITY), or no number anyone wrote
		return nil
	}
	if err := check.MemLimit(strconv.FormatUint(cur, 10)); err != nil {
		return log.Config(nil, "the data limit %s", err)
	}
	return nil
}
