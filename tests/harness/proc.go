package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lookPathIn finds name in the directories of path, as execvp would.
func lookPathIn(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Listening reports whether something listens on 127.0.0.1:port, from
// /proc/net/tcp, without connecting (a probe connection would start a
// session and a log line).
func Listening(port int) bool {
	b, _ := os.ReadFile("/proc/net/tcp")
	b6, _ := os.ReadFile("/proc/net/tcp6") // ::1 too
	want := fmt.Sprintf("0100007F:%04X", port)
	want6 := fmt.Sprintf("00000000000000000000000001000000:%04X", port)
	for _, line := range strings.Split(string(b)+string(b6), "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && (f[1] == want || f[1] == want6) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// ProcessGroup lists the processes of group pgid (without its leader
// when skipLeader).
func ProcessGroup(pgid int, skipLeader bool) []int {
	var pids []int
	for _, pid := range AllPids() {
		if skipLeader && pid == pgid {
			continue
		}
		if st := ProcStat(pid); len(st) > 2 && st[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// AllPids lists every process.
func AllPids() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ProcStat returns the fields of /proc/PID/stat after the command name:
// state, ppid, pgrp, ...
func ProcStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	f := strings.Fields(s[i+1:])
	if len(f) > 0 && f[0] == "Z" {
		return nil // a zombie is already gone
	}
	return f
}

// Cmdline is pid's command line, for a message.
func Cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// Describe names each of pids with its command line, for a message.
func Describe(pids []int) string {
	var s []string
	for _, pid := range pids {
		s = append(s, fmt.Sprintf("%d %s", pid, Cmdline(pid)))
	}
	return strings.Join(s, "; ")
}

func ArgvOf(pid int) []string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

func hasEnv(pid int, kv string) bool {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return slices.Contains(strings.Split(string(b), "\x00"), kv)
}

// Alive reports whether pid runs (a zombie has ended).
func Alive(pid int) bool { return ProcStat(pid) != nil }

func WaitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d still running after 20 s: %s", what, pid, Cmdline(pid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Descendants lists every live descendant of pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range AllPids() {
		if st := ProcStat(p); len(st) > 1 {
			pp, _ := strconv.Atoi(st[1])
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}
