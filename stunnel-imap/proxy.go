package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"imap-tls/log"
	"imap-tls/stunnel-imap/imap"
)

// mode is the port's kind.
type mode int

const (
	modeImplicit mode = iota // no -n: TLS first (port 993)
	modeRequired             // -n imap: STARTTLS required before login
	modeOptional             // -n imap-: STARTTLS offered, plaintext relayed
)

func (m mode) String() string {
	switch m {
	case modeRequired:
		return "imap"
	case modeOptional:
		return "imap-"
	}
	return "imaps"
}

// config is what one session needs; run fills it from the command line,
// tests build it directly.
type config struct {
	mode      mode
	tls       *tls.Config
	handshake time.Duration // -T
	command   time.Duration // -t
	idle      time.Duration // -A
	log       *log.Logger
	verbosity int
	remote    string
	// linger bounds how long the proxy reads and discards what a client
	// still sends after the proxy ended the session, so that closing does
	// not reset the connection under bytes the client has yet to read.
	linger time.Duration
	// grace bounds how long the client side may stay open after the
	// server has gone (like stunnel's TIMEOUTclose).
	grace time.Duration
	// ready, when set, waits until the certificate can be served (the
	// key process has loaded its key). The session calls it before the
	// first byte reaches the client, while the server's greeting is on
	// its way, so that the key process and the IMAP server start side by
	// side; an error ends the process (111) before the client hears a
	// byte.
	ready func() error
}

func tlsConfig(src certSource, l *log.Logger) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// ALPN (RFC 7301): "imap" is IMAP's ALPN id. crypto/tls refuses a
		// client that offers protocols none of which is "imap" with a
		// no_application_protocol alert: the ALPACA defence. A client
		// that offers no ALPN at all is served.
		NextProtos:     []string{"imap"},
		GetCertificate: src.certificate,
		// One process per connection: a ticket key would die with it.
		SessionTicketsDisabled: true,
	}
}

const maxResponse = 1 << 20 // a server response before authentication

// result is what one read from a peer gave.
type result struct {
	lit  []byte // a literal read before line (client side)
	data []byte // the line, or the server's whole response
	n    int    // server side: length of the response's first line
	err  error
}

// async runs one read at a time on a peer in a goroutine, so that the
// session can wait on both peers and a timer; it never reads ahead of
// what the session asked for, so that the bytes after STARTTLS, or after
// a successful login, are still in the peer's bufio.Reader when the
// session changes gear.
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

// What the client's pending read is for.
type want int

const (
	wantCommand  want = iota // the first line of a command
	wantLiteral              // a literal and the line after it
	wantAuthLine             // an AUTHENTICATE response line
	wantDiscard              // a literal and its line, to drop
)

// command is the client command the server is working on. Before
// authentication the proxy forwards one command at a time and waits for
// its tagged response, so that its idea of where commands begin can
// never drift from the server's.
type command struct {
	tag, name string
	auth      bool              // LOGIN or AUTHENTICATE
	lit       *imap.LiteralInfo // announced, waiting for the server's "+"
	converted bool              // lit was {n+}, sent to the server as {n}
	complete  bool              // the whole command is with the server
}

type session struct {
	cfg    *config
	fatal  error    // from cfg.ready: the process exits with it
	raw    net.Conn // the client as given
	client net.Conn // raw, or the TLS conn over it
	server net.Conn
	cr, sr *bufio.Reader
	cli    async
	srv    async
	want   want
	cmd    *command

	deadline  time.Time // of the command being read
	greeted   bool
	clientEOF bool
	tlsOn     bool
	starttls  bool
	auth      bool
	end       string

	in, out atomic.Int64
	start   time.Time
	state   tls.ConnectionState
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
	s.run()
	s.logEnd()
	return s
}

func (s *session) run() {
	defer s.raw.Close()
	defer s.server.Close()
	if s.cfg.mode == modeImplicit {
		if !s.certReady() {
			return
		}
		if !s.handshake(nil) {
			s.finish()
			return
		}
	} else {
		// Plaintext IMAP first; with implicit TLS the handshake makes
		// the client's reader.
		s.cr = bufio.NewReaderSize(s.raw, 4096)
	}
	s.preauth()
	if s.end != "" {
		if s.fatal == nil {
			s.finish()
		}
		return
	}
	s.relay()
}

