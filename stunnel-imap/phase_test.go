package main

import (
	"testing"
)

// TestPhases is the IMAP part's transition table: for each phase, the
// events that arrive in it and what must follow, the odd ones included
// (a server that ends a command before the client has sent what it
// owes). Every phase has its cases: a phase added without them fails.
func TestPhases(t *testing.T) {
	// after STARTTLS on a -n imap port: the TLS channel is up and the
	// next command is awaited.
	tlsUp := starttls(greetRequired)
	end := []step{clientHalfClose(), serverEnds()}
	next := func(tag string) []step { // the next command reaches the server untouched
		return []step{c(tag + " NOOP\r\n"), S(tag + " NOOP\r\n"), s(tag + " OK\r\n"), C(tag + " OK\r\n")}
	}
	table := map[phase][]scriptCase{
		greeting: {
			{name: "OK greeting relayed, capabilities rewritten", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired)}, next("a"), end), end: "client-eof"},
			{name: "BYE greeting ends the session", mode: modeOptional,
				script: []step{s("* BYE busy\r\n"), C("* BYE busy\r\n"), clientEnds(), serverEnds()}, end: "server-bye"},
			{name: "PREAUTH refused on a STARTTLS port", mode: modeOptional,
				script: []step{s("* PREAUTH hi\r\n"), C("* BYE Server is pre-authenticated: refusing a session without TLS\r\n"), clientEnds(), serverEnds()},
				end:    "preauth"},
		},
		command: {
			{name: "LOGIN before STARTTLS refused, never forwarded", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("b LOGIN alice secret\r\n"), C("b" + privacy)}, next("c"), end),
				end:    "client-eof", logs: []string{"warning: client sent LOGIN before STARTTLS: refused"}},
			// Issue 21: before TLS on -n imap no literal reaches the
			// server, so none can be given up on late. {n}: no "+",
			// so a well-behaved client sends no octets; {n+}: the
			// octets come anyway and are dropped by count, the rest
			// of the line with them, never parsed as commands.
			{name: "a {n} literal before STARTTLS refused: no +, never forwarded (imap)", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("a NOOP {20}\r\n"), C("a" + noLiterals)}, next("b"), end),
				end:    "client-eof", logs: []string{"warning: client sent a literal before STARTTLS: refused; remote="}},
			{name: "a {n+} literal before STARTTLS refused: its octets dropped by count (imap)", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("a NOOP {20+}\r\nb LOGIN alice secret\r\n\r\n"), C("a" + noLiterals)}, next("c"), end),
				end:    "client-eof", logs: []string{"warning: client sent a literal before STARTTLS: refused"}},
			{name: "a {n+} literal before STARTTLS: octets that look like a line end are no line end (imap)", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("a ID {21+}\r\nb STARTTLS\r\nc LOGIN x {3+}\r\nd\r\n\r\n"), C("a" + noLiterals)}, next("e"), end),
				end:    "client-eof"},
			{name: "a literal with -n imap- before STARTTLS is relayed", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {5}\r\n"), S("a NOOP {5}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), c("hello\r\n"), S("hello\r\n"), s("a OK\r\n"), C("a OK\r\n")}, next("b"), end),
				end: "client-eof"},
			{name: "STARTTLS answered by the proxy", mode: modeOptional, starts: true,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a STARTTLS\r\n"), C(beginTLS), handshake()}, next("b"), end),
				end:    "client-eof"},
		},
		continuation: {
			// A literal before TLS reaches the server only with -n imap-;
			// with -n imap, only under TLS.
			{name: "server refuses a literal before its +: the line is abandoned (imap-)", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {5}\r\n"), S("a NOOP {5}\r\n"),
					s("a BAD no literals\r\n"), C("a BAD no literals\r\n")}, next("b"), end),
				end: "client-eof"},
			{name: "+ lets the literal through (imap-)", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {5}\r\n"), S("a NOOP {5}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), c("hello\r\n"), S("hello\r\n"), s("a OK\r\n"), C("a OK\r\n")}, next("b"), end),
				end: "client-eof"},
			{name: "+ lets the literal through (imap, under TLS)", mode: modeRequired, starts: true,
				script: join(tlsUp, []step{c("a NOOP {5}\r\n"), S("a NOOP {5}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), c("hello\r\n"), S("hello\r\n"), s("a OK\r\n"), C("a OK\r\n")}, next("b"), end),
				end: "client-eof"},
		},
		literal: {
			// Item 1 of issue 9: "+", then the tagged response, then the
			// literal. The literal must not become a command.
			{name: "early tagged reply: a LOGIN in the owed literal never reaches the server (imap, under TLS)", mode: modeRequired, starts: true,
				script: join(tlsUp, []step{c("a NOOP {20}\r\n"), S("a NOOP {20}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), s("a BAD timeout\r\n"), C("a BAD timeout\r\n"),
					c("b LOGIN alice secret\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply: a STARTTLS in the owed literal is no command (imap-)", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {10}\r\n"), S("a NOOP {10}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), s("a BAD timeout\r\n"), C("a BAD timeout\r\n"),
					c("b STARTTLS\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply to a {n+} literal: the literal is dropped (imap, under TLS)", mode: modeRequired, starts: true,
				script: join(tlsUp, []step{c("a NOOP {20+}\r\n"), S("a NOOP {20}\r\n"),
					s("+ go\r\n"), s("a BAD timeout\r\n"), C("a BAD timeout\r\n"),
					c("b LOGIN alice secret\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply to a {n+} literal: the literal is dropped (imap-)", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {10+}\r\n"), S("a NOOP {10}\r\n"),
					s("+ go\r\n"), s("a BAD timeout\r\n"), C("a BAD timeout\r\n"),
					c("b STARTTLS\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply: the owed line's next {n+} literal is dropped too", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {1}\r\n"), S("a NOOP {1}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), s("a BAD timeout\r\n"), C("a BAD timeout\r\n"),
					c("x {10+}\r\nb STARTTLS\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged OK to LOGIN: the owed literal is dropped, then the relay", mode: modeOptional, auth: true,
				script: []step{s(serverGreeting), C(greetOptional), c("a LOGIN {5}\r\n"), S("a LOGIN {5}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), s("a OK welcome\r\n"), C("a OK welcome\r\n"),
					c("alice secret\r\n"), c("b SELECT INBOX\r\n"), S("b SELECT INBOX\r\n"), s("b OK selected\r\n"), C("b OK selected\r\n"),
					clientHalfClose(), serverEnds()},
				end: "client-eof"},
		},
		response: {
			{name: "tagged OK to LOGIN: the relay takes over", mode: modeOptional, auth: true,
				script: []step{s(serverGreeting), C(greetOptional), c("a LOGIN alice secret\r\n"), S("a LOGIN alice secret\r\n"),
					s("a OK in\r\n"), C("a OK in\r\n"), c("b STARTTLS\r\n"), S("b STARTTLS\r\n"), clientHalfClose(), serverEnds()},
				end: "client-eof"},
			{name: "untagged responses relayed while the tagged one is awaited", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("a NOOP\r\n"), S("a NOOP\r\n"),
					s("* 3 EXISTS\r\n"), C("* 3 EXISTS\r\n"), s("a OK\r\n"), C("a OK\r\n")}, next("b"), end),
				end: "client-eof"},
		},
		authenticate: {
			{name: "the client's SASL line is forwarded, never parsed", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a AUTHENTICATE PLAIN\r\n"), S("a AUTHENTICATE PLAIN\r\n"),
					s("+ \r\n"), C("+ \r\n"), c("b STARTTLS\r\n"), S("b STARTTLS\r\n"), s("a NO bad\r\n"), C("a NO bad\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply: the owed SASL line is dropped (imap-)", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a AUTHENTICATE PLAIN\r\n"), S("a AUTHENTICATE PLAIN\r\n"),
					s("+ \r\n"), C("+ \r\n"), s("a NO [UNAVAILABLE] auth timeout\r\n"), C("a NO [UNAVAILABLE] auth timeout\r\n"),
					c("b STARTTLS\r\n")}, next("c"), end),
				end: "client-eof"},
			{name: "early tagged reply: the owed SASL line is dropped (imap, under TLS)", mode: modeRequired, starts: true,
				script: join(tlsUp, []step{c("a AUTHENTICATE PLAIN\r\n"), S("a AUTHENTICATE PLAIN\r\n"),
					s("+ \r\n"), C("+ \r\n"), s("a NO [UNAVAILABLE] auth timeout\r\n"), C("a NO [UNAVAILABLE] auth timeout\r\n"),
					c("b LOGIN alice secret\r\n")}, next("c"), end),
				end: "client-eof"},
		},
		discard: {
			{name: "a refused command's {n+} literal is dropped", mode: modeRequired,
				script: join([]step{s(serverGreeting), C(greetRequired), c("a LOGIN {5+}\r\nalice secret\r\n"), C("a" + privacy)}, next("b"), end),
				end:    "client-eof"},
			{name: "a response while the owed bytes come is relayed", mode: modeOptional,
				script: join([]step{s(serverGreeting), C(greetOptional), c("a NOOP {3}\r\n"), S("a NOOP {3}\r\n"),
					s("+ go\r\n"), C("+ go\r\n"), s("a BAD no\r\n"), C("a BAD no\r\n"), s("* 1 EXISTS\r\n"), C("* 1 EXISTS\r\n"),
					c("abc\r\n")}, next("b"), end),
				end: "client-eof"},
		},
		authenticated: {
			{name: "PREAUTH relayed in imaps: the relay from the greeting", mode: modeImplicit, auth: true,
				script: []step{handshake(), s("* PREAUTH hi\r\n"), C("* PREAUTH hi\r\n"), c("a STARTTLS\r\n"), S("a STARTTLS\r\n"),
					clientHalfClose(), serverEnds()},
				end: "client-eof"},
		},
	}
	runPhases(t, len(phaseNames), table)
}

// runPhases runs a transition table keyed by the phases 0 to n-1 of a
// protocol part, and fails for a phase with no case.
func runPhases[P interface {
	~int
	String() string
}](t *testing.T, n int, table map[P][]scriptCase) {
	for i := 0; i < n; i++ {
		p := P(i)
		if len(table[p]) == 0 {
			t.Errorf("phase %s has no transition case", p)
		}
		for _, tc := range table[p] {
			t.Run(p.String()+"/"+tc.name, func(t *testing.T) { runScript(t, tc) })
		}
	}
}
