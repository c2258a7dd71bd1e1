package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWritesTheServiceFolder: what imap-tls-conf writes is the
// repository's service/ folder as it is on disk (run, log/run,
// signer/run, signer/log/run, every file of env/), byte for byte and
// with each file's mode as git keeps it (0755 or 0644), root's; only the
// site's values in env/ differ. Nothing is written that service/ does
// not hold, and nothing of it is left out.
func TestWritesTheServiceFolder(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "svc")
	if err := run([]string{"-m", "pop3s", acct, logacct, dir, "127.0.0.1", "1995"}, new(bytes.Buffer)); err != nil {
		t.Fatalf("run: %v", err)
	}
	src := filepath.Join("..", "service")
	path, err := os.ReadFile(filepath.Join(src, "env", "PATH"))
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	site := map[string]string{
		"env/ACCOUNT":    acct + "\n",
		"env/LOGACCOUNT": logacct + "\n",
		"env/IP":         "127.0.0.1\n",
		"env/PORT":       "1995\n",
		"env/MODE":       "pop3s\n",
		"env/IMAPD":      "127.0.0.1:10110\n",
		"env/PATH":       filepath.Dir(exe) + ":" + string(path),
	}
	written := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			written[rel] = true
		}
		return err
	})
	compared := 0
	for _, top := range []string{"run", "env", "log", "signer"} {
		err := filepath.WalkDir(filepath.Join(src, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(src, p)
			want, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			wantMode := fs.FileMode(0644)
			if fi.Mode()&0111 != 0 {
				wantMode = 0755
			}
			if v, ok := site[rel]; ok {
				want = []byte(v)
				delete(site, rel)
			}
			got, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Errorf("service/%s not written: %v", rel, err)
				return nil
			}
			gi, _ := os.Lstat(filepath.Join(dir, rel))
			st := gi.Sys().(*syscall.Stat_t)
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from service/%s:\n got %q\nwant %q", rel, rel, got, want)
			}
			if gi.Mode() != wantMode || st.Uid != 0 || st.Gid != 0 {
				t.Errorf("%s: mode %v owner %d:%d, want %v root's", rel, gi.Mode(), st.Uid, st.Gid, wantMode)
			}
			delete(written, rel)
			compared++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for rel := range written {
		t.Errorf("%s written, but service/ has no %s", rel, rel)
	}
	for rel := range site {
		t.Errorf("site value %s: service/ has no %s", rel, rel)
	}
	if compared < 19 {
		t.Errorf("compared %d files, want the 4 run files and at least 15 of env/", compared)
	}
	// The run files name no account: env/ does.
	for _, f := range []string{"run", "log/run", "signer/run", "signer/log/run"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if strings.Contains(string(b), acct) || strings.Contains(string(b), logacct+" ") {
			t.Errorf("%s names an account:\n%s", f, b)
		}
	}
}
