package main

// What makesock adds to a connection, over a plain exec:
//
//	go test -run '^$' -bench . -benchtime 2000x ./makesock
//
// Each iteration forks and execs one command and waits for it, as
// tcpserver does per connection. The difference between Makesock and
// True (or Noop, a static Go program like makesock itself) is
// makesock's cost.

import (
	"os/exec"
	"testing"
	"time"
)

// benchRun also reports the CPU time (user + system) of what was waited
// for, per run: on a machine shared with other work the wall time
// varies with the load, the CPU time much less. (Without -w, prog2 is
// reaped by init, so its CPU time is not in makesock's figure.)
func benchRun(b *testing.B, prog string, args ...string) {
	b.Helper()
	var cpu time.Duration
	for b.Loop() {
		cmd := exec.Command(prog, args...)
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s %q: %v", prog, args, err)
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkTrue is the baseline: /bin/true, a small C program.
func BenchmarkTrue(b *testing.B) { benchRun(b, "/bin/true") }

// BenchmarkNoop is a static Go program that does nothing.
func BenchmarkNoop(b *testing.B) { benchRun(b, fdtoolBin, "noop") }

// BenchmarkMakesock is makesock's default path: socketpair, start prog2,
// exec into prog1. prog2 is not waited for (it is prog1's child).
func BenchmarkMakesock(b *testing.B) {
	benchRun(b, makesockBin, "/bin/true", sep, "/bin/true")
}

// BenchmarkMakesockWait is -w: makesock waits for both.
func BenchmarkMakesockWait(b *testing.B) {
	benchRun(b, makesockBin, "-w", "/bin/true", sep, "/bin/true")
}
