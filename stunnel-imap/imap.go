package main

import (
	"bufio"
	"bytes"

	"imap-tls/internal/suite"
	"imap-tls/log"
	"imap-tls/stunnel-imap/imap"
	"imap-tls/stunnel-imap/line"
)

// This file is the IMAP part of a session before login (RFC 9051, RFC
// 3501, RFC 2595, RFC 7888): one command at a time, so that the proxy's
// idea of where a command begins can never drift from the server's.

// phase is where an IMAP session stands before login: whom the proxy
// waits for, and what the client's next bytes are. With -n imap the
// phases continuation and literal occur only under TLS: before it the
// proxy refuses every command with a literal (commandLine).
type phase int

const (
	greeting      phase = iota // the server's greeting is awaited; the client is not read
	command                    // the client's next command is awaited
	continuation               // a line announcing a literal is with the server: its "+" (or its refusal) is awaited
	literal                    // the server said "+": the literal and the line after it are awaited from the client
	response                   // the whole command is with the server: its tagged response is awaited
	authenticate               // AUTHENTICATE: the server sent a challenge; the client's response line is awaited
	discard                    // the client owes bytes for a command that has ended: read, and dropped
	authenticated              // the server accepted a login or greeted PREAUTH: the relay takes over
)

var phaseNames = [...]string{"greeting", "command", "continuation", "literal", "response", "authenticate", "discard", "authenticated"}

func (p phase) String() string { return phaseNames[p] }

// serverCommand is the client command the server is working on.
type serverCommand struct {
	tag     string
	login   bool             // LOGIN or AUTHENTICATE: a tagged OK means logged in
	lit     imap.LiteralInfo // the literal the current line announced, if any
	nonSync bool             // the client sent lit as {n+}; the server got {n}
	ended   *imap.Response   // the server's tagged response, received while the client still owed bytes
}

type imapSession struct {
	s       *session
	phase   phase
	cmd     *serverCommand // in every phase from continuation to discard
	byeSeen bool           // the server sent an untagged BYE: it said its last word
	logout  bool           // a LOGOUT went to the server: its end is the one asked for
}

func newIMAP(s *session) part { return &imapSession{s: s} }

func (m *imapSession) bye(text string) string { return "* BYE " + text }

// serverWent: a BYE is an untagged response, which a server may send at
// any time (RFC 9051 §7.1.5), so the proxy's own can follow whatever the
// client is doing: waiting for a "+" or a tagged response, or sending a
// command, a literal or a SASL line. None is added after the
// server's own BYE, or once the client's LOGOUT went to the server (the
// end it asked for). Responses are read whole (imap.ReadResponse), so
// nothing of an unfinished one has reached the client: the BYE always
// starts a line of its own.
func (m *imapSession) serverWent() lastWord {
	if m.byeSeen || m.logout {
		return byeSaid
	}
	return byeOwed
}

func (m *imapSession) waiting() waitingFor {
	switch m.phase {
	case greeting:
		return waitingGreeting
	case continuation, response:
		return waitingServer
	}
	return waitingClient
}

func (m *imapSession) readResponse(sr *bufio.Reader) result {
	raw, n, err := imap.ReadResponse(sr, maxResponse, maxResponse)
	return result{data: raw, n: n, err: err}
}

// rule is how capability lists are rewritten now (RFC 2595 §3.2).
func (m *imapSession) rule() imap.Rule {
	if m.s.tlsOn {
		return imap.Rule{}
	}
	return imap.Rule{StartTLS: true, LoginDisabled: m.s.cfg.mode.Policy == suite.Required}
}

// ---- reads the part starts ----

// readCommand reads the first line of the client's next command under a
// fresh -t.
func (m *imapSession) readCommand() {
	m.phase, m.cmd = command, nil
	m.s.nextCommand()
	m.s.readClient(readLine)
}

func readLine(cr *bufio.Reader) result {
	l, err := line.Read(cr, line.Max)
	return result{data: l, err: err}
}

// readLiteral reads a literal of size bytes and the line after it.
func readLiteral(size int64) func(*bufio.Reader) result {
	return func(cr *bufio.Reader) result {
		lit, err := imap.ReadLiteral(cr, size)
		if err != nil {
			return result{lit: lit, err: err}
		}
		r := readLine(cr)
		r.lit = lit
		return r
	}
}

// ---- server events, one function per phase ----

func (m *imapSession) server(r result) {
	first := r.data[:r.n]
	resp := imap.ParseResponse(first)
	if resp.Kind == imap.Untagged && resp.Name == "BYE" {
		m.byeSeen = true
	}
	out := r.data
	if rw := imap.Rewrite(first, m.rule()); !bytes.Equal(rw, first) {
		out = append(rw, r.data[r.n:]...)
	}
	switch m.phase {
	case greeting:
		m.greeting(resp, out)
	case continuation:
		m.continuationAnswered(resp, out)
	case response:
		m.responseArrived(resp, out)
	default: // command, literal, authenticate, discard: the client is being read
		m.serverWhileClientReads(resp, out)
	}
}

