package tests

// sh redo.do install and uninstall, into a DESTDIR of the test's own:
// what goes where, that a second install changes nothing, that an
// upgrade renames (a running program keeps its old inode), and that
// uninstall removes exactly what install put there.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/suite"
	"imap-tls/internal/testkit"
)

// redoInstall runs `sh redo.do target` in tree with PREFIX, DESTDIR
// and IMAPTLS_BIN; it returns the output and the exit code.
func redoInstall(t *testing.T, target, tree, bin, dest string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "redo.do", target)
	cmd.Dir = tree
	cmd.Env = append(os.Environ(), "PREFIX=/usr/local", "DESTDIR="+dest, "IMAPTLS_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("sh redo.do %s: no end in 5 minutes:\n%s", target, out)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sh redo.do %s: %v", target, err)
	}
	return string(out), code
}

// fileState is what an install must leave alone: bytes, mode, mtime and
// inode (a file renamed over has a new one).
type fileState struct {
	sum   [32]byte
	mode  fs.FileMode
	mtime time.Time
	ino   uint64
}

// snapshot maps every file below dir (relative paths) to its state.
func snapshot(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	files := map[string]fileState{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = fileState{sha256.Sum256(b), fi.Mode(), fi.ModTime(), fi.Sys().(*syscall.Stat_t).Ino}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sortedKeys(m map[string]fileState) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sameFiles reports every file of want that changed or went, and every
// file that came.
func sameFiles(t *testing.T, what string, got, want map[string]fileState) {
	t.Helper()
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: %s is gone", what, k)
		case g != want[k]:
			t.Errorf("%s: %s changed: %+v, was %+v", what, k, g, want[k])
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s is new", what, k)
		}
	}
}

