package main

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/suite"
	"imap-tls/log"
)

const (
	serverGreeting = "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] ready\r\n"
	greetRequired  = "* OK [CAPABILITY IMAP4rev1 LITERAL+ STARTTLS LOGINDISABLED] ready\r\n"
	greetOptional  = "* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN STARTTLS] ready\r\n"
	beginTLS       = "a OK Begin TLS negotiation now\r\n"
	privacy        = " NO [PRIVACYREQUIRED] TLS is required: use STARTTLS first\r\n"
	noLiterals     = " BAD [PRIVACYREQUIRED] No literals before TLS: use STARTTLS first\r\n"
)

// starttls is the opening of a session on a STARTTLS port up to a working
// TLS channel.
func starttls(greet string) []step {
	return []step{s(serverGreeting), C(greet), c("a STARTTLS\r\n"), C(beginTLS), handshake()}
}

func join(parts ...[]step) []step {
	var all []step
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

type scriptCase struct {
	name   string
	mode   suite.Mode
	script []step
	end    string
	logs   []string
	auth   bool
	starts bool // STARTTLS happened
}

func TestIMAPSessions(t *testing.T) {
	cases := []scriptCase{
		// Rule 1, 3: greetings and capability lists.
		{name: "greeting required", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), clientHalfClose(), serverEnds(), serverClose(), clientEnds()},
			end:    "client-eof"},
		{name: "greeting optional", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), clientHalfClose(), serverEnds()},
			end:    "client-eof"},
		{name: "greeting implicit, server advertises STARTTLS", mode: modeImplicit,
			script: []step{handshake(), s("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] hi\r\n"),
				C("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "capability relayed and rewritten before TLS", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a CAPABILITY\r\n"), S("a CAPABILITY\r\n"),
				s("* CAPABILITY IMAP4rev1 AUTH=PLAIN ID\r\na OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] done\r\n"),
				C("* CAPABILITY IMAP4rev1 ID STARTTLS LOGINDISABLED\r\na OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] done\r\n"),
				clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "greeting BYE relayed and end", mode: modeRequired,
			script: []step{s("* BYE too busy\r\n"), C("* BYE too busy\r\n"), clientEnds(), serverEnds()},
			end:    "server-bye"},
		{name: "PREAUTH on a STARTTLS port", mode: modeRequired,
			script: []step{s("* PREAUTH [CAPABILITY IMAP4rev1] hello\r\n"),
				C("* BYE Server is pre-authenticated: refusing a session without TLS\r\n"), clientEnds(), serverEnds()},
			end: "preauth", logs: []string{"warning: server greeted with PREAUTH"}},
		{name: "PREAUTH on an optional STARTTLS port", mode: modeOptional,
			script: []step{s("* PREAUTH hello\r\n"),
				C("* BYE Server is pre-authenticated: refusing a session without TLS\r\n"), clientEnds(), serverEnds()},
			end: "preauth"},
		{name: "PREAUTH relayed in implicit mode", mode: modeImplicit,
			script: []step{handshake(), s("* PREAUTH [CAPABILITY IMAP4rev2 STARTTLS] hi\r\n"), C("* PREAUTH [CAPABILITY IMAP4rev2] hi\r\n"),
				c("a STARTTLS\r\n"), S("a STARTTLS\r\n"), // authenticated: raw relay
				clientHalfClose(), serverEnds(), serverClose(), clientEnds()},
			end: "client-eof", auth: true},

		// Rule 2: STARTTLS.
		{name: "STARTTLS, login, relay", mode: modeRequired, starts: true, auth: true,
			script: join(starttls(greetRequired), []step{
				c("b CAPABILITY\r\n"), S("b CAPABILITY\r\n"),
				s("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN\r\nb OK done\r\n"),
				C("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nb OK done\r\n"),
				c("c LOGIN alice secret\r\n"), S("c LOGIN alice secret\r\n"),
				s("c OK [CAPABILITY IMAP4rev1 IDLE STARTTLS] logged in\r\n"),
				C("c OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n"),
				c("d SELECT INBOX\r\n"), S("d SELECT INBOX\r\n"), s("* 1 EXISTS\r\n"), C("* 1 EXISTS\r\n"),
				clientHalfClose(), serverEnds(), s("* BYE\r\n"), serverHalfClose(), C("* BYE\r\n"), clientEnds()}),
			end: "client-eof"},
		{name: "command pipelined after STARTTLS in the same write", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a STARTTLS\r\nb LOGIN alice secret\r\n"), C(beginTLS),
				clientEnds(), serverEnds()},
			end: "handshake-failed", logs: []string{"warning: client sent plaintext after STARTTLS"}},
		{name: "command pipelined after STARTTLS with a bare LF", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a STARTTLS\nb LOGIN alice secret\n"), C(beginTLS),
				clientEnds(), serverEnds()},
			end: "handshake-failed"},
		{name: "command after STARTTLS in a second quick write", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a STARTTLS\r\n"), c("b LOGIN alice secret\r\n"), C(beginTLS),
				clientEnds(), serverEnds()},
			end: "handshake-failed"},
		{name: "command pipelined after STARTTLS in optional mode", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), c("a STARTTLS\r\nb CAPABILITY\r\n"), C(beginTLS),
				clientEnds(), serverEnds()},
			end: "handshake-failed"},
		{name: "STARTTLS with arguments", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a STARTTLS now\r\n"), C("a BAD STARTTLS takes no arguments\r\n"),
				c("b NOOP\r\n"), S("b NOOP\r\n"), s("b OK\r\n"), C("b OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof", logs: []string{"warning: client sent STARTTLS with arguments"}},
		{name: "STARTTLS inside a literal", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), c("a NOOP {10}\r\n"), S("a NOOP {10}\r\n"),
				s("+ go ahead\r\n"), C("+ go ahead\r\n"), c("a STARTTLS\r\n"), S("a STARTTLS\r\n"),
				s("a BAD arguments\r\n"), C("a BAD arguments\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "STARTTLS inside a non-synchronizing literal", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), c("a NOOP {12+}\r\nb STARTTLS\r\n\r\n"), S("a NOOP {12}\r\n"),
				s("+ go ahead\r\n"), S("b STARTTLS\r\n\r\n"), // the server's "+" is not the client's business
				s("a BAD arguments\r\n"), C("a BAD arguments\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "non-synchronizing literal the server refuses is no command", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), c("a XYZZY {12+}\r\nb STARTTLS\r\n x\r\n"), S("a XYZZY {12}\r\n"),
				s("a BAD unknown command\r\n"), C("a BAD unknown command\r\n"),
				c("c NOOP\r\n"), S("c NOOP\r\n"), s("c OK\r\n"), C("c OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "STARTTLS inside a quoted string", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a NOOP \"b STARTTLS\"\r\n"), S("a NOOP \"b STARTTLS\"\r\n"),
				s("a OK\r\n"), C("a OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
		{name: "LOGIN before TLS never reaches the server", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a LOGIN alice secret\r\n"), C("a" + privacy),
				c("b login {5+}\r\nalice {6+}\r\nsecret\r\n"), C("b" + privacy),
				c("c LOGIN {5}\r\n"), C("c" + privacy),
				c("d NOOP\r\n"), S("d NOOP\r\n"), s("d OK\r\n"), C("d OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof", logs: []string{"warning: client sent LOGIN before STARTTLS: refused"}},
		{name: "AUTHENTICATE before TLS never reaches the server", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a AUTHENTICATE PLAIN\r\n"), C("a" + privacy),
				c("b AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"), C("b" + privacy),
				c("d NOOP\r\n"), S("d NOOP\r\n"), s("d OK\r\n"), C("d OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof", logs: []string{"warning: client sent AUTHENTICATE before STARTTLS"}},
		{name: "second STARTTLS", mode: modeRequired, starts: true,
			script: join(starttls(greetRequired), []step{c("b STARTTLS\r\n"), C("b BAD TLS is already active\r\n"),
				c("c NOOP\r\n"), S("c NOOP\r\n"), s("c OK\r\n"), C("c OK\r\n"), clientHalfClose(), serverEnds()}),
			end: "client-eof", logs: []string{"warning: client sent STARTTLS twice"}},
		{name: "STARTTLS in implicit mode", mode: modeImplicit,
			script: []step{handshake(), s(serverGreeting), C(serverGreeting), c("a STARTTLS\r\n"), C("a BAD TLS is already active\r\n"),
				c("b NOOP\r\n"), S("b NOOP\r\n"), s("b OK\r\n"), C("b OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},

		// Rule 4: after TLS, login with literals and AUTHENTICATE exchanges.
		{name: "LOGIN with literals after TLS", mode: modeRequired, starts: true, auth: true,
			script: join(starttls(greetRequired), []step{
				c("b LOGIN {5}\r\n"), S("b LOGIN {5}\r\n"), s("+ OK\r\n"), C("+ OK\r\n"),
				c("alice {6}\r\n"), S("alice {6}\r\n"), s("+ OK\r\n"), C("+ OK\r\n"),
				c("secret\r\n"), S("secret\r\n"), s("b OK logged in\r\n"), C("b OK logged in\r\n"),
				c("c STARTTLS\r\n"), S("c STARTTLS\r\n"), clientHalfClose(), serverEnds()}),
			end: "client-eof"},
		{name: "AUTHENTICATE exchange lines are no commands", mode: modeRequired, starts: true, auth: true,
			script: join(starttls(greetRequired), []step{
				c("b AUTHENTICATE PLAIN\r\n"), S("b AUTHENTICATE PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
				c("x STARTTLS\r\n"), S("x STARTTLS\r\n"), s("b NO [AUTHENTICATIONFAILED] no\r\n"), C("b NO [AUTHENTICATIONFAILED] no\r\n"),
				c("c AUTHENTICATE PLAIN\r\n"), S("c AUTHENTICATE PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
				c("*\r\n"), S("*\r\n"), s("c BAD cancelled\r\n"), C("c BAD cancelled\r\n"),
				c("d AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"), S("d AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n"),
				s("d OK [CAPABILITY IMAP4rev1 STARTTLS] in\r\n"), C("d OK [CAPABILITY IMAP4rev1] in\r\n"),
				c("e STARTTLS\r\n"), S("e STARTTLS\r\n"), clientHalfClose(), serverEnds()}),
			end: "client-eof"},
		{name: "failed LOGIN then pipelined commands", mode: modeRequired, starts: true, auth: true,
			script: join(starttls(greetRequired), []step{
				c("b LOGIN alice wrong\r\nc LOGIN alice secret\r\nd SELECT INBOX\r\n"), S("b LOGIN alice wrong\r\n"),
				s("b NO [AUTHENTICATIONFAILED] no\r\n"), C("b NO [AUTHENTICATIONFAILED] no\r\n"),
				S("c LOGIN alice secret\r\n"), s("c OK in\r\n"), C("c OK in\r\n"), S("d SELECT INBOX\r\n"),
				clientHalfClose(), serverEnds()}),
			end: "client-eof"},
		{name: "tagged OK of another command is no login", mode: modeRequired, starts: true,
			script: join(starttls(greetRequired), []step{
				c("b LOGIN alice secret\r\n"), S("b LOGIN alice secret\r\n"),
				s("x OK something else\r\n"), C("x OK something else\r\n"),
				s("b NO no\r\n"), C("b NO no\r\n"), c("c STARTTLS\r\n"), C("c BAD TLS is already active\r\n"),
				clientHalfClose(), serverEnds()}),
			end: "client-eof"},

		// Rule 5: plaintext login with -n imap-.
		{name: "plaintext login in optional mode", mode: modeOptional, auth: true,
			script: []step{s(serverGreeting), C(greetOptional), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
				s("a OK in\r\n"), C("a OK in\r\n"), c("b SELECT INBOX\r\n"), S("b SELECT INBOX\r\n"),
				clientHalfClose(), serverEnds()},
			end: "client-eof"},

		// Rule 6: endings.
		{name: "client half-close before login drains the server", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a LOGOUT\r\n"), S("a LOGOUT\r\n"), clientHalfClose(),
				s("* BYE bye\r\na OK done\r\n"), C("* BYE bye\r\na OK done\r\n"), serverEnds(), serverHalfClose(), clientEnds()},
			end: "client-eof"},
		// A server gone before login: the client is told (more in
		// TestServerGoneBeforeLogin).
		{name: "backend dies before login", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a NOOP\r\n"), S("a NOOP\r\n"), s("* 1 EXISTS\r\n"), serverClose(),
				C("* 1 EXISTS\r\n"), C(byeUnavailable), clientEnds()},
			end: "server-eof", logs: []string{leftBeforeLogin}},
		{name: "backend dies mid-literal before login", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a NOOP\r\n"), S("a NOOP\r\n"), s("* 1 FETCH (BODY[] {10}\r\nhel"), serverClose(),
				C(byeUnavailable), clientEnds()}, // the unfinished response is no response: the BYE in its place
			end: "server-eof", logs: []string{leftBeforeLogin}},
		{name: "backend half-closes before login", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), serverHalfClose(), C(byeUnavailable), clientEnds(), serverEnds()},
			end:    "server-eof", logs: []string{leftBeforeLogin}},
		{name: "backend dies mid-session", mode: modeRequired, starts: true, auth: true,
			script: join(starttls(greetRequired), []step{
				c("b LOGIN alice secret\r\n"), S("b LOGIN alice secret\r\n"), s("b OK in\r\n"), C("b OK in\r\n"),
				c("c FETCH 1 BODY[]\r\n"), S("c FETCH 1 BODY[]\r\n"), s("* 1 FETCH (BODY[] {5}\r\nhello)\r\n"), serverClose(),
				C("* 1 FETCH (BODY[] {5}\r\nhello)\r\n"), clientEnds()}),
			end: "server-eof"},
		{name: "client vanishes mid-literal", mode: modeOptional,
			script: []step{s(serverGreeting), C(greetOptional), c("a LOGIN {5}\r\n"), S("a LOGIN {5}\r\n"), s("+ OK\r\n"), C("+ OK\r\n"),
				c("ali"), clientClose(), serverEnds()}, // half a literal is no command: the server gets none of it
			end: "client-eof"},
		{name: "backend dies while LOGIN waits for its answer", mode: modeRequired, starts: true,
			script: join(starttls(greetRequired), []step{
				c("b LOGIN alice secret\r\n"), S("b LOGIN alice secret\r\n"), s("* OK still here\r\n"), serverClose(),
				C("* OK still here\r\n"), C(byeUnavailable), clientEnds()}), // in TLS
			end: "server-eof", logs: []string{leftBeforeLogin}},
		{name: "client vanishes mid-session", mode: modeImplicit, auth: true,
			script: []step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
				s("a OK in\r\n"), C("a OK in\r\n"), c("b IDLE\r\n"), S("b IDLE\r\n"), clientClose(), serverEnds()},
			end: "client-eof"},

		// Rule 7: limits.
		{name: "oversized literal", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a APPEND INBOX {70000}\r\n"), C("* BYE Literal too large\r\n"),
				clientEnds(), serverEnds()},
			end: "literal-too-large", logs: []string{"warning: client announced a literal of 70000 bytes"}},
		{name: "oversized second literal", mode: modeImplicit,
			script: []step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGIN {5}\r\n"), S("a LOGIN {5}\r\n"), s("+ OK\r\n"), C("+ OK\r\n"),
				c("alice {99999999999999999999}\r\n"), C("* BYE Literal too large\r\n"), clientEnds(), serverEnds()},
			end: "literal-too-large"},
		{name: "oversized literal in a refused command", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a LOGIN {5+}\r\nalice {9999999999+}\r\n"), C("a" + privacy),
				C("* BYE Literal too large\r\n"), clientEnds(), serverEnds()},
			end: "literal-too-large"},
		{name: "oversized literal in a server response", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("a NOOP\r\n"), S("a NOOP\r\n"), s("* 1 FETCH (BODY[] {2000000}\r\n"),
				C("* BYE Server error\r\n"), clientEnds(), serverEnds()},
			end: "server-error", logs: []string{"warning: server sent a response over 1048576 bytes before authentication"}},
		{name: "unparsable lines", mode: modeRequired,
			script: []step{s(serverGreeting), C(greetRequired), c("\r\n"), c("a\r\n"), C("a BAD Command not understood\r\n"),
				c("(x y\r\n"), C("* BAD Command not understood\r\n"), c("d NOOP\r\n"), S("d NOOP\r\n"), s("d OK\r\n"), C("d OK\r\n"), clientHalfClose(), serverEnds()},
			end: "client-eof"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runScript(t, tc) })
	}
}

