package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"imap-tls/internal/suite"
	"imap-tls/log"
	"imap-tls/stunnel-imap/line"
)

// This file is the protocol-neutral core of a session: the two peers,
// the event loop before login, the timeouts, the limits, and the way a
// session ends. What the bytes mean before login is a protocol part's
// (imap.go); the TLS handshake is in handshake.go, the relay after login
// in relay.go, the per-connection log line in logline.go.

// parts are the protocol parts, by suite.Mode's Protocol: the modes
// themselves (name, TLS policy, ALPN, the STARTTLS command) are the
// suite's one table, internal/suite.
var parts = map[string]func(*session) part{
	"imap": newIMAP,
	"pop3": newPOP3,
}

// A part is the protocol-aware half of a session before login: it says
// what a server response and a client read mean, and what to read next
// from the client. The core calls it from one goroutine, one event at a
// time, and only with reads that succeeded; the core handles a peer's
// end, an error, a limit and a timeout itself.
type part interface {
	// readResponse reads one whole server response (the core keeps
	// one such read running until login).
	readResponse(sr *bufio.Reader) result
	// server handles one server response.
	server(r result)
	// client handles one client read started by the part.
	client(r result)
	// waiting says whom the session waits for now (for a timeout).
	waiting() waitingFor
	// bye is the protocol's last word to a client the proxy drops.
	bye(text string) string
	// serverWent says, of a server that went after its greeting and
	// before login, what its client is owed (serverLeft).
	serverWent() lastWord
}

// lastWord is what a client is owed when its server goes after the
// greeting and before login.
type lastWord int

const (
	// byeOwed: the proxy tells the client, as when the server is not
	// there at all (unavailableLine).
	byeOwed lastWord = iota
	// byeSaid: nothing is added. The server said its own last word
	// (IMAP's * BYE, RFC 9051 §7.1.5; POP3's unsolicited -ERR), or the
	// client asked for the end (LOGOUT, QUIT went to the server).
	byeSaid
	// byeMute: nothing can be said: the client is inside a response
	// whose first lines have gone out (POP3's multi-line), and any line
	// now would be read as part of it.
	byeMute
)

// waitingFor is whom a session waits for, to name the one who was late.
type waitingFor int

const (
	waitingGreeting waitingFor = iota // the server's greeting
	waitingClient                     // the client's command, literal or line
	waitingServer                     // the server's answer to a whole command
)

// config is what one session needs; run fills it from the command line,
// tests build it directly.
type config struct {
	mode             suite.Mode
	tls              *tls.Config
	handshakeTimeout time.Duration // -T: the whole TLS handshake
	commandTimeout   time.Duration // -t: one command and its answer, before login
	idleTimeout      time.Duration // -A: silence after login
	log              *log.Logger
	verbosity        int
	certWarnDays     int // the expiry warning's days (certfile.WarnDaysEnv); 0: none
	remote           string
	// linger bounds how long the proxy reads and discards what a client
	// still sends after the proxy ended the session, so that closing does
	// not reset the connection under bytes the client has yet to read.
	linger time.Duration
	// grace bounds how long the client side may stay open after the
	// server has gone (like stunnel's TIMEOUTclose), and how long the
	// server may take to finish once the client has half-closed.
	grace time.Duration
	// ready, when set, waits until the certificate can be served (the
	// key holder, -K: the signer or the key process, has its key). The
	// session calls it before the first byte reaches the client, while
	// the server's greeting is on its way, so that the key holder and
	// the server start side by side; an error ends the process (111)
	// before the client hears a byte.
	ready func() error
	// proxy, with -H, are the addresses of the PROXY header the server
	// gets first (proxyheader.go); nil: no header.
	proxy *proxyAddrs
	// down says why the server or the key holder is not there at all
	// (down.go); zero: both are.
	down down
}

// maxResponse bounds one server response before login.
const maxResponse = 1 << 20

// result is what one read from a peer gave.
type result struct {
	lit  []byte // a literal read before data (client side)
	data []byte // the line, or the server's whole response
	n    int    // server side: length of the response's first line
	err  error
}

