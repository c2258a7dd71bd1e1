package main

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
	"time"
)

var (
	modePOP3Required = mustMode("pop3")
	modePOP3Optional = mustMode("pop3-")
	modePOP3Implicit = mustMode("pop3s")
)

const (
	pop3Greet   = "+OK Dovecot ready. <1.2.3@host>\r\n"
	pop3Privacy = "-ERR [AUTH] TLS is required: use STLS first\r\n"
	pop3Begin   = "+OK Begin TLS negotiation\r\n"
	// The server's CAPA, and what the client sees of it in each case.
	pop3Capa         = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"
	pop3CapaRequired = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\n.\r\n"
	pop3CapaOptional = "+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\nSTLS\r\n.\r\n"
)

// pop3TLS is the opening of a -n pop3 session up to a working TLS
// channel.
func pop3TLS() []step {
	return []step{s(pop3Greet), C(pop3Greet), c("STLS\r\n"), C(pop3Begin), handshake()}
}

// TestPOP3Phases is the POP3 part's transition table, keyed by phase,
// the odd transitions included. Every phase has its cases.
func TestPOP3Phases(t *testing.T) {
	end := []step{clientHalfClose(), serverEnds()}
	noop := func() []step { // the next command reaches the server untouched
		return []step{c("NOOP\r\n"), S("NOOP\r\n"), s("-ERR not yet\r\n"), C("-ERR not yet\r\n")}
	}
	table := map[pop3Phase][]scriptCase{
		pop3Greeting: {
			{name: "greeting relayed as sent, APOP timestamp and all", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet)}, noop(), end), end: "client-eof"},
			{name: "-ERR greeting ends the session", mode: modePOP3Optional,
				script: []step{s("-ERR too busy\r\n"), C("-ERR too busy\r\n"), clientEnds(), serverEnds()}, end: "server-bye"},
		},
		pop3Command: {
			{name: "USER and PASS before STLS refused, never forwarded", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("USER alice\r\n"), C(pop3Privacy), c("PASS secret\r\n"), C(pop3Privacy),
					c("APOP alice 0123456789abcdef0123456789abcdef\r\n"), C(pop3Privacy)}, noop(), end),
				end: "client-eof", logs: []string{"warning: client sent USER before STLS: refused"}},
			{name: "AUTH with an initial response before STLS refused", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("AUTH PLAIN AGFsaWNlAGFsaWNlAHNlY3JldA==\r\n"), C(pop3Privacy),
					c("AUTH\r\n"), C(pop3Privacy)}, noop(), end),
				end: "client-eof"},
			{name: "STLS answered by the proxy, then plaintext login refused no more", mode: modePOP3Required, starts: true, auth: true,
				script: join(pop3TLS(), []step{c("USER alice\r\n"), S("USER alice\r\n"), s("+OK\r\n"), C("+OK\r\n"),
					c("PASS secret\r\n"), S("PASS secret\r\n"), s("+OK logged in\r\n"), C("+OK logged in\r\n"),
					c("STLS\r\n"), S("STLS\r\n")}, end),
				end: "client-eof"},
			{name: "STLS with arguments", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("STLS now\r\n"), C("-ERR STLS takes no arguments\r\n")}, noop(), end),
				end:    "client-eof", logs: []string{"warning: client sent STLS with arguments"}},
			{name: "STLS twice", mode: modePOP3Required, starts: true,
				script: join(pop3TLS(), []step{c("STLS\r\n"), C("-ERR TLS is already active\r\n")}, noop(), end),
				end:    "client-eof", logs: []string{"warning: client sent STLS twice"}},
			{name: "STLS under implicit TLS", mode: modePOP3Implicit,
				script: join([]step{handshake(), s(pop3Greet), C(pop3Greet), c("STLS\r\n"), C("-ERR TLS is already active\r\n")}, noop(), end),
				end:    "client-eof"},
			{name: "plaintext pipelined after STLS is no command", mode: modePOP3Required,
				script: []step{s(pop3Greet), C(pop3Greet), c("STLS\r\nUSER alice\r\nPASS secret\r\n"), C(pop3Begin), clientEnds(), serverEnds()},
				end:    "handshake-failed", logs: []string{"warning: client sent plaintext after STLS: dropped"}},
			{name: "plaintext pipelined after STLS is no command (pop3-)", mode: modePOP3Optional,
				script: []step{s(pop3Greet), C(pop3Greet), c("STLS\r\nCAPA\r\n"), C(pop3Begin), clientEnds(), serverEnds()},
				end:    "handshake-failed"},
			{name: "unparsable line", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("\r\n"), c(" x\r\n"), C("-ERR Command not understood\r\n")}, noop(), end),
				end:    "client-eof"},
			{name: "optional mode: plaintext login relayed", mode: modePOP3Optional, auth: true,
				script: []step{s(pop3Greet), C(pop3Greet), c("USER alice\r\n"), S("USER alice\r\n"), s("+OK\r\n"), C("+OK\r\n"),
					c("PASS secret\r\n"), S("PASS secret\r\n"), s("+OK in\r\n"), C("+OK in\r\n"), clientHalfClose(), serverEnds()},
				end: "client-eof"},
		},
		pop3Response: {
			{name: "a refused PASS: the next command is read", mode: modePOP3Optional,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("PASS wrong\r\n"), S("PASS wrong\r\n"),
					s("-ERR [AUTH] Authentication failed.\r\n"), C("-ERR [AUTH] Authentication failed.\r\n")}, noop(), end),
				end: "client-eof"},
			{name: "APOP +OK: the relay takes over", mode: modePOP3Optional, auth: true,
				script: []step{s(pop3Greet), C(pop3Greet), c("APOP alice 0123456789abcdef0123456789abcdef\r\n"),
					S("APOP alice 0123456789abcdef0123456789abcdef\r\n"), s("+OK\r\n"), C("+OK\r\n"), c("STLS\r\n"), S("STLS\r\n"),
					clientHalfClose(), serverEnds()},
				end: "client-eof"},
			{name: "a server line with no status still ends the command", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("XYZZY\r\n"), S("XYZZY\r\n"), s("what?\r\n"), C("what?\r\n")}, noop(), end),
				end:    "client-eof"},
		},
		pop3MultiLine: {
			{name: "CAPA before STLS, required: STLS added, USER and SASL removed", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s(pop3Capa), C(pop3CapaRequired)}, noop(), end),
				end:    "client-eof"},
			{name: "CAPA before STLS, optional: STLS added, the rest kept", mode: modePOP3Optional,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s(pop3Capa), C(pop3CapaOptional)}, noop(), end),
				end:    "client-eof"},
			{name: "CAPA after STLS: a server's own STLS removed", mode: modePOP3Required, starts: true,
				script: join(pop3TLS(), []step{c("CAPA\r\n"), S("CAPA\r\n"), s("+OK\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
					C("+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n")}, noop(), end),
				end: "client-eof"},
			{name: "CAPA split across reads, a server's own STLS kept once", mode: modePOP3Optional,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s("+OK\r\nTO"), s("P\r\nST"), s("LS\r\n."), s("\r\n"),
					C("+OK\r\nTOP\r\nSTLS\r\n.\r\n")}, noop(), end),
				end: "client-eof"},
			{name: "a dot-stuffed line is data, not the end", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s("+OK\r\n..USER\r\nX\r\n.\r\n"),
					C("+OK\r\n..USER\r\nX\r\nSTLS\r\n.\r\n")}, noop(), end),
				end: "client-eof"},
			{name: "AUTH without a mechanism lists them: no login, the next command is parsed", mode: modePOP3Optional, starts: true,
				script: []step{s(pop3Greet), C(pop3Greet), c("AUTH\r\n"), S("AUTH\r\n"), s("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"),
					C("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"), c("STLS\r\n"), C(pop3Begin), handshake(), clientHalfClose(), serverEnds()},
				end: "client-eof"},
			{name: "a -ERR to CAPA is one line", mode: modePOP3Required,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s("-ERR no\r\n"), C("-ERR no\r\n")}, noop(), end),
				end:    "client-eof"},
		},
		pop3Authenticate: {
			{name: "AUTH exchange: the client's line is forwarded, never parsed", mode: modePOP3Optional, auth: true,
				script: []step{s(pop3Greet), C(pop3Greet), c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
					c("STLS\r\n"), S("STLS\r\n"), s("+OK in\r\n"), C("+OK in\r\n"), clientHalfClose(), serverEnds()},
				end: "client-eof"},
			{name: "early -ERR: the owed SASL line is dropped (pop3-)", mode: modePOP3Optional,
				script: join([]step{s(pop3Greet), C(pop3Greet), c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
					s("-ERR [SYS/TEMP] timeout\r\n"), C("-ERR [SYS/TEMP] timeout\r\n"), c("STLS\r\n")}, noop(), end),
				end: "client-eof"},
			{name: "early -ERR: the owed SASL line is dropped (pop3, under TLS)", mode: modePOP3Required, starts: true,
				script: join(pop3TLS(), []step{c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
					s("-ERR [SYS/TEMP] timeout\r\n"), C("-ERR [SYS/TEMP] timeout\r\n"), c("USER alice\r\n")}, noop(), end),
				end: "client-eof"},
		},
		pop3Discard: {
			{name: "early +OK: the owed line dropped, then the relay", mode: modePOP3Optional, auth: true,
				script: []step{s(pop3Greet), C(pop3Greet), c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"),
					s("+OK in\r\n"), C("+OK in\r\n"), c("AGFsaWNl\r\n"), c("LIST\r\n"), S("LIST\r\n"), s("+OK 0 messages\r\n.\r\n"), C("+OK 0 messages\r\n.\r\n"),
					clientHalfClose(), serverEnds()},
				end: "client-eof"},
		},
		pop3Authenticated: {
			{name: "after login, nothing is parsed", mode: modePOP3Implicit, auth: true,
				script: []step{handshake(), s(pop3Greet), C(pop3Greet), c("USER alice\r\n"), S("USER alice\r\n"), s("+OK\r\n"), C("+OK\r\n"),
					c("PASS secret\r\n"), S("PASS secret\r\n"), s("+OK\r\n"), C("+OK\r\n"),
					c("CAPA\r\n"), S("CAPA\r\n"), s("+OK\r\nSTLS\r\n.\r\n"), C("+OK\r\nSTLS\r\n.\r\n"), clientHalfClose(), serverEnds()},
				end: "client-eof"},
		},
	}
	runPhases(t, len(pop3PhaseNames), table)
}

