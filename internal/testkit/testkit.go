// Package testkit is what the tests of every package share: the suite's
// programs as static binaries (Bin), any other package built once (Build),
// test certificates (NewCert), and a buffer safe for concurrent writers
// (LockedBuffer). It is imported by _test.go files only; no program links
// it. Every helper fails the test with a clear message instead of
// returning an error (GenerateCert excepted, for re-executed test
// children that have no testing.TB).
//
// Binaries built on the fly go to /tmp/imap-tls-testkit-PID, one folder
// per test process; folders of processes that no longer exist are removed
// the next time a test process builds.
package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"imap-tls/internal/suite"
)

// RepoRoot returns the folder that holds go.mod, found upwards from the
// working directory (a test runs in its package's folder).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("unable to find the working directory: %v", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("unable to find go.mod above %s", dir)
		}
	}
}

// ProgramDir returns the package folder of a suite program, relative to
// the repository root: the folder of its name (suite.Programs), which
// must hold Go files.
func ProgramDir(t testing.TB, name string) string {
	t.Helper()
	if !slices.Contains(suite.Programs, name) {
		t.Fatalf("testkit: %s is not a program of the suite (known: %s)", name, strings.Join(suite.Programs, ", "))
	}
	root := RepoRoot(t)
	if m, _ := filepath.Glob(filepath.Join(root, name, "*.go")); len(m) == 0 {
		t.Fatalf("testkit: no package folder for %s in %s", name, root)
	}
	return name
}

var (
	buildMu  sync.Mutex
	buildDir string                  // this process's folder for binaries
	built    = map[string]buildRes{} // key -> result, built once
)

type buildRes struct {
	path string
	err  error
}

// Bin returns the absolute path of the static binary of a program of the
// suite (suite.Programs). With $IMAPTLS_BIN set it is
// $IMAPTLS_BIN/name, which must exist (sh redo.do builds them); otherwise
// it is built once per test process with `CGO_ENABLED=0 go build
// -trimpath` from its package folder (ProgramDir) into a folder every
// account can traverse, named as the program.
func Bin(t testing.TB, name string) string {
	t.Helper()
	if !slices.Contains(suite.Programs, name) {
		t.Fatalf("testkit: %s is not a program of the suite (known: %s)", name, strings.Join(suite.Programs, ", "))
	}
	if d := os.Getenv("IMAPTLS_BIN"); d != "" {
		p, err := filepath.Abs(filepath.Join(d, name))
		if err != nil {
			t.Fatalf("testkit: unable to resolve %s: %v", name, err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testkit: IMAPTLS_BIN is set but %s is missing: %v (run sh redo.do, or unset IMAPTLS_BIN)", p, err)
		}
		return p
	}
	root := RepoRoot(t)
	dir := ProgramDir(t, name)
	p, err := build("bin "+name, root, "./"+dir, name, nil)
	if err != nil {
		t.Fatalf("testkit: unable to build %s: %v", name, err)
	}
	return p
}

// Build returns the absolute path of a static binary of pkg (an import
// path such as "imap-tls/tests/fakeimapd", or a path relative to the
// test's folder such as "./testdata/fdtool"), built with the given build
// tags once per test process, per (pkg, tags). It never looks at
// $IMAPTLS_BIN: test tools and tagged builds (-tags jailprobe) are not in
// bin/. The binary is named as the package's folder.
func Build(t testing.TB, pkg string, tags ...string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("testkit: unable to find the working directory: %v", err)
	}
	base := path.Base(pkg)
	if strings.HasPrefix(pkg, ".") {
		base = filepath.Base(filepath.Join(wd, pkg))
	}
	key := "pkg " + pkg + " " + strings.Join(tags, ",")
	p, err := build(key, wd, pkg, base, tags)
	if err != nil {
		t.Fatalf("testkit: unable to build %s: %v", pkg, err)
	}
	return p
}

// build runs go build once per key, in dir, into this process's folder:
// a suite program as buildDir/name, anything else in a subfolder of its
// own, so that two packages with the same last element never collide.
func build(key, dir, pkg, name string, tags []string) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	if r, ok := built[key]; ok {
		return r.path, r.err
	}
	if buildDir == "" {
		removeStaleDirs()
		d := fmt.Sprintf("%s%d", dirPrefix, os.Getpid())
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
		// Programs run by tests may run under another uid (after
		// setuidgid-chroot): the folder must be traversable by all.
		if err := os.Chmod(d, 0o755); err != nil {
			return "", err
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, name)
	if !strings.HasPrefix(key, "bin ") {
		sub := filepath.Join(buildDir, strconv.Itoa(len(built)))
		if err := os.Mkdir(sub, 0o755); err != nil && !os.IsExist(err) {
			return "", err
		}
		out = filepath.Join(sub, name)
	}
	args := []string{"build", "-trimpath"}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	args = append(args, "-o", out, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var err error
	if msg, e := cmd.CombinedOutput(); e != nil {
		err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), e, msg)
		out = ""
	}
	built[key] = buildRes{out, err}
	return out, err
}

const dirPrefix = "/tmp/imap-tls-testkit-"

// removeStaleDirs removes the build folders of test processes that no
// longer exist.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(dirPrefix + "*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(d, dirPrefix))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// LockedBuffer is a bytes.Buffer safe for concurrent use: a program's
// stderr written by one goroutine (or several) and read by the test while
// it runs. The zero value is ready to use.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Len returns the number of bytes written so far.
func (l *LockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

// MainTB returns a testing.TB for TestMain, where no test is running yet:
// Bin, Build, RepoRoot and NewCert accept it, so that binaries are built
// before the first test starts its clock. Its Fatal and Fatalf print the
// message to stderr and exit the process with status 1; Helper, Log,
// Logf, Error and Errorf work as their names say (an error also exits
// 1); any other method panics.
func MainTB() testing.TB { return mainTB{} }

type mainTB struct{ testing.TB }

func (mainTB) Helper()                         {}
func (mainTB) Log(args ...any)                 { fmt.Fprintln(os.Stderr, args...) }
func (mainTB) Logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (m mainTB) Error(args ...any)             { m.Fatal(args...) }
func (m mainTB) Errorf(format string, args ...any) {
	m.Fatalf(format, args...)
}
func (mainTB) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}
func (mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
