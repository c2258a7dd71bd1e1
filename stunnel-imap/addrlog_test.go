package main

import (
	"strings"
	"testing"
)

// TestAuthFailCounted: every refusal of a login the proxy relays (IMAP
// LOGIN and AUTHENTICATE, POP3 PASS) is counted in the log line's
// authfail=; the warnings carry the client's address.
func TestAuthFailCounted(t *testing.T) {
	h := start(t, setup{mode: modeOptional})
	h.run([]step{s(serverGreeting), C(greetOptional),
		c("a LOGIN alice wrong\r\n"), S("a LOGIN alice wrong\r\n"), s("a NO [AUTHENTICATIONFAILED] no\r\n"), C("a NO [AUTHENTICATIONFAILED] no\r\n"),
		c("b AUTHENTICATE PLAIN\r\n"), S("b AUTHENTICATE PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
		c("AGFsaWNlAHdyb25n\r\n"), S("AGFsaWNlAHdyb25n\r\n"), s("b NO no\r\n"), C("b NO no\r\n"),
		c("c NOOP\r\n"), S("c NOOP\r\n"), s("c NO not a login\r\n"), C("c NO not a login\r\n"),
		c("d STARTTLS x\r\n"), C("d BAD STARTTLS takes no arguments\r\n"),
		clientHalfClose(), serverEnds()})
	h.ended("client-eof", " auth=no authfail=2 in=",
		"stunnel-imap: warning: client sent STARTTLS with arguments; remote=192.0.2.1:4711\n")

	p := start(t, setup{mode: mustMode("pop3-")})
	p.run([]step{s("+OK hi\r\n"), C("+OK hi\r\n"),
		c("USER alice\r\n"), S("USER alice\r\n"), s("+OK\r\n"), C("+OK\r\n"),
		c("PASS wrong\r\n"), S("PASS wrong\r\n"), s("-ERR [AUTH] no\r\n"), C("-ERR [AUTH] no\r\n"),
		clientHalfClose(), serverEnds()})
	p.ended("client-eof", " auth=no authfail=1 in=")

	// None failed: no authfail= at all (the line as before).
	n := start(t, setup{mode: modeOptional})
	n.run([]step{s(serverGreeting), C(greetOptional), clientHalfClose(), serverEnds()})
	if sess := n.ended("client-eof"); strings.Contains(n.logs.String(), "authfail") || sess.authFailed != 0 {
		t.Errorf("authfail without a failure: %s", n.logs.String())
	}
}