// runScript plays one case and checks its end, its log, and that no
// password reached the log.
func runScript(t *testing.T, tc scriptCase) {
	t.Helper()
	h := start(t, setup{mode: tc.mode})
	h.run(tc.script)
	sess := h.ended(tc.end, tc.logs...)
	if sess.loggedIn != tc.auth {
		t.Errorf("auth=%v, want %v", sess.loggedIn, tc.auth)
	}
	if sess.starttls != tc.starts {
		t.Errorf("starttls=%v, want %v", sess.starttls, tc.starts)
	}
	for _, secret := range []string{"secret", "AGFsaWNl", "alice"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Errorf("log holds %q:\n%s", secret, h.logs)
		}
	}
}

func TestEndlessLine(t *testing.T) {
	h := start(t, setup{mode: modeRequired})
	h.run([]step{s(serverGreeting), C(greetRequired)})
	go h.client.Write([]byte("a NOOP " + strings.Repeat("x", 100<<10)))
	h.run([]step{C("* BYE Command line too long\r\n"), clientEnds(), serverEnds()})
	h.ended("line-too-long", "warning: client sent a line over 65536 bytes")
}

// A server line before authentication that never ends: past the limit
// the proxy stops reading it and says why.
func TestEndlessServerLine(t *testing.T) {
	h := start(t, setup{mode: modeRequired})
	go h.server.Write([]byte("* OK " + strings.Repeat("x", 2<<20)))
	h.run([]step{C("* BYE Server error\r\n"), clientEnds(), serverEnds()})
	h.ended("server-error", "warning: server sent a response over 1048576 bytes before authentication")
}

