package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"imap-tls/internal/check"
	"imap-tls/log"
)

func TestMemArgs(t *testing.T) {
	if name, ok := memArgs([]string{"-M", "MEMLIMIT"}); !ok || name != "MEMLIMIT" {
		t.Errorf("memArgs(-M MEMLIMIT) = %q, %v", name, ok)
	}
	for _, args := range [][]string{{"-M"}, {"-M", "MEMLIMIT", "x"}, {"-n", "imap"}, nil} {
		if _, ok := memArgs(args); ok {
			t.Errorf("memArgs(%q): taken for -M NAME", args)
		}
	}
}

func TestMemLimit(t *testing.T) {
	t.Setenv("MEMLIMIT", "100000000")
	var out strings.Builder
	if err := memLimit("MEMLIMIT", &out); err != nil || out.String() != check.GoMemLimit("100000000")+"\n" {
		t.Errorf("memLimit(MEMLIMIT=100000000) = %v, printed %q", err, out.String())
	}
	for v, want := range map[string]string{
		"50": "env/MEMLIMIT 50 is below what a Go program needs to start (80000000 bytes of data, softlimit -d): raise it",
		"x":  `env/MEMLIMIT "x" is not a number of bytes`,
	} {
		t.Setenv("MEMLIMIT", v)
		out.Reset()
		err := memLimit("MEMLIMIT", &out)
		if err == nil || err.Error() != want || !isConfig(err) || out.Len() > 0 {
			t.Errorf("memLimit(MEMLIMIT=%s) = %v (printed %q), want exit 100 with %q", v, err, out.String(), want)
		}
	}
	if err := memLimit("IMAPTLS_UNSET_NAME", &out); err == nil || err.Error() != "env/IMAPTLS_UNSET_NAME is not set" {
		t.Errorf("memLimit(unset) = %v", err)
	}
}

func TestDataLimit(t *testing.T) {
	for _, cur := range []uint64{check.MinMemLimit, 100000000, ^uint64(0)} {
		if err := dataLimitOf(cur); err != nil {
			t.Errorf("dataLimitOf(%d): %v", cur, err)
		}
	}
	err := dataLimitOf(check.MinMemLimit - 1)
	if want := "the data limit 79999999 is below what a Go program needs to start"; err == nil || !strings.HasPrefix(err.Error(), want) || !isConfig(err) {
		t.Errorf("dataLimitOf(MinMemLimit-1) = %v, want %q", err, want)
	}
	// The test's own limit (none, or a large one): no refusal.
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_DATA, &r) == nil && r.Cur >= check.MinMemLimit {
		if err := dataLimit(); err != nil {
			t.Errorf("dataLimit() under %d: %v", r.Cur, err)
		}
	}
}

func isConfig(err error) bool {
	var e *log.Error
	return errors.As(err, &e) && e.Code == log.ExitUsage
}
