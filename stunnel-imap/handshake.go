package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"imap-tls/log"
)

// tlsConfig is the one TLS configuration of a port: crypto/tls's
// defaults for cipher suites and curves (TLS 1.3 and hybrid
// post-quantum key exchange included), TLS 1.2 at least, and the
// protocol's ALPN id alone.
func tlsConfig(src certSource, alpn string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// ALPN (RFC 7301): crypto/tls refuses a client that offers
		// protocols none of which is ours with a no_application_protocol
		// alert: the ALPACA defence. A client that offers no ALPN at all
		// is served.
		NextProtos:     []string{alpn},
		GetCertificate: src.certificate,
		// One process per connection: a ticket key would die with it.
		SessionTicketsDisabled: true,
	}
}

// maxLogged bounds a client-chosen text (a TLS error, a server name, a
// command name) in a log line: enough to diagnose, too little to flood.
const maxLogged = 200

// handshake runs the TLS handshake under -T; pre is what the client sent
// after STARTTLS that was already read.
func (s *session) handshake(pre []byte) bool {
	var conn net.Conn = s.raw
	if len(pre) > 0 {
		conn = &prefixConn{Conn: s.raw, pre: pre}
	}
	cfg := s.cfg.tls.Clone()
	// The server name is kept as soon as the ClientHello is read, so
	// that the log line names it even when the handshake then fails.
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.sni = hello.ServerName
		return nil, nil
	}
	tc := tls.Server(conn, cfg)
	// The deadline bounds the whole handshake: every read and write on
	// the client waits at most until then (the key process's exchanges
	// have their own).
	s.raw.SetDeadline(time.Now().Add(s.cfg.handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		switch {
		case len(pre) > 0 && pre[0] != 0x16:
			s.warn("client sent plaintext after %s: dropped", s.cfg.mode.starttls)
			s.end = "handshake-failed"
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.end = "handshake-timeout"
		case strings.Contains(err.Error(), "application protocol"):
			s.warn("client offered no %s ALPN protocol: refused", s.cfg.mode.alpn)
			s.end = "alpn-refused"
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			s.end = "client-eof"
		default:
			// The error's text can hold what the client offered (every
			// cipher suite of a hostile hello): bounded.
			s.warn("unable to complete tls handshake: %s", log.Clip(log.Reason(err), maxLogged))
			s.end = "handshake-failed"
		}
		return false
	}
	s.state = tc.ConnectionState()
	s.client = tc
	s.cr = bufio.NewReaderSize(tc, 4096)
	s.tlsOn = true
	if s.cfg.verbosity > 0 {
		s.cfg.log.Info("tls %s %s", tlsVersion(s.state), tls.CipherSuiteName(s.state.CipherSuite))
	}
	return true
}

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