// async runs one read at a time on a peer in a goroutine, so that the
// session can wait on both peers and a timer; it never reads ahead of
// what the session asked for, so that the bytes after STARTTLS, or after
// a login, are still in the peer's bufio.Reader when the session changes
// gear.
type async struct {
	busy bool
	ch   chan result
}

func (a *async) start(f func() result) {
	a.busy = true
	go func() { a.ch <- f() }()
}

func (a *async) wait() result {
	r := <-a.ch
	a.busy = false
	return r
}

type session struct {
	cfg    *config
	part   part
	fatal  error    // from cfg.ready: the process exits with it
	raw    net.Conn // the client as given
	client net.Conn // raw, or the TLS conn over it
	server net.Conn
	cr, sr *bufio.Reader
	cli    async
	srv    async

	deadline   time.Time // of the command being read and answered
	tlsOn      bool      // a TLS channel to the client is up
	clientGone bool      // the client half-closed before login
	loggedIn   bool      // the server accepted a login or greeted PREAUTH
	serverHeld bool      // no server read is restarted: see holdServer
	authFailed int       // the server's refusals of a login (LOGIN, AUTHENTICATE, PASS, APOP, AUTH)
	end        ending    // how the session ended: the log line's end= (end.go); running until then
	reason     string    // why the server side or the key holder failed, when known: the log line's reason=

	// What the log line tells.
	starttls bool
	state    tls.ConnectionState
	sni      string            // the server name the client asked for, even in a failed handshake
	offered  offered           // the ClientHello's versions and suites, for a failed handshake
	served   *x509.Certificate // the leaf chosen for this handshake
	certSent bool              // the certificate went out: a failure is the client refusing it
	tlsIn    int64             // in= when the handshake completed: the client's bytes before TLS
	tlsDone  time.Time         // when the handshake completed
	in, out  atomic.Int64
	start    time.Time
	warnings warnings
}

// serve runs one session to its end and closes both connections.
func serve(cfg *config, client, server net.Conn) *session {
	if cfg.linger == 0 {
		cfg.linger = 2 * time.Second
	}
	if cfg.grace == 0 {
		cfg.grace = 10 * time.Second
	}
	s := &session{
		cfg: cfg, raw: client, client: client, server: server,
		sr:    bufio.NewReaderSize(server, 4096),
		cli:   async{ch: make(chan result, 1)},
		srv:   async{ch: make(chan result, 1)},
		start: time.Now(),
	}
	s.part = parts[cfg.mode.Protocol](s)
	s.run()
	s.rejectedAfterHandshake()
	s.logEnd()
	return s
}

func (s *session) run() {
	defer s.raw.Close()
	defer s.server.Close()
	if s.cfg.down != (down{}) {
		s.peerDown()
		return
	}
	if s.cfg.mode.Policy == suite.Implicit {
		if !s.certReady() {
			return
		}
		if !s.handshake(nil) {
			s.finish()
			return
		}
	} else {
		// Plaintext first; with implicit TLS the handshake makes the
		// client's reader.
		s.cr = bufio.NewReaderSize(s.raw, 4096)
	}
	if !s.sendProxyHeader() {
		s.finish()
		return
	}
	s.beforeLogin()
	if s.end != running {
		s.finish()
		return
	}
	s.relay()
}

// certReady waits for cfg.ready, if any; on failure the session ends,
// and the process exits 111. With implicit TLS nothing can be said to
// the client (no handshake without the key holder); beforeLogin tells a
// STARTTLS client.
func (s *session) certReady() bool {
	if s.cfg.ready == nil {
		return true
	}
	if err := s.cfg.ready(); err != nil {
		s.fatal = log.Temp(err, "use the key holder")
		s.end = endKeyHolderFailed
		return false
	}
	return true
}