// A multi-line response before login is bounded like IMAP's responses.
func TestPOP3EndlessMultiLine(t *testing.T) {
	h := start(t, setup{mode: modePOP3Optional})
	h.run([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n")})
	go func() {
		h.server.SetWriteDeadline(time.Now().Add(guard))
		io.WriteString(h.server, "+OK\r\n"+strings.Repeat("X-FILLER-LINE-OF-SOME-LENGTH\r\n", 40000))
	}()
	h.client.SetReadDeadline(time.Now().Add(guard))
	got, _ := io.ReadAll(h.client)
	if !strings.HasPrefix(string(got), "+OK\r\nX-FILLER") || !strings.HasSuffix(string(got), "-ERR Server error\r\n") || len(got) > 1<<20+100 {
		t.Errorf("client got %d bytes ending %q, want at most 1 MiB of the response, then -ERR Server error", len(got), got[max(0, len(got)-40):])
	}
	h.ended("server-error", "warning: server sent a response over 1048576 bytes before authentication")
}

// The limits and timeouts of the core hold for POP3 too.
func TestPOP3EndlessLine(t *testing.T) {
	h := start(t, setup{mode: modePOP3Required})
	h.run([]step{s(pop3Greet), C(pop3Greet), c(strings.Repeat("x", 70000))})
	h.run([]step{C("-ERR Command line too long\r\n")})
	h.ended("line-too-long", "warning: client sent a line over 65536 bytes")
}

func TestPOP3ClientGoneMidCommand(t *testing.T) {
	h := start(t, setup{mode: modePOP3Required})
	h.run([]step{s(pop3Greet), C(pop3Greet), c("USE"), clientHalfClose(), serverEnds()})
	h.ended("client-eof")
}

func TestPOP3SilentClient(t *testing.T) {
	h := start(t, setup{mode: modePOP3Required, command: 300e6})
	h.run([]step{s(pop3Greet), C(pop3Greet), C("-ERR Autologout; command not completed in time\r\n")})
	h.ended("timeout", "warning: client took more than 300ms for a command: autologout")
}

// ALPACA: with ALPN, only "pop3" is taken on a POP3 port.
func TestPOP3ALPN(t *testing.T) {
	h := start(t, setup{mode: modePOP3Implicit})
	h.run([]step{handshakeWith(&tls.Config{RootCAs: testPool, ServerName: "imap.test", NextProtos: []string{"pop3"}}),
		s(pop3Greet), C(pop3Greet), clientHalfClose(), serverEnds()})
	h.ended("client-eof")
	for _, protos := range [][]string{{"imap"}, {"http/1.1"}} {
		h := start(t, setup{mode: modePOP3Implicit})
		tc := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test", NextProtos: protos})
		if err := tc.Handshake(); err == nil {
			t.Errorf("ALPN %q taken on a POP3 port", protos)
		}
		h.ended("alpn-refused", "warning: client offered no pop3 ALPN protocol")
	}
}

// A server that dies in the middle of a multi-line response: what it sent
// is passed on, nothing is added (any line would be one more line of the
// response, a "." would claim it complete), the session ends server-eof
// and the log says why.
func TestPOP3ServerDiesMidCapa(t *testing.T) {
	h := start(t, setup{mode: modePOP3Optional})
	h.run([]step{s(pop3Greet), C(pop3Greet), c("CAPA\r\n"), S("CAPA\r\n"), s("+OK\r\nTOP\r\nUI"), C("+OK\r\nTOP\r\n"),
		serverClose(), C("UI"), clientEnds()})
	h.ended("server-eof", leftBeforeLogin)
}

// TestPOP3ServerGoneBeforeLogin: POP3's form of TestServerGoneBeforeLogin:
// -ERR [SYS/TEMP] (RFC 3206) at once, read as the answer to the command
// with the server or the client's next one (pop3.go, serverWent says
// why); in place of an unfinished status line, so that a "+OK" cut short
// is never read as one; in TLS once TLS is up. Nothing is added after
// QUIT, after a -ERR the server sent while no command was with it (its
// own last word), or inside a multi-line response
// (TestPOP3ServerDiesMidCapa).
func TestPOP3ServerGoneBeforeLogin(t *testing.T) {
	greet := []step{s(pop3Greet), C(pop3Greet)}
	told := []step{C(errUnavailable), clientEnds()}
	nothing := []step{clientEnds()}
	const gone = "server closed the connection before login"
	runGone(t, []goneCase{
		{"command: nothing with the server", modePOP3Optional,
			join(greet, []step{serverClose()}, told), "server-eof", gone},
		{"response: the -ERR answers the command with the server", modePOP3Optional,
			join(greet, []step{c("USER alice\r\n"), S("USER alice\r\n"), serverClose()}, told), "server-eof", gone},
		{"an unfinished +OK is no +OK: the -ERR in its place", modePOP3Optional,
			join(greet, []step{c("USER alice\r\n"), S("USER alice\r\n"), s("+OK\r\n"), C("+OK\r\n"),
				c("PASS secret\r\n"), S("PASS secret\r\n"), s("+OK Logged i"), serverClose()}, told), "server-eof", gone},
		{"authenticate: a SASL line awaited", modePOP3Optional,
			join(greet, []step{c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"), serverClose()}, told), "server-eof", gone},
		{"discard: an AUTH ended by the server's -ERR", modePOP3Optional,
			join(greet, []step{c("AUTH PLAIN\r\n"), S("AUTH PLAIN\r\n"), s("+ \r\n"), C("+ \r\n"), s("-ERR [AUTH] no\r\n"), C("-ERR [AUTH] no\r\n"), serverClose()}, told), "server-eof", gone},
		{"a -ERR that answered a command is no last word", modePOP3Optional,
			join(greet, []step{c("XYZZY\r\n"), S("XYZZY\r\n"), s("-ERR unknown command\r\n"), C("-ERR unknown command\r\n"), serverClose()}, told), "server-eof", gone},
		{"pop3s: the -ERR in TLS", modePOP3Implicit,
			join([]step{handshake(), s(pop3Greet), C(pop3Greet), serverClose()}, told), "server-eof", gone},
		{"before STLS: the -ERR in plaintext", modePOP3Required,
			join(greet, []step{serverClose()}, told), "server-eof", gone},
		{"gone during the STLS handshake: the -ERR in TLS after it", modePOP3Required,
			join(greet, []step{c("STLS\r\n"), C(pop3Begin), serverClose(), handshake()}, told), "server-eof", gone},
		{"after STLS: the -ERR in TLS", modePOP3Required,
			join(pop3TLS(), []step{c("USER alice\r\n"), S("USER alice\r\n"), serverClose()}, told), "server-eof", gone},

		// Nothing added.
		{"the server's own -ERR while no command is with it", modePOP3Optional,
			join(greet, []step{s("-ERR Disconnected for inactivity.\r\n"), C("-ERR Disconnected for inactivity.\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"QUIT with the server, which closes without a word", modePOP3Optional,
			join(greet, []step{c("QUIT\r\n"), S("QUIT\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"QUIT answered", modePOP3Required,
			join(pop3TLS(), []step{c("QUIT\r\n"), S("QUIT\r\n"), s("+OK bye\r\n"), C("+OK bye\r\n"), serverClose()}, nothing), "server-eof", ""},
		{"the client half-closed first", modePOP3Optional,
			join(greet, []step{clientHalfClose(), serverEnds(), serverClose()}, nothing), "client-eof", ""},
	})
}
