package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Courier is a private Courier started by tests/courier.sh: authdaemond
// with a userdb of alice (password secret, three messages) and bob
// (password hunter2), mail owned by imaptlsmail.
type Courier struct {
	Dir    string // configuration (etc/courier), authdaemon/, home/USER/Maildir
	Script string // tests/courier.sh
}

// StartCourier fetches Courier's packages when the cache lacks them (a
// test that needs Courier gets it or fails saying why, never skips),
// starts authdaemond, and stops it when the test ends.
func StartCourier(t testing.TB) *Courier {
	t.Helper()
	NeedRoot(t)
	Need(t, "unshare", "socat", "openssl", "setsid", "flock")
	dir, err := os.MkdirTemp("/tmp", "imaptls-cr-")
	if err != nil {
		t.Fatalf("unable to create a directory: %v", err)
	}
	c := &Courier{Dir: dir, Script: filepath.Join(RepoRoot(t), "tests", "courier.sh")}
	cmd := exec.Command("sh", c.Script, "start", dir)
	cmd.WaitDelay = 5 * time.Second // authdaemond must not hold the output
	out, err := cmd.CombinedOutput()
	if err != nil {
		exec.Command("sh", c.Script, "stop", dir).Run()
		os.RemoveAll(dir)
		t.Fatalf("unable to start Courier (tests/courier.sh start; packages from apt-get download, cached in /var/cache/imap-tls-test/courier): %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("sh", c.Script, "stop", dir).Run()
		os.RemoveAll(dir)
	})
	return c
}

// withEnv puts `env VAR=value ...` in front of argv when env is not empty.
func withEnv(env []string, argv ...string) []string {
	if len(env) == 0 {
		return argv
	}
	return append(append([]string{"env"}, env...), argv...)
}

// IMAPCmd is Courier's IMAP login server as makesock's second program:
// `sh tests/courier.sh imaplogin DIR`, which runs `imaplogin
// /usr/bin/imapd Maildir` in Courier's namespace with Debian's
// /etc/courier/imapd settings; env (IMAP_STARTTLS=YES, say) is set for it.
func (c *Courier) IMAPCmd(env ...string) []string {
	return withEnv(env, "sh", c.Script, "imaplogin", c.Dir)
}

// POP3Cmd is Courier's POP3 login server: `sh tests/courier.sh pop3login DIR`.
func (c *Courier) POP3Cmd(env ...string) []string {
	return withEnv(env, "sh", c.Script, "pop3login", c.Dir)
}

// rawCmd records every byte the login server `sub` receives, one file
// DIR/raw.PID per connection (see Raw): socat between the connection and
// the server, which it starts.
func (c *Courier) rawCmd(sub string, env []string) []string {
	return withEnv(env, "sh", "-c", `exec socat -t 5 -r "$0/raw.$$" STDIO,shut-down SYSTEM:"exec sh $1 $2 $0"`, c.Dir, c.Script, sub)
}

// RawIMAPCmd is IMAPCmd with a recording of what Courier received.
func (c *Courier) RawIMAPCmd(env ...string) []string { return c.rawCmd("imaplogin", env) }

// RawPOP3Cmd is POP3Cmd with a recording of what Courier received.
func (c *Courier) RawPOP3Cmd(env ...string) []string { return c.rawCmd("pop3login", env) }

// Raw returns everything the Raw*Cmd backends received so far.
func (c *Courier) Raw(t testing.TB) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.Dir, "raw.*"))
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
func (c *Courier) ClearRaw() {
	files, _ := filepath.Glob(filepath.Join(c.Dir, "raw.*"))
	for _, f := range files {
		os.Remove(f)
	}
}

// Maildir is the path of user's Maildir.
func (c *Courier) Maildir(user string) string { return filepath.Join(c.Dir, "home", user, "Maildir") }

// Seed returns alice's seed message n as Courier sends it: the bytes
// of its file (Courier stores LF line ends) with CRLF line ends.
func (c *Courier) Seed(t *testing.T, n int) []byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.Maildir("alice"), "*", "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "Subject: seed message "+strconv.Itoa(n)+"\n") {
			return []byte(strings.ReplaceAll(string(b), "\n", "\r\n"))
		}
	}
	t.Fatalf("seed message %d not in %s", n, c.Maildir("alice"))
	return nil
}