// A greeting that starts and never ends is no greeting.
func TestUnfinishedGreeting(t *testing.T) {
	h := start(t, setup{mode: modeRequired, command: 300 * time.Millisecond})
	h.run([]step{s("* OK [CAPABILITY IMAP4rev1"), C("* BYE Server not responding\r\n"), clientEnds(), serverEnds()})
	h.ended("server-timeout", "warning: server sent no greeting within 300ms")
}

func TestStalledHandshake(t *testing.T) {
	for _, m := range []suite.Mode{modeImplicit, modeRequired} {
		t.Run(m.Name, func(t *testing.T) {
			h := start(t, setup{mode: m, handshake: 300 * time.Millisecond})
			if m.Policy == suite.Required {
				h.run([]step{s(serverGreeting), C(greetRequired), c("a STARTTLS\r\n"), C(beginTLS)})
			}
			h.run([]step{clientEnds()})
			h.ended("handshake-timeout")
		})
	}
}

func TestClientGoneMidHandshake(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	// The start of a ClientHello record, then nothing.
	h.run([]step{c("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"), clientClose(), serverEnds()})
	h.ended("client-eof")
}

func TestDripFedCommand(t *testing.T) {
	h := start(t, setup{mode: modeRequired, command: 500 * time.Millisecond})
	h.run([]step{s(serverGreeting), C(greetRequired)})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// A byte every 100 ms, for far longer than -t: each byte comes
		// well within -t of the previous one.
		for _, b := range []byte("a LOGIN alice secret and a very long drip of a line") {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := h.rawCli.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	h.run([]step{C("* BYE Autologout; command not completed in time\r\n"), clientEnds(), serverEnds()})
	h.ended("timeout", "warning: client took more than 500ms for a command")
}

func TestSilentServer(t *testing.T) {
	h := start(t, setup{mode: modeRequired, command: 300 * time.Millisecond})
	h.run([]step{C("* BYE Server not responding\r\n"), clientEnds(), serverEnds()})
	h.ended("server-timeout", "warning: server sent no greeting within 300ms")
}

// A server that takes a command, or its part up to a literal, and never
// answers: -t runs to the command's tagged answer (README), so the
// session still ends, and the warning names the server, not the client.
func TestSilentServerAfterCommand(t *testing.T) {
	for _, tc := range []struct {
		mode       suite.Mode
		greet, cmd string
	}{
		{modeRequired, greetRequired, "a NOOP\r\n"},
		{modeOptional, greetOptional, "a NOOP {5}\r\n"}, // a literal before TLS: -n imap- only
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			h := start(t, setup{mode: tc.mode, command: 300 * time.Millisecond})
			h.run([]step{s(serverGreeting), C(tc.greet), c(tc.cmd), S(tc.cmd), s("* 1 EXISTS\r\n"), C("* 1 EXISTS\r\n"),
				C("* BYE Autologout; command not completed in time\r\n"), clientEnds(), serverEnds()})
			h.ended("timeout", "warning: server did not answer a command within 300ms: autologout")
			if strings.Contains(h.logs.String(), "client took") {
				t.Errorf("the client blamed:\n%s", h.logs)
			}
		})
	}
}