// certReady waits for cfg.ready, if any; on failure the session ends
// with nothing said to the client, and the process exits 111.
func (s *session) certReady() bool {
	if s.cfg.ready == nil {
		return true
	}
	if err := s.cfg.ready(); err != nil {
		s.fatal = log.Temp(err, "use the key process")
		s.end = "key-process-failed"
		return false
	}
	return true
}

// ---- before authentication ----

func (s *session) rule() imap.Rule {
	if s.tlsOn || s.cfg.mode == modeImplicit {
		return imap.Rule{}
	}
	return imap.Rule{StartTLS: true, LoginDisabled: s.cfg.mode == modeRequired}
}

func (s *session) preauth() {
	s.setDeadline(time.Now().Add(s.cfg.command)) // for the greeting
	s.readServer()
	if s.cfg.mode != modeImplicit && !s.certReady() {
		return
	}
	timer := time.NewTimer(s.cfg.command)
	defer timer.Stop()
	for s.end == "" && !s.auth {
		if s.greeted && s.cmd == nil && !s.cli.busy && !s.clientEOF {
			s.setDeadline(time.Now().Add(s.cfg.command))
			s.want = wantCommand
			s.readClient()
		}
		timer.Reset(time.Until(s.deadline))
		select {
		case r := <-s.srv.ch:
			s.srv.busy = false
			s.onServer(r)
		case r := <-s.cli.ch:
			s.cli.busy = false
			s.onClient(r)
		case <-timer.C:
			if s.clientEOF {
				s.end = "client-eof"
			} else {
				s.timeout(s.cli.busy || s.cmd == nil)
			}
		}
	}
}

func (s *session) setDeadline(t time.Time) {
	s.deadline = t
	s.raw.SetDeadline(t)
	s.server.SetWriteDeadline(t) // a server that stops reading is no excuse
}

func (s *session) readServer() {
	sr := s.sr
	s.srv.start(func() result {
		raw, n, err := imap.ReadResponse(sr, maxResponse, maxResponse)
		return result{data: raw, n: n, err: err}
	})
}

func (s *session) readClient() {
	cr, w := s.cr, s.want
	var size int64
	if w == wantLiteral || w == wantDiscard {
		size = s.cmd.lit.Size
	}
	s.cli.start(func() result {
		var r result
		if w == wantLiteral || w == wantDiscard {
			r.lit, r.err = imap.ReadLiteral(cr, size)
			if r.err != nil {
				return r
			}
		}
		r.data, r.err = imap.ReadLine(cr, imap.MaxLine)
		return r
	})
}

func (s *session) toClient(b []byte) bool {
	n, err := s.client.Write(b)
	s.out.Add(int64(n))
	if err != nil {
		if s.end == "" {
			s.end = endReason("client", err)
			if s.clientEOF {
				s.end = "client-eof"
			}
		}
		return false
	}
	return true
}

func (s *session) toServer(b []byte) bool {
	if _, err := s.server.Write(b); err != nil {
		if s.end == "" {
			s.end = endReason("server", err)
		}
		return false
	}
	return true
}

func endReason(peer string, err error) string {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF): // gone mid-response too
		return peer + "-eof"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	return peer + "-error"
}

// reply sends the proxy's own answer to the client.
func (s *session) reply(format string, args ...any) bool {
	return s.toClient([]byte(fmt.Sprintf(format, args...) + "\r\n"))
}

// bye ends the session with an untagged BYE (RFC 9051 §7.1.5).
func (s *session) bye(end, text string) {
	s.raw.SetDeadline(time.Now().Add(s.cfg.linger))
	s.reply("* BYE %s", text)
	s.end = end
}

// timeout ends the session when -t runs out; client says whether the
// client was the one being waited for, or the server (which has the
// whole command, or its part up to a literal, and has not answered).
func (s *session) timeout(client bool) {
	switch {
	case !s.greeted:
		s.cfg.log.Warning("server sent no greeting within %s", s.cfg.command)
		s.bye("server-timeout", "Server not responding")
		return
	case client:
		s.cfg.log.Warning("client took more than %s for a command: autologout", s.cfg.command)
	default:
		s.cfg.log.Warning("server did not answer a command within %s: autologout", s.cfg.command)
	}
	s.bye("timeout", "Autologout; command not completed in time")
}

