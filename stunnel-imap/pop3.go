package main

import (
	"bufio"

	"imap-tls/internal/suite"
	"imap-tls/log"
	"imap-tls/stunnel-imap/line"
	"imap-tls/stunnel-imap/pop3"
)

// This file is the POP3 part of a session before login (RFC 1939, RFC
// 2449, RFC 2595 §4, RFC 3206, RFC 5034): one command at a time, so
// that the proxy's idea of where a command begins can never drift from
// the server's. It reads the server a line at a time; a multi-line
// response is followed line by line to its lone ".".

// pop3Phase is where a POP3 session stands before login.
type pop3Phase int

const (
	pop3Greeting      pop3Phase = iota // the server's greeting is awaited; the client is not read
	pop3Command                        // the client's next command is awaited
	pop3Response                       // the whole command is with the server: its status line is awaited
	pop3MultiLine                      // a positive multi-line response is being relayed, to its lone "."
	pop3Authenticate                   // AUTH: the server sent a challenge; the client's response line is awaited
	pop3Discard                        // the client owes a SASL line for an AUTH that has ended: read, and dropped
	pop3Authenticated                  // the server accepted PASS, APOP or AUTH: the relay takes over
)

var pop3PhaseNames = [...]string{"greeting", "command", "response", "multiline", "authenticate", "discard", "authenticated"}

func (p pop3Phase) String() string { return pop3PhaseNames[p] }

type pop3Session struct {
	s     *session
	phase pop3Phase
	name  string // the command the server is working on (upper-cased)
	args  []byte // its arguments
	ended byte   // discard: the status that ended the AUTH (pop3.OK or pop3.Err)
	capa  bool   // pop3MultiLine: the response is CAPA's, to be rewritten
	stls  bool   // pop3MultiLine, CAPA: the server listed STLS itself
	size  int    // pop3MultiLine: bytes of the response so far
	quit  bool   // a QUIT went to the server: its end is the one asked for
	said  bool   // the server sent a -ERR that answered no command: its last word
}

func newPOP3(s *session) part { return &pop3Session{s: s} }

func (p *pop3Session) bye(text string) string { return "-ERR " + text }

// serverWent: POP3 has no untagged responses: after the greeting a
// client reads every status line as the answer to a command (RFC 1939
// §3), so the proxy's -ERR [SYS/TEMP] answers the command with the
// server, if any, and otherwise the client's next one. That is what it
// is: that command fails for want of the server, a temporary failure
// (RFC 3206), and the connection ends after it. It goes at once rather
// than after the next command: a client that sends one reads the same
// line in the same place, and one that sends none is not held up to -t
// by a server that is gone. So a -ERR the server sent itself while no
// command was with it (as servers do when they drop an idle client) was
// its last word: nothing is added, or a second -ERR would answer one
// more command. Nothing is added after QUIT either. Inside a multi-line
// response whose lines have gone out, any line would be one more line
// of it, and a "." would claim the list complete: nothing can be said.
func (p *pop3Session) serverWent() lastWord {
	switch {
	case p.quit || p.said:
		return byeSaid
	case p.phase == pop3MultiLine:
		return byeMute
	}
	return byeOwed
}

func (p *pop3Session) waiting() waitingFor {
	switch p.phase {
	case pop3Greeting:
		return waitingGreeting
	case pop3Response, pop3MultiLine:
		return waitingServer
	}
	return waitingClient
}

func (p *pop3Session) readResponse(sr *bufio.Reader) result {
	l, err := line.Read(sr, line.Max)
	return result{data: l, n: len(l), err: err}
}

func (p *pop3Session) rule() pop3.Rule {
	if p.s.tlsOn {
		return pop3.Rule{}
	}
	return pop3.Rule{STLS: true, NoPlaintext: p.s.cfg.mode.Policy == suite.Required}
}

func (p *pop3Session) readCommand() {
	p.phase, p.name, p.args = pop3Command, "", nil
	p.s.nextCommand()
	p.s.readClient(readLine)
}

// ---- server events, one function per phase ----

func (p *pop3Session) server(r result) {
	switch p.phase {
	case pop3Greeting:
		p.greeting(r.data)
	case pop3Response:
		p.status(r.data)
	case pop3MultiLine:
		p.multiLine(r.data)
	default: // command, authenticate, discard: the client is being read
		p.serverWhileClientReads(r.data)
	}
}

// greeting: "+OK" (with an APOP timestamp or not: relayed as sent), or
// "-ERR" and the end.
func (p *pop3Session) greeting(l []byte) {
	s := p.s
	if !s.toClient(l) {
		return
	}
	if pop3.Kind(l) != pop3.OK {
		s.end = endServerBye
		return
	}
	p.readCommand()
}