// beforeLogin is the event loop until login: one server read always
// running, one client read when the part asks for it, and the deadline
// of the current command. Each event goes to the part, except the ones
// every protocol handles alike: a peer's end or error, a limit, a
// timeout.
func (s *session) beforeLogin() {
	s.setDeadline(time.Now().Add(s.cfg.commandTimeout)) // for the greeting
	s.readServer()
	if !s.tlsOn && !s.certReady() {
		s.bye(endKeyHolderFailed, s.unavailableLine())
		return
	}
	timer := time.NewTimer(s.cfg.commandTimeout)
	defer timer.Stop()
	for s.end == running && !s.loggedIn {
		timer.Reset(time.Until(s.deadline))
		select {
		case r := <-s.srv.ch:
			s.srv.busy = false
			if r.err != nil {
				s.serverFailed(r)
				continue
			}
			s.part.server(r)
			if s.end == running && !s.loggedIn && !s.serverHeld {
				s.readServer() // after login the relay reads the server
			}
		case r := <-s.cli.ch:
			s.cli.busy = false
			s.in.Add(int64(len(r.lit) + len(r.data)))
			if r.err != nil {
				s.clientFailed(r.err)
				continue
			}
			s.part.client(r)
		case <-timer.C:
			s.timedOut()
		}
	}
}

func (s *session) setDeadline(t time.Time) {
	s.deadline = t
	s.raw.SetDeadline(t)
	s.server.SetWriteDeadline(t) // a server that stops reading is no excuse
}

// nextCommand gives the client's next command the whole -t, unless the
// client has gone: the server then has cfg.grace to finish.
func (s *session) nextCommand() {
	if s.clientGone {
		return
	}
	s.setDeadline(time.Now().Add(s.cfg.commandTimeout))
}

func (s *session) readServer() {
	sr, p := s.sr, s.part
	s.srv.start(func() result { return p.readResponse(sr) })
}

// readClient starts the part's read of the client, unless the client has
// gone: then nothing more comes from it, and the session waits for the
// server to finish.
func (s *session) readClient(read func(cr *bufio.Reader) result) {
	if s.clientGone {
		return
	}
	cr := s.cr
	s.cli.start(func() result { return read(cr) })
}

func (s *session) toClient(b []byte) bool {
	n, err := s.client.Write(b)
	s.out.Add(int64(n))
	if err != nil {
		if s.end == running {
			s.end = endReason(false, err)
			if s.clientGone {
				s.end = endClientEOF
			}
		}
		return false
	}
	return true
}

func (s *session) toServer(b []byte) bool {
	if _, err := s.server.Write(b); err != nil {
		if s.end == running && !(s.srv.busy && serverClosed(err)) {
			s.end = endReason(true, err)
		}
		// Else the server has closed before login while its read is
		// running (a socketpair refuses the write at once): the session
		// goes on to that read's end, which tells what the server
		// said last, and serverFailed tells the client (serverLeft).
		return false
	}
	return true
}