// A client that announces a literal, gets the server's "+" and sends
// nothing more: the client is the one that took too long.
func TestSilentClientMidLiteral(t *testing.T) {
	h := start(t, setup{mode: modeOptional, command: 300 * time.Millisecond})
	h.run([]step{s(serverGreeting), C(greetOptional), c("a NOOP {5}\r\n"), S("a NOOP {5}\r\n"), s("+ go\r\n"), C("+ go\r\n"),
		C("* BYE Autologout; command not completed in time\r\n"), clientEnds(), serverEnds()})
	h.ended("timeout", "warning: client took more than 300ms for a command: autologout")
}

func TestIdleTimeoutAfterLogin(t *testing.T) {
	h := start(t, setup{mode: modeImplicit, idle: 300 * time.Millisecond})
	h.run([]step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
		s("a OK in\r\n"), C("a OK in\r\n"), clientEnds(), serverEnds()})
	h.ended("idle-timeout", "warning: session idle for 300ms")
}

func TestALPN(t *testing.T) {
	cases := []struct {
		protos []string
		ok     bool
		want   string
	}{
		{nil, true, ""},
		{[]string{"imap"}, true, "imap"},
		{[]string{"h2", "imap"}, true, "imap"},
		{[]string{"http/1.1"}, false, ""},
		{[]string{"h2", "http/1.1"}, false, ""},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.protos, ","), func(t *testing.T) {
			h := start(t, setup{mode: modeImplicit})
			tc2 := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test", NextProtos: tc.protos})
			tc2.SetDeadline(time.Now().Add(guard))
			err := tc2.Handshake()
			if tc.ok {
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				if got := tc2.ConnectionState().NegotiatedProtocol; got != tc.want {
					t.Errorf("ALPN %q, want %q", got, tc.want)
				}
				h.client = tc2
				h.run([]step{s(serverGreeting), C(serverGreeting), clientHalfClose(), serverEnds()})
				h.ended("client-eof")
				return
			}
			if err == nil || !strings.Contains(err.Error(), "no application protocol") {
				t.Errorf("handshake: %v, want a no_application_protocol alert", err)
			}
			h.run([]step{serverEnds()})
			h.ended("alpn-refused", "warning: client offered no imap ALPN protocol")
		})
	}
}