func (s *session) onServer(r result) {
	if r.err != nil {
		if r.err == imap.ErrTooLong {
			s.cfg.log.Warning("server sent a response over %d bytes before authentication", maxResponse)
			s.bye("server-error", "Server error")
			return
		}
		// What the server sent before it went is passed on.
		if len(r.data) > 0 {
			s.toClient(r.data)
		}
		if s.clientEOF {
			s.end = "client-eof"
		} else if s.end == "" {
			s.end = endReason("server", r.err)
		}
		return
	}
	first := r.data[:r.n]
	resp := imap.ParseResponse(first)
	out := r.data
	if rw := imap.Rewrite(first, s.rule()); !bytes.Equal(rw, first) {
		out = append(rw, r.data[r.n:]...)
	}

	if !s.greeted {
		s.greeted = true
		if resp.Kind == imap.Untagged {
			switch resp.Name {
			case "PREAUTH":
				if s.cfg.mode != modeImplicit {
					s.cfg.log.Warning("server greeted with PREAUTH on a STARTTLS port: refused")
					s.bye("preauth", "Server is pre-authenticated: refusing a session without TLS")
					return
				}
				if s.toClient(out) {
					s.auth = true
				}
				return
			case "BYE":
				s.toClient(out)
				s.end = "server-bye"
				return
			}
		}
		s.toClient(out)
		s.readServer()
		return
	}

	c := s.cmd
	switch {
	case resp.Kind == imap.Continuation && c != nil && c.lit != nil && !s.cli.busy:
		if !c.converted && !s.toClient(out) {
			return
		}
		s.want = wantLiteral
		s.readClient()
	case resp.Kind == imap.Continuation && c != nil && c.auth && c.complete && !s.cli.busy:
		if !s.toClient(out) {
			return
		}
		s.want = wantAuthLine
		s.readClient()
	case resp.Kind == imap.Tagged && c != nil && resp.Tag == c.tag && !s.cli.busy:
		if !s.toClient(out) {
			return
		}
		switch {
		case c.lit != nil && c.converted:
			// The server refused the command before its {n+} literal:
			// the client sends it anyway, and it is no command.
			s.want = wantDiscard
			s.readClient()
		case c.auth && resp.Name == "OK" && c.complete:
			s.auth = true
			return // the server's reader stays idle: relay takes over
		default:
			s.cmd = nil
		}
	default:
		if !s.toClient(out) {
			return
		}
	}
	s.readServer()
}

func (s *session) onClient(r result) {
	s.in.Add(int64(len(r.lit) + len(r.data)))
	if r.err != nil {
		s.clientError(r.err)
		return
	}
	switch s.want {
	case wantCommand:
		s.command(r.data)
	case wantLiteral:
		s.forward(s.cmd, r.lit, r.data)
	case wantAuthLine:
		// An AUTHENTICATE response: base64, or "*" to cancel (RFC 9051
		// §6.2.2). Never a command.
		s.toServer(r.data)
	case wantDiscard:
		if lit, ok := imap.Literal(r.data); ok && lit.NonSync {
			if !s.bounded(lit) {
				return
			}
			s.cmd.lit = &lit
			s.readClient()
			return
		}
		s.cmd = nil
	}
}

func (s *session) clientError(err error) {
	switch {
	case err == imap.ErrTooLong:
		s.cfg.log.Warning("client sent a line over %d bytes", imap.MaxLine)
		s.bye("line-too-long", "Command line too long")
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.timeout(true)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// Passed on as a half-close; the server's answers still drain.
		s.clientEOF = true
		closeWrite(s.server)
		s.deadline = time.Now().Add(s.cfg.grace)
	default:
		s.end = "client-error"
	}
}

// command handles the first line of a client command.
func (s *session) command(line []byte) {
	if len(imap.Trim(line)) == 0 {
		// An empty line is no command: read on, under the same deadline.
		s.readClient()
		return
	}
	lit, hasLit := imap.Literal(line)
	if hasLit && !s.bounded(lit) {
		return
	}
	tag, name, args, ok := imap.ParseCommand(line)
	c := &command{tag: tag, name: name}
	if hasLit && lit.NonSync {
		c.lit, c.converted = &lit, true
	}
	if !ok {
		tag = imap.ParseTag(line)
		if tag == "" {
			tag = "*"
		}
		s.refuse(c, "%s BAD Command not understood", tag)
		return
	}
	if s.cfg.verbosity > 0 {
		s.cfg.log.Info("command %s", name)
	}
	switch name {
	case "STARTTLS":
		switch {
		case s.tlsOn && s.cfg.mode == modeImplicit:
			s.refuse(c, "%s BAD TLS is already active", tag)
		case s.tlsOn:
			s.cfg.log.Warning("client sent STARTTLS twice")
			s.refuse(c, "%s BAD TLS is already active", tag)
		case len(args) > 0 || hasLit:
			s.cfg.log.Warning("client sent STARTTLS with arguments")
			s.refuse(c, "%s BAD STARTTLS takes no arguments", tag)
		default:
			s.startTLS(tag)
		}
		return
	case "LOGIN", "AUTHENTICATE":
		if s.cfg.mode == modeRequired && !s.tlsOn {
			s.cfg.log.Warning("client sent %s before STARTTLS: refused", name)
			s.refuse(c, "%s NO [PRIVACYREQUIRED] TLS is required: use STARTTLS first", tag)
			return
		}
		c.auth = true
	}
	s.cmd = c
	s.forward(c, nil, line)
}

