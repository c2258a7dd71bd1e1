package main

import (
	"crypto/tls"
	"fmt"
	"time"

	"imap-tls/log"
)

// warnings logs each kind of warning once per session and counts them
// all: a client that repeats a refused command fifty thousand times
// leaves one warning line and a count in the session's log line, not
// fifty thousand lines that would rotate multilog's history away.
type warnings struct {
	seen  map[string]bool // by format
	count int
}

// warn logs a warning the first time its format occurs in this session.
func (s *session) warn(format string, args ...any) {
	s.warnings.count++
	if s.warnings.seen[format] {
		return
	}
	if s.warnings.seen == nil {
		s.warnings.seen = map[string]bool{}
	}
	s.warnings.seen[format] = true
	// The client's address in every line, so that concurrent
	// connections can be told apart and fail2ban can act; last, so that
	// the message still starts with what happened.
	s.cfg.log.Warning("%s; remote=%s", fmt.Sprintf(format, args...), s.cfg.remote)
}

// field keeps a client-chosen value (the server name) to one bounded
// word.
func field(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(log.Clip(s, maxLogged))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '?'
		}
	}
	return string(b)
}

func yesno(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// maxReason bounds the log line's reason (an address and a system
// error: a unix socket's path is at most 107 bytes).
const maxReason = 300

// logEnd writes the session's one info line.
func (s *session) logEnd() {
	if s.cfg.verbosity < 0 {
		return
	}
	cipher := "none"
	if s.state.Version != 0 {
		cipher = tls.CipherSuiteName(s.state.CipherSuite)
	}
	// authfail=N, the server's refusals of a login, only when there
	// were some.
	auth := yesno(s.loggedIn)
	if s.authFailed > 0 {
		auth += fmt.Sprintf(" authfail=%d", s.authFailed)
	}
	// reason="...", why the server side or the key holder failed, only
	// when known; before end=, so that end= stays the line's last field.
	reason := ""
	if s.reason != "" {
		reason = fmt.Sprintf(" reason=%q", log.Clip(s.reason, maxReason))
	}
	s.cfg.log.Info("remote=%s mode=%s starttls=%s tls=%s cipher=%s sni=%s auth=%s in=%d out=%d warnings=%d duration=%.3fs%s end=%s",
		s.cfg.remote, s.cfg.mode.Name, yesno(s.starttls), tlsVersion(s.state), cipher, field(s.sni), auth,
		s.in.Load(), s.out.Load(), s.warnings.count, time.Since(s.start).Seconds(), reason, s.end)
}

// info writes a -v info line, with the client's address as warn does.
func (s *session) info(format string, args ...any) {
	s.cfg.log.Info("%s; remote=%s", fmt.Sprintf(format, args...), s.cfg.remote)
}