func TestTLS12AndLogLine(t *testing.T) {
	h := start(t, setup{mode: modeRequired})
	h.run(join([]step{s(serverGreeting), C(greetRequired), c("a STARTTLS\r\n"), C(beginTLS)},
		[]step{handshakeWith(&tls.Config{RootCAs: testPool, ServerName: "imap.test", MaxVersion: tls.VersionTLS12})},
		[]step{c("b LOGIN alice secret\r\n"), S("b LOGIN alice secret\r\n"), s("b OK in\r\n"), C("b OK in\r\n"),
			clientHalfClose(), serverEnds()}))
	h.ended("client-eof")
	line := h.logs.String()
	for _, want := range []string{"info: remote=192.0.2.1:4711 mode=imap starttls=yes tls=1.2 cipher=TLS_ECDHE_ECDSA_WITH_",
		" sni=imap.test auth=yes in=", " end=client-eof\n"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q:\n%s", want, line)
		}
	}
	// bytes from the client: STARTTLS line and LOGIN line; to it: greeting, OK, login OK.
	if want := len("a STARTTLS\r\nb LOGIN alice secret\r\n"); h.sess.in.Load() != int64(want) {
		t.Errorf("in=%d, want %d", h.sess.in.Load(), want)
	}
	if want := len(greetRequired + beginTLS + "b OK in\r\n"); h.sess.out.Load() != int64(want) {
		t.Errorf("out=%d, want %d", h.sess.out.Load(), want)
	}
}

