package harness

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dovecot is a private, login-capable Dovecot started by tests/dovecot.sh
// (the Daemon shape): its login servers on unix sockets, DIR/imap.sock
// and, with dovecot-pop3d, DIR/pop3.sock; the same login services on
// loopback ports with haproxy = yes (HAProxyCmd); the stdio imap binary,
// pre-authenticated (ImapCmd).
type Dovecot struct {
	daemon        // Dir: dovecot.conf, dovecot.log, home/USER/Maildir
	Socket string // the imap-login unix socket (plaintext IMAP, LOGIN works)
}

// StartDovecot starts a private Dovecot, stopped and removed when the
// test ends. Its haproxy listeners take ports from Port.
func StartDovecot(t testing.TB) *Dovecot {
	t.Helper()
	NeedRoot(t)
	Need(t, "dovecot", "doveadm", "socat", "setuidgid", "/usr/lib/dovecot/imap")
	d := &Dovecot{daemon: startDaemon(t, "dovecot", "",
		"DOVECOT_IMAP_HAPROXY_PORT="+strconv.Itoa(Port(t)), "DOVECOT_POP3_HAPROXY_PORT="+strconv.Itoa(Port(t)))}
	d.Socket = filepath.Join(d.Dir, "imap.sock")
	return d
}

// LoginCmd is the login-capable backend as makesock's second program:
// `sh tests/dovecot.sh login DIR` (socat to the unix socket).
func (d *Dovecot) LoginCmd(env ...string) []string { return d.Cmd("login", env) }

// RawLoginCmd is LoginCmd that also records every byte the backend
// receives, one file DIR/raw.PID per connection (see Raw).
func (d *Dovecot) RawLoginCmd(env ...string) []string {
	return d.rawCmd(env, "UNIX-CONNECT:"+filepath.Join(d.Dir, "imap.sock"))
}

// POP3LoginCmd is the POP3 login service as makesock's second program:
// `sh tests/dovecot.sh pop3login DIR` (socat to DIR/pop3.sock).
func (d *Dovecot) POP3LoginCmd(env ...string) []string { return d.Cmd("pop3login", env) }

// RawPOP3LoginCmd is POP3LoginCmd that also records every byte the
// backend receives (see Raw).
func (d *Dovecot) RawPOP3LoginCmd(env ...string) []string {
	return d.rawCmd(env, "UNIX-CONNECT:"+filepath.Join(d.Dir, "pop3.sock"))
}

// HAProxyCmd reaches Dovecot's IMAP login service on its haproxy = yes
// port: `sh tests/dovecot.sh haproxy DIR`.
func (d *Dovecot) HAProxyCmd() []string { return d.Cmd("haproxy", nil) }

// ImapCmd is the pre-authenticated stdio backend (greets with PREAUTH):
// `sh tests/dovecot.sh imap DIR USER`.
func (d *Dovecot) ImapCmd(user string) []string { return d.Cmd("imap", nil, user) }

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
