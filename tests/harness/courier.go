package harness

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Courier is a private Courier started by tests/courier.sh (the Daemon
// shape): authdaemond with a userdb of alice and bob, mail owned by
// imaptlsmail; its login servers, imaplogin and pop3login, run in a
// private mount namespace (courier.sh's top says why).
type Courier struct {
	daemon // Dir: configuration (etc/courier), authdaemon/, home/USER/Maildir
}

// StartCourier fetches Courier's packages when the cache lacks them (a
// test that needs Courier gets it or fails saying why, never skips),
// starts authdaemond, and stops it when the test ends.
func StartCourier(t testing.TB) *Courier {
	t.Helper()
	NeedRoot(t)
	Need(t, "unshare", "socat", "openssl", "setsid", "flock")
	return &Courier{startDaemon(t, "courier", "; packages from apt-get download, cached in /var/cache/imap-tls-test/courier")}
}

// LoginCmd is Courier's IMAP login server as makesock's second program:
// `sh tests/courier.sh imaplogin DIR`, which runs `imaplogin
// /usr/bin/imapd Maildir` in Courier's namespace with Debian's
// /etc/courier/imapd settings; env (IMAP_STARTTLS=YES, say) is set for it.
func (c *Courier) LoginCmd(env ...string) []string { return c.Cmd("imaplogin", env) }

// POP3LoginCmd is Courier's POP3 login server: `sh tests/courier.sh pop3login DIR`.
func (c *Courier) POP3LoginCmd(env ...string) []string { return c.Cmd("pop3login", env) }

// RawLoginCmd is LoginCmd with a recording of what Courier received:
// socat between the connection and the server, which it starts.
func (c *Courier) RawLoginCmd(env ...string) []string {
	return c.rawCmd(env, "SYSTEM:exec sh "+c.Script+" imaplogin "+c.Dir)
}

// RawPOP3LoginCmd is POP3LoginCmd with a recording of what Courier received.
func (c *Courier) RawPOP3LoginCmd(env ...string) []string {
	return c.rawCmd(env, "SYSTEM:exec sh "+c.Script+" pop3login "+c.Dir)
}

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