func TestLargeTransferAfterLogin(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	h.run([]step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
		s("a OK in\r\n"), C("a OK in\r\n")})
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB each way
	go h.server.Write([]byte(big))
	go h.client.Write([]byte(big))
	h.run([]step{C(big), S(big), clientHalfClose(), serverEnds(), serverHalfClose(), clientEnds()})
	sess := h.ended("client-eof")
	if sess.in.Load() < int64(len(big)) || sess.out.Load() < int64(len(big)) {
		t.Errorf("in=%d out=%d, want at least %d each", sess.in.Load(), sess.out.Load(), len(big))
	}
}

func TestOldTLSRefused(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	cli := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	cli.SetDeadline(time.Now().Add(guard))
	if err := cli.Handshake(); err == nil {
		t.Fatalf("TLS %x accepted", cli.ConnectionState().Version)
	}
	h.run([]step{serverEnds()})
	h.ended("handshake-failed", "warning: unable to complete tls handshake: tls: client offered only unsupported versions")
}

// The key process (config.ready) is waited for while the server's
// greeting is on its way, and not a byte reaches the client before it is
// ready: the greeting is held back until then.
func TestReadyHoldsGreeting(t *testing.T) {
	release := make(chan struct{})
	h := start(t, setup{mode: modeRequired, ready: func() error { <-release; return nil }})
	h.run([]step{s(serverGreeting)})
	h.client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := h.client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read %d bytes (%v) before the key process was ready", n, err)
	}
	close(release)
	h.run([]step{C(greetRequired), c("a LOGOUT\r\n"), S("a LOGOUT\r\n"), serverClose(), clientEnds()})
}

