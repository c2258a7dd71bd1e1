package main

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"

	"imap-tls/internal/sockaddr"
	"imap-tls/internal/suite"
	"imap-tls/log"
)

// This file is a session whose server or key holder is not there: the
// program before this one could not connect it (setuidgid-chroot -c
// and -s, makesock -c set FDn_ERROR for the descriptor n they were to
// fill, package internal/sockaddr's ErrorVar, with the reason, and
// leave that descriptor closed), or the server went before
// its greeting. The client is told, never left with a bare end of file:
// IMAP's BYE in place of the greeting (RFC 9051 §7.1.5) with
// [UNAVAILABLE] (RFC 5530), POP3's -ERR with [SYS/TEMP] (RFC 3206).
// A server gone after its greeting and before login is session.go's
// serverLeft, with the same words (unavailableLine).

// unavailable is the text the client reads: fixed, never the internal
// address or the reason (those are the log's).
const unavailable = "Mail server unavailable, try again later"

// down is why the server or the key holder is not there ("": it is).
type down struct{ server, keyHolder string }

// downFromEnv reads the variables of the server's descriptor (-F) and,
// with -K (keyFD >= 0), of the key holder's: FD3_ERROR and FD4_ERROR in
// the chain imap-tls-server spells.
func downFromEnv(getenv func(string) string, serverFD, keyFD int) down {
	d := down{server: getenv(sockaddr.ErrorVar(serverFD))}
	if keyFD >= 0 {
		d.keyHolder = getenv(sockaddr.ErrorVar(keyFD))
	}
	return d
}

// downSource serves no certificate: the key holder is not there.
type downSource struct{ why string }

func (d downSource) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, errors.New(d.why)
}

// goneConn stands for a server that is not there: reads end at once,
// writes fail. It holds no descriptor.
func goneConn() net.Conn {
	c, peer := net.Pipe()
	peer.Close()
	return c
}

// unavailableLine is the protocol's last word to a client whose server
// or key holder is not there (part.bye adds "* BYE " or "-ERR ").
func (s *session) unavailableLine() string {
	if s.cfg.mode.Protocol == "pop3" {
		return "[SYS/TEMP] " + unavailable
	}
	return "[UNAVAILABLE] " + unavailable
}

// peerDown runs a session whose server or key holder is not there.
// Without the key holder no handshake is possible: a TLS client (implicit
// TLS) gets crypto/tls's internal_error alert, the one thing a TLS
// server can say without a certificate; a STARTTLS client the BYE (-ERR)
// in plaintext, in place of the greeting. Without the server: the BYE
// after the handshake (implicit TLS) or in place of the greeting.
func (s *session) peerDown() {
	d := s.cfg.down
	if d.keyHolder != "" {
		s.reason = d.keyHolder
		if s.cfg.mode.Policy == suite.Implicit {
			s.refuseHandshake()
		} else {
			s.bye(endKeyHolderFailed, s.unavailableLine())
		}
		s.end = endKeyHolderFailed
		s.finish()
		return
	}
	s.reason = d.server
	if s.cfg.mode.Policy == suite.Implicit {
		if !s.certReady() {
			return
		}
		if !s.handshake(nil) {
			s.finish()
			return
		}
	}
	s.bye(endServerError, s.unavailableLine())
	s.finish()
}

// refuseHandshake reads the client's ClientHello (under -T) and answers
// it with an alert: there is no certificate, and crypto/tls then sends
// internal_error.
func (s *session) refuseHandshake() {
	cfg := s.cfg.tls.Clone()
	cfg.GetCertificate = downSource{s.cfg.down.keyHolder}.certificate
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.sni = hello.ServerName
		return nil, nil
	}
	s.raw.SetDeadline(time.Now().Add(s.cfg.handshakeTimeout))
	tls.Server(s.raw, cfg).Handshake()
}

// serverGone is the log's reason for a server that went before when
// ("its greeting", or "login": session.go's serverLeft). A server
// program (makesock's second program) that exited gives an end of file
// here: its exit status is not known to the proxy (makesock exec'd into
// the proxy's chain, so nobody waits for it).
func serverGone(err error, when string) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "server closed the connection before " + when
	}
	return "unable to read from the server before " + when + ": " + log.Reason(err)
}