// status: the server answers the whole command.
func (p *pop3Session) status(l []byte) {
	s := p.s
	kind := pop3.Kind(l)
	if !s.toClient(l) {
		return
	}
	switch {
	case kind == pop3.Continuation && p.name == "AUTH":
		// A challenge (RFC 5034 §4): the client owes one response line,
		// never a command.
		p.phase = pop3Authenticate
		s.readClient(readLine)
	case kind == pop3.OK && pop3.MultiLine(p.name, p.args):
		p.phase, p.capa, p.stls, p.size = pop3MultiLine, p.name == "CAPA", false, len(l)
	default:
		p.commandEnded(kind)
	}
}

// multiLine: one line of a positive multi-line response; a CAPA's
// capabilities are rewritten as they pass.
func (p *pop3Session) multiLine(l []byte) {
	s := p.s
	p.size += len(l)
	if p.size > maxResponse {
		s.warn("server sent a response over %d bytes before authentication", maxResponse)
		s.bye(endServerError, "Server error")
		return
	}
	if pop3.IsEnd(l) {
		rule := p.rule()
		if p.capa && rule.STLS && !p.stls && !s.toClient([]byte("STLS\r\n")) {
			return
		}
		if s.toClient(l) {
			p.commandEnded(pop3.OK)
		}
		return
	}
	if p.capa {
		name, keep := pop3.Capability(l, p.rule())
		if name == "STLS" {
			p.stls = true
		}
		if !keep {
			return
		}
	}
	s.toClient(l)
}

// serverWhileClientReads: a line while the client is being read is
// relayed; a status that ends the AUTH the client is still answering
// (a server that gives up early) leaves the client's owed line to be
// read and dropped, never forwarded.
func (p *pop3Session) serverWhileClientReads(l []byte) {
	if !p.s.toClient(l) {
		return
	}
	kind := pop3.Kind(l)
	switch {
	case p.phase == pop3Authenticate && (kind == pop3.OK || kind == pop3.Err):
		p.phase, p.ended = pop3Discard, kind
		if kind == pop3.OK {
			// The AUTH succeeded before the client's owed line: the
			// login completes once it is dropped (commandEnded), and
			// the server is not read until the relay.
			p.s.holdServer()
		}
	case kind == pop3.Err:
		// No command is with the server (pop3Command, pop3Discard): an
		// unsolicited -ERR is a server's word before it closes.
		p.said = true
	}
}

// ---- client events, one function per phase ----

func (p *pop3Session) client(r result) {
	switch p.phase {
	case pop3Command:
		p.commandLine(r.data)
	case pop3Authenticate:
		// A SASL response line, or "*" to cancel: never a command.
		if p.s.toServer(r.data) {
			p.phase = pop3Response
		}
	case pop3Discard:
		p.commandEnded(p.ended)
	}
}

// commandLine handles one client command.
func (p *pop3Session) commandLine(l []byte) {
	s := p.s
	if len(line.Trim(l)) == 0 {
		// An empty line is no command: read on, under the same deadline.
		s.readClient(readLine)
		return
	}
	name, args, ok := pop3.ParseCommand(l)
	if !ok {
		p.refuse("-ERR Command not understood")
		return
	}
	if s.cfg.verbosity > 0 {
		s.info("command %s", log.Clip(name, maxLogged))
	}
	switch name {
	case "STLS":
		switch {
		case s.tlsOn && s.cfg.mode.Policy == suite.Implicit:
			p.refuse("-ERR TLS is already active")
		case s.tlsOn:
			s.warn("client sent STLS twice")
			p.refuse("-ERR TLS is already active")
		case len(args) > 0:
			s.warn("client sent STLS with arguments")
			p.refuse("-ERR STLS takes no arguments")
		default:
			if s.startTLS("+OK Begin TLS negotiation") {
				p.readCommand()
			}
		}
		return
	case "USER", "PASS", "APOP", "AUTH":
		if s.cfg.mode.Policy == suite.Required && !s.tlsOn {
			s.warn("client sent %s before STLS: refused", name)
			p.refuse("-ERR [AUTH] TLS is required: use STLS first")
			return
		}
	}
	p.name, p.args = name, args
	if name == "QUIT" {
		p.quit = true
	}
	if s.toServer(l) {
		p.phase = pop3Response
	}
}

// refuse answers a command the server never sees.
func (p *pop3Session) refuse(answer string) {
	if p.s.reply("%s", answer) {
		p.readCommand()
	}
}

// commandEnded: the server's status ended the command. After a positive
// PASS, APOP or AUTH the relay takes over; otherwise the next command is
// read.
func (p *pop3Session) commandEnded(kind byte) {
	if p.name == "QUIT" && kind != pop3.OK {
		p.quit = false // refused: the session goes on
	}
	if p.name == "AUTH" && pop3.MultiLine(p.name, p.args) {
		// AUTH without a mechanism lists the mechanisms: no login.
		p.readCommand()
		return
	}
	switch p.name {
	case "PASS", "APOP", "AUTH":
		if kind == pop3.OK {
			p.phase = pop3Authenticated
			p.s.login()
			return
		}
		if kind == pop3.Err {
			p.s.authFailed++ // the log line counts them
		}
	}
	p.readCommand()
}