// greeting: the server's first response (RFC 9051 §7.1).
func (m *imapSession) greeting(resp imap.Response, out []byte) {
	s := m.s
	if resp.Kind == imap.Untagged {
		switch resp.Name {
		case "PREAUTH":
			if s.cfg.mode.Policy != suite.Implicit {
				s.warn("server greeted with PREAUTH on a STARTTLS port: refused")
				s.bye(endPreauth, "Server is pre-authenticated: refusing a session without TLS")
				return
			}
			if s.toClient(out) {
				m.phase = authenticated
				s.login()
			}
			return
		case "BYE":
			s.toClient(out)
			s.end = endServerBye
			return
		}
	}
	if s.toClient(out) {
		m.readCommand()
	}
}

// continuationAnswered: the server answers a line that announced a
// literal: "+" lets the literal through, a tagged response refuses it.
func (m *imapSession) continuationAnswered(resp imap.Response, out []byte) {
	s, c := m.s, m.cmd
	switch {
	case resp.Kind == imap.Continuation:
		// A {n+} the client sent did not wait for a "+": it gets none.
		if !c.nonSync && !s.toClient(out) {
			return
		}
		m.phase = literal
		s.readClient(readLiteral(c.lit.Size))
	case resp.Kind == imap.Tagged && resp.Tag == c.tag:
		if !s.toClient(out) {
			return
		}
		if c.nonSync {
			// The client sent {n+} and its literal follows anyway: it
			// is no command.
			m.acceptedEarly(resp)
			m.discard(c.lit.Size, resp)
			return
		}
		m.commandEnded(resp)
	default:
		s.toClient(out)
	}
}

// responseArrived: the whole command is with the server.
func (m *imapSession) responseArrived(resp imap.Response, out []byte) {
	s, c := m.s, m.cmd
	switch {
	case resp.Kind == imap.Continuation && c.login:
		// An AUTHENTICATE challenge (RFC 9051 §6.2.2): the client owes
		// one response line, never a command.
		if s.toClient(out) {
			m.phase = authenticate
			s.readClient(readLine)
		}
	case resp.Kind == imap.Tagged && resp.Tag == c.tag:
		if s.toClient(out) {
			m.commandEnded(resp)
		}
	default:
		s.toClient(out)
	}
}

// serverWhileClientReads: a response while the client is being read is
// relayed; if it ends the command the client is still sending (a server
// that gives up on a literal or an AUTHENTICATE exchange before the
// client has sent what it owes), what the client still owes is read and
// dropped, never forwarded: it could be anything, a LOGIN before TLS or a
// STARTTLS the proxy must answer.
func (m *imapSession) serverWhileClientReads(resp imap.Response, out []byte) {
	if !m.s.toClient(out) {
		return
	}
	c := m.cmd
	if c == nil || c.ended != nil || resp.Kind != imap.Tagged || resp.Tag != c.tag {
		return
	}
	switch m.phase {
	case literal, authenticate:
		// The read under way is the owed literal or line: its result
		// will be dropped.
		m.phase = discard
		c.ended = &resp
		m.acceptedEarly(resp)
	}
}

// acceptedEarly: a tagged OK to LOGIN or AUTHENTICATE while the client
// still owes bytes of it: the login completes once they are dropped
// (commandEnded), and the server is not read until the relay.
func (m *imapSession) acceptedEarly(resp imap.Response) {
	if m.cmd.login && resp.Kind == imap.Tagged && resp.Name == "OK" {
		m.s.holdServer()
	}
}

// ---- client events, one function per phase ----

func (m *imapSession) client(r result) {
	switch m.phase {
	case command:
		m.commandLine(r.data)
	case literal:
		m.forward(r.lit, r.data)
	case authenticate:
		// A SASL response line, or "*" to cancel: never a command.
		if m.s.toServer(r.data) {
			m.phase = response
		}
	case discard:
		m.discarded(r.data)
	}
}

