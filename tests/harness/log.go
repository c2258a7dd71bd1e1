package harness

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LogFields parses the key=value fields of a log line.
func LogFields(line string) map[string]string {
	f := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			f[k] = v
		}
	}
	return f
}

// CheckSessionLog finds the info line of the session that came from
// local port clientPort and checks its fields (remote, mode, starttls,
// tls, auth, in, out: stunnel-imap's one line per connection).
func CheckSessionLog(t *testing.T, p *Pipeline, clientPort int, mode, starttls, auth string) map[string]string {
	t.Helper()
	line := p.WaitLog(t, `stunnel-imap: info: remote=127\.0\.0\.1:`+strconv.Itoa(clientPort)+` `, 15*time.Second)
	f := LogFields(line)
	if f["mode"] != mode {
		t.Errorf("log line: mode %q, want %q: %s", f["mode"], mode, line)
	}
	if f["starttls"] != starttls {
		t.Errorf("log line: starttls %q, want %q: %s", f["starttls"], starttls, line)
	}
	if v := f["tls"]; v != "1.2" && v != "1.3" {
		t.Errorf("log line: tls %q, want 1.2 or 1.3: %s", v, line)
	}
	if f["auth"] != auth {
		t.Errorf("log line: auth %q, want %q: %s", f["auth"], auth, line)
	}
	for _, k := range []string{"in", "out"} {
		if n, err := strconv.Atoi(f[k]); err != nil || n <= 0 {
			t.Errorf("log line: %s=%q, want a byte count: %s", k, f[k], line)
		}
	}
	if f["cipher"] == "" || f["cipher"] == "none" {
		t.Errorf("log line: no cipher: %s", line)
	}
	return f
}

// ClientPortFromLog returns the remote port in the first info line (for
// clients whose local port the test cannot see).
func ClientPortFromLog(t *testing.T, p *Pipeline) int {
	t.Helper()
	line := p.WaitLog(t, `stunnel-imap: info: .*127\.0\.0\.1:[0-9]+`, 15*time.Second)
	m := regexp.MustCompile(`127\.0\.0\.1:([0-9]+)`).FindStringSubmatch(line)
	n, _ := strconv.Atoi(m[1])
	return n
}