// bounded reports whether a literal the client announced is within
// imap.MaxLiteral; one over it ends the session.
func (s *session) bounded(lit imap.LiteralInfo) bool {
	if lit.Size <= imap.MaxLiteral {
		return true
	}
	s.cfg.log.Warning("client announced a literal of %d bytes before authentication", lit.Size)
	s.bye("literal-too-large", "Literal too large")
	return false
}

// refuse answers a command the server never sees; the rest of the
// command, if it announced a non-synchronizing literal, is dropped.
func (s *session) refuse(c *command, format string, args ...any) {
	if !s.reply(format, args...) {
		return
	}
	if c.lit != nil && c.converted {
		s.cmd = c
		s.want = wantDiscard
		s.readClient()
	}
}

// forward sends a literal and the line after it (or the first line) of
// the current command to the server. A line that announces a literal
// leaves the command waiting for the server's "+"; a non-synchronizing
// literal goes to the server as a synchronizing one, so that the client's
// next bytes reach the server only once the server has agreed that they
// are a literal (RFC 7888 §4, and no smuggling through a literal the
// server would not take).
func (s *session) forward(c *command, lit, line []byte) {
	c.lit, c.converted, c.complete = nil, false, false
	if l, ok := imap.Literal(line); ok {
		if !s.bounded(l) {
			return
		}
		c.lit = &l
		if l.NonSync {
			c.converted = true
			line = imap.ToSync(line, l)
		}
	} else {
		c.complete = true
	}
	if len(lit) > 0 {
		buf := make([]byte, 0, len(lit)+len(line))
		line = append(append(buf, lit...), line...)
	}
	s.toServer(line)
}

// startTLS answers STARTTLS and runs the handshake. Whatever the client
// sent after the STARTTLS line is no command: it goes to the handshake
// (RFC 9051 §6.2.1 allows a pipelined ClientHello), where plaintext fails.
func (s *session) startTLS(tag string) {
	if !s.reply("%s OK Begin TLS negotiation now", tag) {
		return
	}
	var pre []byte
	if n := s.cr.Buffered(); n > 0 {
		pre = make([]byte, n)
		io.ReadFull(s.cr, pre)
	}
	if s.handshake(pre) {
		s.starttls = true
	}
}

// handshake runs the TLS handshake under -T.
func (s *session) handshake(pre []byte) bool {
	var conn net.Conn = s.raw
	if len(pre) > 0 {
		conn = &prefixConn{Conn: s.raw, pre: pre}
	}
	tc := tls.Server(conn, s.cfg.tls)
	// The deadline bounds the whole handshake: every read and write on
	// the client waits at most until then (the key process's exchanges
	// have their own). A context would only add a goroutine and a timer
	// per connection to do the same.
	s.raw.SetDeadline(time.Now().Add(s.cfg.handshake))
	if err := tc.Handshake(); err != nil {
		switch {
		case len(pre) > 0 && pre[0] != 0x16:
			s.cfg.log.Warning("client sent plaintext after STARTTLS: dropped")
			s.end = "handshake-failed"
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.end = "handshake-timeout"
		case strings.Contains(err.Error(), "application protocol"):
			s.cfg.log.Warning("client offered no imap ALPN protocol: refused")
			s.end = "alpn-refused"
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			s.end = "client-eof"
		default:
			s.cfg.log.Warning("unable to complete tls handshake: %s", log.Reason(err))
			s.end = "handshake-failed"
		}
		return false
	}
	s.state = tc.ConnectionState()
	s.client = tc
	s.cr = bufio.NewReaderSize(tc, 4096)
	s.tlsOn = true
	s.cmd = nil
	if s.cfg.verbosity > 0 {
		s.cfg.log.Info("tls %s %s", tlsVersion(s.state), tls.CipherSuiteName(s.state.CipherSuite))
	}
	return true
}