// A key process that never gets ready (a bad key: it said why and
// exited) ends the session, and the process exits 111: with implicit
// TLS before the client hears a byte (no handshake is possible); in a
// STARTTLS mode the client gets * BYE [UNAVAILABLE] in place of the
// greeting, never the server's greeting.
func TestReadyFails(t *testing.T) {
	for _, m := range []suite.Mode{modeRequired, modeOptional, modeImplicit} {
		t.Run(m.Name, func(t *testing.T) {
			h := start(t, setup{mode: m, ready: func() error { return errors.New("key holder ended") }})
			want := ""
			if m.Policy != suite.Implicit {
				h.run([]step{s(serverGreeting)})
				want = "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"
			}
			h.client.SetReadDeadline(time.Now().Add(guard))
			if b, err := io.ReadAll(h.client); string(b) != want || err != nil {
				t.Errorf("client got %q (%v), want %q and end of file", b, err, want)
			}
			sess := h.ended("key-process-failed")
			var e *log.Error
			if !errors.As(sess.fatal, &e) || e.Code != log.ExitTemp || e.Error() != "unable to use the key holder: key holder ended" {
				t.Errorf("fatal %v, want exit 111 unable to use the key holder: key holder ended", sess.fatal)
			}
		})
	}
}

// leftBeforeLogin is the end of the log line of a session whose server
// closed after its greeting and before login.
const leftBeforeLogin = `reason="server closed the connection before login" end=server-eof`

// goneCase is a server that goes after its greeting and before login.
type goneCase struct {
	name   string
	mode   suite.Mode
	script []step // ends with what the client reads, to its end
	end    string
	reason string // the log line's reason=; "": none
}

func runGone(t *testing.T, cases []goneCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := start(t, setup{mode: tc.mode})
			h.run(tc.script)
			if tc.reason == "" {
				h.ended(tc.end)
				if strings.Contains(h.logs.String(), "reason=") {
					t.Errorf("a reason for an end the server or the client chose:\n%s", h.logs)
				}
				return
			}
			h.ended(tc.end, `reason="`+tc.reason+`" end=`+tc.end)
		})
	}
}