// commandLine handles the first line of a client command.
func (m *imapSession) commandLine(l []byte) {
	s := m.s
	if len(line.Trim(l)) == 0 {
		// An empty line is no command: read on, under the same deadline.
		s.readClient(readLine)
		return
	}
	lit, hasLit := imap.Literal(l)
	if hasLit && !m.bounded(lit) {
		return
	}
	tag, name, args, ok := imap.ParseCommand(l)
	c := &serverCommand{tag: tag}
	if hasLit && lit.NonSync {
		// If the proxy refuses this command, the literal comes anyway.
		c.lit, c.nonSync = lit, true
	}
	if !ok {
		tag = imap.ParseTag(l)
		if tag == "" {
			tag = "*"
		}
		m.refuse(c, "%s BAD Command not understood", tag)
		return
	}
	if s.cfg.verbosity > 0 {
		s.info("command %s", log.Clip(name, maxLogged))
	}
	switch name {
	case "STARTTLS":
		switch {
		case s.tlsOn && s.cfg.mode.Policy == suite.Implicit:
			m.refuse(c, "%s BAD TLS is already active", tag)
		case s.tlsOn:
			s.warn("client sent STARTTLS twice")
			m.refuse(c, "%s BAD TLS is already active", tag)
		case len(args) > 0 || hasLit:
			s.warn("client sent STARTTLS with arguments")
			m.refuse(c, "%s BAD STARTTLS takes no arguments", tag)
		default:
			if s.startTLS(tag + " OK Begin TLS negotiation now") {
				m.readCommand()
			}
		}
		return
	case "LOGIN", "AUTHENTICATE":
		if s.cfg.mode.Policy == suite.Required && !s.tlsOn {
			s.warn("client sent %s before STARTTLS: refused", name)
			m.refuse(c, "%s NO [PRIVACYREQUIRED] TLS is required: use STARTTLS first", tag)
			return
		}
		c.login = true
	}
	if hasLit && s.cfg.mode.Policy == suite.Required && !s.tlsOn {
		// Before TLS on a STARTTLS-required port no literal reaches the
		// server (issue 21): after a "+" the proxy must forward the
		// literal, and a server that then gives up on it (a tagged
		// response after the client's octets arrived) reads them as
		// commands, a LOGIN among them. Nothing a client needs before
		// STARTTLS carries one (CAPABILITY, NOOP, LOGOUT, STARTTLS take
		// no arguments; ID's strings are quoted). BAD, as RFC 9051
		// §2.2.1 has a server reject a command so that the client sends
		// no more of it: no "+" goes out, and a {n+} literal that comes
		// anyway is read and dropped by refuse. PRIVACYREQUIRED (RFC
		// 9051 §7.1, RFC 5530): refused for want of TLS; the client may
		// repeat the command after STARTTLS.
		s.warn("client sent a literal before STARTTLS: refused")
		m.refuse(c, "%s BAD [PRIVACYREQUIRED] No literals before TLS: use STARTTLS first", tag)
		return
	}
	if name == "LOGOUT" {
		m.logout = true
	}
	m.cmd = c
	m.forward(nil, l)
}

// forward sends a literal and the line after it (or the first line) of
// the current command to the server. A line that announces a literal
// waits for the server's "+"; a non-synchronizing literal goes to the
// server as a synchronizing one, so that the client's next bytes reach
// the server only once the server has agreed that they are a literal
// (RFC 7888 §4, and no smuggling through a literal the server would not
// take).
func (m *imapSession) forward(lit, l []byte) {
	c := m.cmd
	c.lit, c.nonSync = imap.LiteralInfo{}, false
	m.phase = response
	if li, ok := imap.Literal(l); ok {
		if !m.bounded(li) {
			return
		}
		c.lit = li
		m.phase = continuation
		if li.NonSync {
			c.nonSync = true
			l = imap.ToSync(l, li)
		}
	}
	if len(lit) > 0 {
		buf := make([]byte, 0, len(lit)+len(l))
		l = append(append(buf, lit...), l...)
	}
	m.s.toServer(l)
}

// refuse answers a command the server never sees; if it announced a
// non-synchronizing literal, the literal and the rest of the command are
// read and dropped.
func (m *imapSession) refuse(c *serverCommand, format string, args ...any) {
	if !m.s.reply(format, args...) {
		return
	}
	if c.nonSync {
		m.cmd = c
		m.discard(c.lit.Size, imap.Response{})
		return
	}
	m.readCommand()
}

// discard reads and drops size bytes and the line after them: what the
// client owes for a command that has ended (ended: the server's tagged
// response; its zero value for a command the proxy refused).
func (m *imapSession) discard(size int64, ended imap.Response) {
	m.phase = discard
	m.cmd.ended = &ended
	m.s.readClient(readLiteral(size))
}

// discarded: the owed bytes are in, and dropped. A line that announces
// another non-synchronizing literal owes that too; otherwise the command
// is over.
func (m *imapSession) discarded(l []byte) {
	if lit, ok := imap.Literal(l); ok && lit.NonSync {
		if m.bounded(lit) {
			m.discard(lit.Size, *m.cmd.ended)
		}
		return
	}
	m.commandEnded(*m.cmd.ended)
}

// commandEnded: the server's tagged response ended the command. After a
// successful LOGIN or AUTHENTICATE the relay takes over; otherwise the
// next command is read.
func (m *imapSession) commandEnded(resp imap.Response) {
	if m.logout && resp.Name != "OK" {
		m.logout = false // a LOGOUT refused (BAD): the session goes on
	}
	if m.cmd.login && resp.Kind == imap.Tagged && resp.Name == "OK" {
		m.phase = authenticated
		m.s.login()
		return
	}
	if m.cmd.login && resp.Kind == imap.Tagged {
		m.s.authFailed++ // NO or BAD: the log line counts them
	}
	m.readCommand()
}

// bounded reports whether a literal the client announced is within
// imap.MaxLiteral; one over it ends the session.
func (m *imapSession) bounded(lit imap.LiteralInfo) bool {
	if lit.Size <= imap.MaxLiteral {
		return true
	}
	m.s.warn("client announced a literal of %d bytes before authentication", lit.Size)
	m.s.bye(endLiteralTooLarge, "Literal too large")
	return false
}
