package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a private, login-capable Dovecot started by tests/dovecot.sh:
// users alice (password secret, three messages in INBOX) and bob
// (password hunter2).
type Dovecot struct {
	Dir    string // its directory: dovecot.conf, dovecot.log, home/USER/Maildir
	Socket string // the imap-login unix socket (plaintext IMAP, LOGIN works)
	Script string // tests/dovecot.sh
}

// StartDovecot starts a private Dovecot Listening on a unix socket only,
// stopped and removed when the test ends.
func StartDovecot(t testing.TB) *Dovecot {
	t.Helper()
	NeedRoot(t)
	Need(t, "dovecot", "doveadm", "socat", "setuidgid", "/usr/lib/dovecot/imap")
	// a short path of its own: unix socket paths are limited to 108 bytes,
	// and the mail account must be able to traverse it
	dir, err := os.MkdirTemp("/tmp", "imaptls-dc-")
	if err != nil {
		t.Fatalf("unable to create a directory: %v", err)
	}
	d := &Dovecot{Dir: dir, Socket: filepath.Join(dir, "imap.sock"),
		Script: filepath.Join(RepoRoot(t), "tests", "dovecot.sh")}
	cmd := exec.Command("sh", d.Script, "start", dir)
	cmd.WaitDelay = 5 * time.Second // in case a daemon keeps the output pipe
	out, err := cmd.CombinedOutput()
	if err != nil {
		exec.Command("sh", d.Script, "stop", dir).Run()
		os.RemoveAll(dir)
		t.Fatalf("unable to start dovecot: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Dovecot's master takes about 2.5 s to exit (it waits for its
		// log process): the stop and the removal run detached, so that
		// the tests do not wait for it.
		cmd := exec.Command("sh", "-c", `sh "$0" stop "$1" >/dev/null 2>&1; rm -rf "$1"`, d.Script, dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			t.Errorf("unable to stop dovecot: %v", err)
			return
		}
		go cmd.Wait()
	})
	return d
}

// LoginCmd is the login-capable backend as makesock's second program:
// `sh tests/dovecot.sh login DIR` (socat to the unix socket).
func (d *Dovecot) LoginCmd() []string { return []string{"sh", d.Script, "login", d.Dir} }

// RawLoginCmd is LoginCmd that also records every byte the backend
// receives, one file DIR/raw.PID per connection (see Raw).
func (d *Dovecot) RawLoginCmd() []string {
	return []string{"sh", "-c", `exec socat -t 5 -r "$0/raw.$$" STDIO,shut-down "UNIX-CONNECT:$0/imap.sock"`, d.Dir}
}

// Raw returns everything the RawLoginCmd backends received so far, all
// connections concatenated.
func (d *Dovecot) Raw(t testing.TB) string {
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

// ImapCmd is the pre-authenticated stdio backend (greets with PREAUTH):
// `sh tests/dovecot.sh imap DIR USER`.
func (d *Dovecot) ImapCmd(user string) []string {
	return []string{"sh", d.Script, "imap", d.Dir, user}
}

// Log returns Dovecot's log so far (logins, disconnections, errors).
func (d *Dovecot) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	if err != nil {
		t.Fatalf("unable to read the dovecot log: %v", err)
	}
	b2, _ := os.ReadFile(filepath.Join(d.Dir, "imap.log"))
	return string(b) + string(b2)
}

// Maildir is the path of user's Maildir.
func (d *Dovecot) Maildir(user string) string {
	return filepath.Join(d.Dir, "home", user, "Maildir")
}

// NoSecrets fails when a password shows up in the pipeline's or
// Dovecot's logs.
func NoSecrets(t *testing.T, p *Pipeline, d *Dovecot) {
	t.Helper()
	for _, pw := range []string{"secret", "hunter2"} {
		if strings.Contains(p.Stderr(), pw) {
			t.Errorf("the password %q is in the pipeline's log:\n%s", pw, p.Stderr())
		}
		if d != nil && strings.Contains(d.Log(t), pw) {
			t.Errorf("the password %q is in Dovecot's log", pw)
		}
	}
}

// NeverReachedDovecot fails when any of bad (upper case) is in what the
// RawLoginCmd backends received, when Dovecot's log shows a login
// attempt of alice, or when a password is in a log (NoSecrets).
func NeverReachedDovecot(t *testing.T, p *Pipeline, d *Dovecot, bad ...string) {
	t.Helper()
	raw := strings.ToUpper(d.Raw(t))
	for _, b := range bad {
		if strings.Contains(raw, b) {
			t.Errorf("Dovecot received %s:\n%q", b, raw)
		}
	}
	if strings.Contains(d.Log(t), "user=<alice>") {
		t.Errorf("Dovecot's log shows a login attempt of alice:\n%s", d.Log(t))
	}
	NoSecrets(t, p, d)
}

// POP3LoginCmd is the POP3 login service as makesock's second program:
// `sh tests/dovecot.sh pop3login DIR` (socat to DIR/pop3.sock).
func (d *Dovecot) POP3LoginCmd() []string { return []string{"sh", d.Script, "pop3login", d.Dir} }

// RawPOP3LoginCmd is POP3LoginCmd that also records every byte the
// backend receives (see Raw).
func (d *Dovecot) RawPOP3LoginCmd() []string {
	return []string{"sh", "-c", `exec socat -t 5 -r "$0/raw.$$" STDIO,shut-down "UNIX-CONNECT:$0/pop3.sock"`, d.Dir}
}

// HAProxyCmd reaches Dovecot's login service on its haproxy = yes port.
func (d *Dovecot) HAProxyCmd() []string { return []string{"sh", d.Script, "haproxy", d.Dir} }

// WaitDovecotLog waits for a line of Dovecot's log matching re.
func WaitDovecotLog(t testing.TB, d *Dovecot, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for deadline := time.Now().Add(15 * time.Second); ; {
		for _, l := range strings.Split(d.Log(t), "\n") {
			if rx.MatchString(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Dovecot log line matching %q:\n%s", re, d.Log(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