// prefixConn reads pre before the connection itself.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.CloseWrite() // close_notify
		c = tc.NetConn()
	}
	if p, ok := c.(*prefixConn); ok {
		c = p.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
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

// ---- after authentication ----

const relayBuffer = 64 << 10

type direction struct {
	seq      int32 // 1 for the direction that ended first
	toServer bool
	err      error // nil at end of file
	write    bool  // the error was on the writing side
}

// relay copies both ways, unparsed, until both directions have ended.
func (s *session) relay() {
	if s.cli.busy {
		// A line read before the server's OK: it belongs to the stream.
		r := s.cli.wait()
		s.in.Add(int64(len(r.lit) + len(r.data)))
		s.toServer(append(r.lit, r.data...))
	}
	s.raw.SetDeadline(time.Time{})
	s.server.SetDeadline(time.Time{})
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan direction, 2)
	var order atomic.Int32
	go func() { done <- pump(s.server, s.cr, &s.in, &last, &order, true) }()
	go func() { done <- pump(s.client, s.sr, &s.out, &last, &order, false) }()

	stop := make(chan struct{})
	var idled atomic.Bool
	go func() {
		t := time.NewTimer(s.cfg.idle)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				since := time.Duration(time.Now().UnixNano() - last.Load())
				if since < s.cfg.idle {
					t.Reset(s.cfg.idle - since)
					continue
				}
				idled.Store(true)
				past := time.Now().Add(-time.Second)
				s.raw.SetDeadline(past)
				s.server.SetDeadline(past)
				return
			}
		}
	}()

	first := <-done
	if !first.toServer {
		// The server is done: the client gets the half-close (done by
		// pump on end of file) and a little time to close its side.
		if first.err != nil {
			closeWrite(s.client)
		}
		if !idled.Load() {
			s.raw.SetReadDeadline(time.Now().Add(s.cfg.grace))
		}
	} else if first.err != nil {
		closeWrite(s.server)
	}
	second := <-done
	close(stop)
	if second.seq < first.seq {
		first = second
	}

	switch {
	case idled.Load():
		s.cfg.log.Warning("session idle for %s: closed", s.cfg.idle)
		s.raw.SetDeadline(time.Now().Add(s.cfg.linger))
		closeWrite(s.client)
		s.end = "idle-timeout"
	case first.toServer && first.err == nil:
		s.end = "client-eof"
	case !first.toServer && first.err == nil:
		s.end = "server-eof"
	case first.toServer == first.write:
		s.end = "server-error"
	default:
		s.end = "client-error"
	}
}

// pump copies src to dst with a large buffer and passes end of file on as
// a half-close.
func pump(dst net.Conn, src io.Reader, count, last *atomic.Int64, order *atomic.Int32, toServer bool) direction {
	buf := make([]byte, relayBuffer)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return direction{seq: order.Add(1), toServer: toServer, err: werr, write: true}
			}
			count.Add(int64(n))
		}
		if err == io.EOF {
			d := direction{seq: order.Add(1), toServer: toServer}
			closeWrite(dst)
			return d
		}
		if err != nil {
			return direction{seq: order.Add(1), toServer: toServer, err: err}
		}
	}
}

// ---- the log line ----

func tlsVersion(st tls.ConnectionState) string {
	switch st.Version {
	case tls.VersionTLS13:
		return "1.3"
	case tls.VersionTLS12:
		return "1.2"
	case 0:
		return "none"
	}
	return fmt.Sprintf("0x%04x", st.Version)
}

// field keeps a client-chosen value (the server name) to one word.
func field(s string) string {
	if s == "" {
		return "-"
	}
	b := []byte(s)
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

func (s *session) logEnd() {
	if s.cfg.verbosity < 0 {
		return
	}
	cipher := "none"
	if s.state.Version != 0 {
		cipher = tls.CipherSuiteName(s.state.CipherSuite)
	}
	s.cfg.log.Info("remote=%s mode=%s starttls=%s tls=%s cipher=%s sni=%s auth=%s in=%d out=%d duration=%.3fs end=%s",
		s.cfg.remote, s.cfg.mode, yesno(s.starttls), tlsVersion(s.state), cipher, field(s.state.ServerName),
		yesno(s.auth), s.in.Load(), s.out.Load(), time.Since(s.start).Seconds(), s.end)
}