// TestServerGoneBeforeLogin: a server that goes after its greeting and
// before login, without a BYE of its own and not after the client's
// LOGOUT, leaves its client * BYE [UNAVAILABLE] (RFC 9051 §7.1.5, RFC
// 5530), in TLS once TLS is up, in every phase, never a bare end of
// file; the BYE starts a line of its own, in place of an unfinished
// response; the log line says why. After the server's own BYE, a LOGOUT,
// or a client that ended first, nothing is added.
func TestServerGoneBeforeLogin(t *testing.T) {
	greet := []step{s(serverGreeting), C(greetOptional)} // -n imap-
	told := []step{C(byeUnavailable), clientEnds()}
	nothing := []step{clientEnds()}
	const gone, failed = "server closed the connection before login", "unable to read from the server before login: connection reset by peer"
	runGone(t, []goneCase{
		// Each phase the server can go in.
		{"command: nothing with the server", modeOptional,
			join(greet, []step{serverClose()}, told), "server-eof", gone},
		{"command: the server half-closes", modeOptional,
			join(greet, []step{serverHalfClose()}, told), "server-eof", gone},
		{"response: a command with the server", modeOptional,
			join(greet, []step{c("a NOOP\r\n"), S("a NOOP\r\n"), s("* 1 EXISTS\r\n"), C("* 1 EXISTS\r\n"), serverClose()}, told), "server-eof", gone},
		{"continuation: a literal's + awaited", modeOptional,
			join(greet, []step{c("a LOGIN {5}\r\n"), S("a LOGIN {5}\r\n"), serverClose()}, told), "server-eof", gone},
		{"literal: the client sends a literal", modeOptional,
			join(greet, []step{c("a LOGIN {5}\r\n"), S("a LOGIN {5}\r\n"), s("+ go\r\n"), C("+ go\r\n"), c("al"), serverClose()}, told), "server-eof", gone},
		{"authenticate: a SASL line awaited", modeOptional,
			join(greet, []step{c("a AUTHENTICATE PLAIN\r\n"), S("a AUTHENTICATE PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"), serverClose()}, told), "server-eof", gone},
		{"discard: the client's owed octets are dropped", modeOptional,
			join(greet, []step{c("a NOOP {3}\r\n"), S("a NOOP {3}\r\n"), s("+ go\r\n"), C("+ go\r\n"), s("a BAD no\r\n"), C("a BAD no\r\n"), serverClose()}, told), "server-eof", gone},
		{"a read that fails: server-error", modeOptional,
			// Closing a unix socket with unread bytes resets its peer.
			join(greet, []step{c("a NOOP\r\n"), S("a NOOP"), serverClose()}, told), "server-error", failed},

		// What the client reads before the BYE.
		{"an unfinished tagged OK is no OK: the BYE starts a line in its place", modeOptional,
			join(greet, []step{c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"), s("* 1 EXISTS\r\na OK LOGIN compl"), C("* 1 EXISTS\r\n"), serverClose()}, told), "server-eof", gone},
		{"a literal cut short: the BYE is no octet of it", modeOptional,
			join(greet, []step{c("a ID NIL\r\n"), S("a ID NIL\r\n"), s("* ID (\"name\" {10}\r\nabc"), serverClose()}, told), "server-eof", gone},
		{"an unfinished BYE is no BYE", modeOptional,
			join(greet, []step{s("* BYE shutting d"), serverClose()}, told), "server-eof", gone},

		{"a LOGOUT the server refused is no LOGOUT", modeOptional,
			join(greet, []step{c("a LOGOUT now\r\n"), S("a LOGOUT now\r\n"), s("a BAD no arguments\r\n"), C("a BAD no arguments\r\n"), serverClose()}, told), "server-eof", gone},

		// TLS: the BYE goes where the client reads.
		{"implicit TLS: the BYE in TLS", modeImplicit,
			join([]step{handshake(), s(serverGreeting), C(serverGreeting), serverClose()}, told), "server-eof", gone},
		{"before STARTTLS: the BYE in plaintext", modeRequired,
			join([]step{s(serverGreeting), C(greetRequired), serverClose()}, told), "server-eof", gone},
		{"gone during the STARTTLS handshake: the BYE in TLS after it", modeRequired,
			join([]step{s(serverGreeting), C(greetRequired), c("a STARTTLS\r\n"), C(beginTLS), serverClose(), handshake()}, told), "server-eof", gone},
		{"after STARTTLS: the BYE in TLS", modeRequired,
			join(starttls(greetRequired), []step{c("b NOOP\r\n"), S("b NOOP\r\n"), serverClose()}, told), "server-eof", gone},

		// Nothing added.
		{"the server's own BYE while no command is with it", modeOptional,
			join(greet, []step{s("* BYE Disconnected for inactivity.\r\n"), C("* BYE Disconnected for inactivity.\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"the server's own BYE, then an unfinished line", modeRequired,
			join(starttls(greetRequired), []step{c("b NOOP\r\n"), S("b NOOP\r\n"), s("* bye Too many invalid commands\r\n"), C("* bye Too many invalid commands\r\n"), s("b NO x"), serverClose(), C("b NO x")}, nothing), "server-eof", ""},
		{"LOGOUT with the server, which closes without a word", modeOptional,
			join(greet, []step{c("a LOGOUT\r\n"), S("a LOGOUT\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"LOGOUT answered without a BYE", modeRequired,
			join(starttls(greetRequired), []step{c("b LOGOUT\r\n"), S("b LOGOUT\r\n"), s("b OK bye\r\n"), C("b OK bye\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"the client half-closed first", modeOptional,
			// serverEnds: the proxy has passed the half-close on.
			join(greet, []step{c("a NOOP\r\n"), S("a NOOP\r\n"), s("a OK\r\n"), C("a OK\r\n"), clientHalfClose(), serverEnds(), serverClose()}, nothing), "client-eof", ""},
	})
}

// TestServerGoneWrite: a command that meets a server already closed
// (on a socketpair the write fails at once, before the read sees the
// end) does not end the session on the spot: the server's read still
// tells whether it said its own BYE, and the client is told if not.
func TestServerGoneWrite(t *testing.T) {
	shut := step{op: 'R'} // the server stops reading: the proxy's writes fail (EPIPE)
	greet := []step{s(serverGreeting), C(greetOptional), shut, c("a NOOP\r\n"), pause(200 * time.Millisecond)}
	runGone(t, []goneCase{
		{"no word from the server", modeOptional,
			join(greet, []step{serverClose(), C(byeUnavailable), clientEnds()}), "server-eof", "server closed the connection before login"},
		{"the server's own BYE", modeOptional,
			join(greet, []step{s("* BYE going\r\n"), serverClose(), C("* BYE going\r\n"), clientEnds()}), "server-eof", ""},
	})
}