func copyFile(t *testing.T, src, dst string, mode fs.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the repository's files (not .git, bin/ or tests/) to
// a folder of the test's own, modes kept: installs compared with each
// other must read the same pages and service files, whatever is edited
// in the working tree meanwhile.
func copyTree(t *testing.T) string {
	t.Helper()
	src := testkit.RepoRoot(t)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		switch {
		case d.IsDir() && (rel == ".git" || rel == "bin" || rel == "tests"):
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		copyFile(t, p, filepath.Join(dst, rel), fi.Mode().Perm())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// shippedService lists service/'s files as install takes them: no Go
// source, no test data, no hidden or backup file.
func shippedService(t *testing.T, tree string) []string {
	t.Helper()
	root := filepath.Join(tree, "service")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if name == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(name, ".go") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestInstall: sh redo.do install puts every program in PREFIX/bin (it
// runs: -h gives its usage line and exit 100), a man page for each in
// man1 or man8 that man finds and renders without a warning, with NAME,
// SYNOPSIS and DESCRIPTION, and service/'s files under share/imap-tls
// (the deploy hook under lib/imap-tls), all listed in the MANIFEST. A
// second install changes no file; an upgrade renames over what changed,
// and removes what is no longer shipped; uninstall removes what install
// put there and nothing else.
func TestInstall(t *testing.T) {
	for _, tool := range []string{"man", "groff", "tbl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("no %s: apt-get install man-db groff-base", tool)
		}
	}
	// the programs, copied: a build of bin/ during the test must not
	// change what the installs compare
	bin := t.TempDir()
	for _, p := range suite.Programs {
		copyFile(t, testkit.Bin(t, p), filepath.Join(bin, p), 0o755)
	}
	tree := copyTree(t)
	dest := t.TempDir()
	prefix := filepath.Join(dest, "usr", "local")

	out, code := redoInstall(t, "install", tree, bin, dest)
	if code != 0 {
		t.Fatalf("install: exit %d:\n%s", code, out)
	}
	installed := snapshot(t, dest)
	var listed []string // what the MANIFEST must say

	manEnv := append(os.Environ(), "LC_ALL=C.UTF-8", "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
	for _, p := range suite.Programs {
		path := filepath.Join(prefix, "bin", p)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		listed = append(listed, "bin/"+p)
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", path, fi.Mode())
		}
		if a, b := snapshot(t, bin)[p].sum, installed[filepath.Join("usr/local/bin", p)].sum; a != b {
			t.Errorf("%s: not the bytes of the program built", path)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(path, "-h")
		cmd.Stderr = &stderr
		err = cmd.Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 100 {
			t.Errorf("%s -h: %v, want exit 100", p, err)
		}
		if !strings.Contains("\n"+stderr.String(), "\n"+p+": usage: "+p+" ") {
			t.Errorf("%s -h: no usage line in %q", p, stderr.String())
		}

		// its man page: in section 1 or 8, not both
		var pages []string
		for _, sec := range []string{"1", "8"} {
			rel := fmt.Sprintf("share/man/man%s/%s.%s", sec, p, sec)
			if _, err := os.Stat(filepath.Join(prefix, rel)); err == nil {
				pages = append(pages, rel)
			}
		}
		if len(pages) != 1 {
			t.Errorf("%s: man pages %v, want one in man1 or man8", p, pages)
			continue
		}
		listed = append(listed, pages[0])
		page := filepath.Join(prefix, pages[0])
		var gerr bytes.Buffer
		groff := exec.Command("groff", "-t", "-man", "-Tutf8", "-ww", "-z", page)
		groff.Stderr = &gerr
		if err := groff.Run(); err != nil || gerr.Len() > 0 {
			t.Errorf("%s: groff -ww: %v\n%s", page, err, gerr.String())
		}
		// as `man imap-tls-conf` finds it once PREFIX/share/man is in
		// the manual path
		var mout, merr bytes.Buffer
		man := exec.Command("man", "-M", filepath.Join(prefix, "share", "man"), p)
		man.Env, man.Stdout, man.Stderr = manEnv, &mout, &merr
		if err := man.Run(); err != nil || merr.Len() > 0 {
			t.Errorf("man %s: %v\n%s", p, err, merr.String())
		}
		lines := strings.Split(mout.String(), "\n")
		for _, h := range []string{"NAME", "SYNOPSIS", "DESCRIPTION"} {
			if !slices.Contains(lines, h) {
				t.Errorf("man %s: no %s section", p, h)
			}
		}
		if !strings.Contains(mout.String(), p+" - ") {
			t.Errorf("man %s: its NAME line is not %q", p, p+" - summary")
		}
		var lout, lerr bytes.Buffer
		manl := exec.Command("man", "-l", page)
		manl.Env, manl.Stdout, manl.Stderr = manEnv, &lout, &lerr
		if err := manl.Run(); err != nil || lerr.Len() > 0 || lout.String() != mout.String() {
			t.Errorf("man -l %s: %v, %q; the same as man %s: %v", page, err, lerr.String(), p, lout.String() == mout.String())
		}
	}
	if !t.Failed() {
		t.Logf("every program in bin/, runs, and has a man page that man finds and renders")
	}

	// service/'s files, the same bytes, under share/imap-tls or (the
	// deploy hook) lib/imap-tls
	for _, f := range shippedService(t, tree) {
		want, err := os.ReadFile(filepath.Join(tree, "service", f))
		if err != nil {
			t.Fatal(err)
		}
		found := ""
		for _, d := range []string{"share/imap-tls", "lib/imap-tls"} {
			if got, err := os.ReadFile(filepath.Join(prefix, d, f)); err == nil {
				if found != "" {
					t.Errorf("service/%s installed twice", f)
				}
				found = d + "/" + f
				if !bytes.Equal(got, want) {
					t.Errorf("%s: not the bytes of service/%s", found, f)
				}
			}
		}
		if found == "" {
			t.Errorf("service/%s is not installed", f)
			continue
		}
		listed = append(listed, found)
	}
	if fi, err := os.Stat(filepath.Join(prefix, "lib/imap-tls/certbot-deploy-hook")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the deploy hook is not PREFIX/lib/imap-tls/certbot-deploy-hook, 0755 (README names it there): %v", err)
	}

	// the MANIFEST lists what was installed, and nothing else is there
	manifest, err := os.ReadFile(filepath.Join(prefix, "share/imap-tls/MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	if got := strings.Fields(string(manifest)); !slices.Equal(got, listed) {
		t.Errorf("MANIFEST:\n%s\nwant:\n%s", manifest, strings.Join(listed, "\n"))
	}
	if len(installed) != len(listed)+1 {
		t.Errorf("%d files under DESTDIR, want the %d listed and MANIFEST: %v", len(installed), len(listed), sortedKeys(installed))
	}

	// again: not one file written
	time.Sleep(20 * time.Millisecond) // so that a rewrite would show in mtime
	if out, code := redoInstall(t, "install", tree, bin, dest); code != 0 || !strings.Contains(out, " 0 written") {
		t.Errorf("second install: exit %d, want 0 and 0 written:\n%s", code, out)
	}
	sameFiles(t, "second install", snapshot(t, dest), installed)

	// an upgrade: an older makesock, running (its file held open), and a
	// file the older version shipped that this one does not
	old := filepath.Join(prefix, "bin", "makesock")
	if err := os.WriteFile(old, []byte("#!/bin/sh\necho older\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	running, err := os.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	obsolete := filepath.Join(prefix, "share/imap-tls/obsolete.conf")
	if err := os.WriteFile(obsolete, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mf := filepath.Join(prefix, "share/imap-tls/MANIFEST")
	if err := os.WriteFile(mf, append(slices.Clone(manifest), "share/imap-tls/obsolete.conf\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if out, code := redoInstall(t, "install", tree, bin, dest); code != 0 {
		t.Fatalf("upgrade: exit %d:\n%s", code, out)
	}
	after := snapshot(t, dest)
	if _, err := os.Stat(obsolete); !os.IsNotExist(err) {
		t.Errorf("upgrade: %s, no longer shipped, is still there: %v", obsolete, err)
	}
	mk := filepath.Join("usr/local/bin/makesock")
	if after[mk].sum != installed[mk].sum {
		t.Errorf("upgrade: makesock is not the program built again")
	}
	if fi, _ := running.Stat(); fi.Sys().(*syscall.Stat_t).Ino == after[mk].ino {
		t.Errorf("upgrade: makesock was written in place, not renamed over: a running program's file changed under it")
	}
	if b, _ := io.ReadAll(running); string(b) != "#!/bin/sh\necho older\n" {
		t.Errorf("upgrade: the running program's file now reads %.40q", b)
	}
	mfKey := "usr/local/share/imap-tls/MANIFEST"
	for _, k := range []string{mk, mfKey} {
		delete(after, k)
	}
	want := map[string]fileState{}
	for k, v := range installed {
		if k != mk && k != mfKey {
			want[k] = v
		}
	}
	sameFiles(t, "upgrade (the other files)", after, want)
	if got, _ := os.ReadFile(mf); !bytes.Equal(got, manifest) {
		t.Errorf("upgrade: MANIFEST is not this install's list:\n%s", got)
	}

	// uninstall: what install put there goes; another program in bin/,
	// a file of the administrator's under share/imap-tls and a site
	// directory stay
	theirs := []string{"usr/local/bin/other-program", "usr/local/share/imap-tls/local.conf", "etc/imap-tls/env/PORT"}
	for _, f := range theirs {
		p := filepath.Join(dest, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kept := map[string]fileState{}
	for k, v := range snapshot(t, dest) {
		if slices.Contains(theirs, k) {
			kept[k] = v
		}
	}
	out, code = redoInstall(t, "uninstall", tree, bin, dest)
	if code != 0 || !strings.Contains(out, "/etc/imap-tls") {
		t.Errorf("uninstall: exit %d, want 0 and a word on site directories:\n%s", code, out)
	}
	sameFiles(t, "uninstall", snapshot(t, dest), kept)
	if out, code := redoInstall(t, "uninstall", tree, bin, dest); code != 0 || !strings.Contains(out, "nothing to uninstall") {
		t.Errorf("second uninstall: exit %d:\n%s", code, out)
	}

	// a MANIFEST that names a file outside PREFIX is refused whole
	if out, code := redoInstall(t, "install", tree, bin, dest); code != 0 {
		t.Fatalf("install: exit %d:\n%s", code, out)
	}
	outside := filepath.Join(dest, "outside")
	if err := os.WriteFile(outside, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, append(slices.Clone(manifest), "../../outside\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = redoInstall(t, "uninstall", tree, bin, dest)
	if code != 100 || !strings.Contains(out, "refused line: ../../outside") {
		t.Errorf("uninstall with ../../outside in MANIFEST: exit %d, want 100 and the line refused:\n%s", code, out)
	}
	for _, f := range []string{outside, filepath.Join(prefix, "bin/makesock")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("uninstall refused, yet %s is gone: %v", f, err)
		}
	}
}