// serverClosed reports whether a write failed because the server has
// closed its end.
func serverClosed(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// reply sends the proxy's own answer to the client.
func (s *session) reply(format string, args ...any) bool {
	return s.toClient([]byte(fmt.Sprintf(format, args...) + "\r\n"))
}

// bye ends the session with the protocol's last word.
func (s *session) bye(end ending, text string) {
	s.raw.SetDeadline(time.Now().Add(s.cfg.linger))
	s.toClient([]byte(s.part.bye(text) + "\r\n"))
	s.end = end
}

// login hands the session to the relay once the current event is done.
func (s *session) login() { s.loggedIn = true }

// holdServer: the server accepted a login before the client sent all of
// it (a tagged OK before the literal, a +OK before the SASL line), so
// the login completes on a client event, once the owed bytes are read
// and dropped. No read of the server is started meanwhile: the relay
// must find the server's next bytes in its reader, not in a read
// nobody waits for (which took the answer to the client's first command
// after login).
func (s *session) holdServer() { s.serverHeld = true }

// timedOut ends the session when -t runs out, naming who was late.
func (s *session) timedOut() {
	if s.clientGone {
		s.end = endClientEOF // the server took its grace time to finish
		return
	}
	switch s.part.waiting() {
	case waitingGreeting:
		s.warn("server sent no greeting within %s", s.cfg.commandTimeout)
		s.bye(endServerTimeout, "Server not responding")
		return
	case waitingClient:
		s.warn("client took more than %s for a command: autologout", s.cfg.commandTimeout)
	default:
		s.warn("server did not answer a command within %s: autologout", s.cfg.commandTimeout)
	}
	s.bye(endTimeout, "Autologout; command not completed in time")
}

// serverFailed ends the session on a server read that failed.
func (s *session) serverFailed(r result) {
	if r.err == line.ErrTooLong {
		s.warn("server sent a response over %d bytes before authentication", maxResponse)
		s.bye(endServerError, "Server error")
		return
	}
	if s.part.waiting() == waitingGreeting && !s.clientGone {
		// No greeting: the client is told (in TLS with implicit TLS,
		// where the handshake came first), and the log says why. A
		// part of a greeting is no greeting: not passed on.
		s.reason = serverGone(r.err, "its greeting")
		s.bye(endReason(true, r.err), s.unavailableLine())
		return
	}
	if !s.clientGone {
		s.serverLeft(r)
		return
	}
	// The client ended first: what the server sent is passed on, the
	// server's end is the end of a session the client had ended.
	if len(r.data) > 0 {
		s.toClient(r.data)
	}
	s.end = endClientEOF
}

// serverLeft ends a session whose server went after its greeting and
// before login, while the client was still there: the client is told,
// never left with a bare end of file, as when the server is not there at
// all (down.go), unless the server said its own last word or the client
// asked for the end (part.serverWent); the log line says why (reason=),
// end= stays server-eof (server-error for a failed read).
//
// What the server sent of a response it did not finish is no response
// (as a part of a greeting is no greeting): the proxy's BYE (-ERR)
// replaces it, so that it starts a line of its own in the client's
// parse. Passed on, a line cut short and ended by the proxy could read
// as a tagged OK or a +OK, and the BYE would complete a literal cut
// short as its octets. The parts read a response whole (IMAP) or a line
// at a time (POP3), so none of an unfinished one has gone out, except
// the lines of a POP3 multi-line response (byeMute). Where nothing is
// added, what came is passed on, as before.
func (s *session) serverLeft(r result) {
	end := endReason(true, r.err)
	word := s.part.serverWent()
	if word != byeSaid {
		s.reason = serverGone(r.err, "login")
	}
	if word == byeOwed {
		s.bye(end, s.unavailableLine())
		return
	}
	if len(r.data) > 0 {
		s.toClient(r.data)
	}
	if s.end == running {
		s.end = end
	}
}

// clientFailed handles a client read that failed: a limit or a timeout
// ends the session; an end of file is passed on as a half-close, and the
// server's answers still drain for cfg.grace.
func (s *session) clientFailed(err error) {
	switch {
	case err == line.ErrTooLong:
		s.warn("client sent a line over %d bytes", line.Max)
		s.bye(endLineTooLong, "Command line too long")
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.timedOut()
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.clientGone = true
		closeWrite(s.server)
		s.deadline = time.Now().Add(s.cfg.grace)
		if s.serverHeld {
			// No login now: the server's answers drain as for any
			// client gone.
			s.serverHeld = false
			s.readServer()
		}
	default:
		s.end = endClientError
	}
}

// startTLS sends the part's positive answer to STARTTLS (or STLS) and
// runs the handshake. Whatever the client sent after the command is no
// command: it goes to the handshake (RFC 9051 §6.2.1 allows a pipelined
// ClientHello), where plaintext fails.
func (s *session) startTLS(answer string) bool {
	if !s.reply("%s", answer) {
		return false
	}
	var pre []byte
	if n := s.cr.Buffered(); n > 0 {
		pre = make([]byte, n)
		io.ReadFull(s.cr, pre)
	}
	if !s.handshake(pre) {
		return false
	}
	s.starttls = true
	return true
}

// finish ends a session that never reached the relay: the client gets a
// half-close, and what it still sends is read and dropped for a moment,
// so that the kernel does not reset the connection under our last words.
func (s *session) finish() {
	closeWrite(s.server)
	s.raw.SetDeadline(time.Now().Add(s.cfg.linger))
	closeWrite(s.client)
	if s.cli.busy {
		if r := s.cli.wait(); r.err != nil {
			return
		}
	}
	io.Copy(io.Discard, s.raw)
}
