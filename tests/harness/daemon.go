package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Daemon is what StartDovecot and StartCourier return: a private mail
// server with users alice (password secret, three messages in INBOX) and
// bob (password hunter2), whose login servers run on stdin/stdout as
// makesock's second program (PipelineOpts.Backend, env/IMAPD). env, when
// given, is set for the login server (`env VAR=value ... server`).
type Daemon interface {
	// LoginCmd is the IMAP login server; RawLoginCmd the same, with a
	// recording of every byte it receives (see Raw).
	LoginCmd(env ...string) []string
	RawLoginCmd(env ...string) []string
	// POP3LoginCmd is the POP3 login server; RawPOP3LoginCmd the same,
	// recorded.
	POP3LoginCmd(env ...string) []string
	RawPOP3LoginCmd(env ...string) []string
	// Raw returns what the Raw*Cmd servers received so far, every
	// connection's; ClearRaw forgets it.
	Raw(t testing.TB) string
	ClearRaw()
	// Maildir is the path of user's Maildir.
	Maildir(user string) string
}

var (
	_ Daemon = (*Dovecot)(nil)
	_ Daemon = (*Courier)(nil)
)

// daemon is the start/stop shape Dovecot and Courier share: a script of
// tests/ that lays out a directory of its own and runs the daemon there,
//
//	sh tests/NAME.sh start DIR    lay out DIR (home/USER/Maildir, alice's
//	                              seed messages), start, wait until alice
//	                              can log in
//	sh tests/NAME.sh stop DIR     stop, wait until it is gone
//	sh tests/NAME.sh SUB DIR      exec a login server on stdin/stdout
//
// and recordings of what the login servers received, DIR/raw.PID.
type daemon struct {
	Dir    string // the daemon's directory
	Script string // tests/NAME.sh
}

// startDaemon runs `sh tests/NAME.sh start DIR` with env added to its
// environment, in a fresh DIR under /tmp (a short path: a unix socket's
// is limited to 108 bytes, and the mail account must traverse it), and
// fails the test with the script's output (and hint) when it fails. When
// the test ends, `stop DIR` and the removal of DIR run detached: Dovecot's
// master takes about 2.5 s to exit (it waits for its log process), and
// the tests need not wait for it.
func startDaemon(t testing.TB, name, hint string, env ...string) daemon {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "imaptls-"+name+"-")
	if err != nil {
		t.Fatalf("unable to create a directory: %v", err)
	}
	d := daemon{Dir: dir, Script: filepath.Join(RepoRoot(t), "tests", name+".sh")}
	cmd := exec.Command("sh", d.Script, "start", dir)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second // in case a daemon keeps the output pipe
	out, err := cmd.CombinedOutput()
	if err != nil {
		exec.Command("sh", d.Script, "stop", dir).Run()
		os.RemoveAll(dir)
		t.Fatalf("unable to start %s (tests/%s.sh start%s): %v: %s", name, name, hint, err, out)
	}
	t.Cleanup(func() {
		cmd := exec.Command("sh", "-c", `sh "$0" stop "$1" >/dev/null 2>&1; rm -rf "$1"`, d.Script, dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Errorf("unable to stop %s: %v", name, err)
			return
		}
		go cmd.Wait()
	})
	return d
}

// Cmd is `sh tests/NAME.sh sub DIR args...`, after `env ENV...` when env
// is not empty.
func (d *daemon) Cmd(sub string, env []string, args ...string) []string {
	return withEnv(env, append([]string{"sh", d.Script, sub, d.Dir}, args...)...)
}

// rawCmd is a login server reached through socat at the socat address
// to, which records every byte the server receives in DIR/raw.PID, one
// file per connection (see Raw).
func (d *daemon) rawCmd(env []string, to string) []string {
	return withEnv(env, "sh", "-c", `exec socat -t 5 -r "$0/raw.$$" STDIO,shut-down "$1"`, d.Dir, to)
}

// Raw returns everything the Raw*Cmd backends received so far, all
// connections concatenated.
func (d *daemon) Raw(t testing.TB) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Dir, "raw.*"))
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("unable to read %s: %v", f, err)
		}
		all = append(all, b...)
	}
	return string(all)
}

// ClearRaw removes the recordings of the Raw*Cmd backends.
func (d *daemon) ClearRaw() {
	files, _ := filepath.Glob(filepath.Join(d.Dir, "raw.*"))
	for _, f := range files {
		os.Remove(f)
	}
}

// Maildir is the path of user's Maildir.
func (d *daemon) Maildir(user string) string { return filepath.Join(d.Dir, "home", user, "Maildir") }

// withEnv puts `env VAR=value ...` in front of argv when env is not empty.
func withEnv(env []string, argv ...string) []string {
	if len(env) == 0 {
		return argv
	}
	return append(append([]string{"env"}, env...), argv...)
}
