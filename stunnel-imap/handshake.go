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
	"slices"
	"strconv"
	"strings"
	"time"

	"imap-tls/internal/certfile"
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
	// Every write after the certificate was chosen carries it (or
	// follows it): a handshake that fails after that point most likely
	// failed at the client's check of the certificate.
	conn = &sentConn{Conn: conn, s: s}
	cfg := s.cfg.tls.Clone()
	// The server name, the versions and the cipher suites are kept as
	// soon as the ClientHello is read, so that the log names them when
	// the handshake then fails.
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.sni = hello.ServerName
		s.offered = offered{
			versions: slices.Clone(hello.SupportedVersions[:min(len(hello.SupportedVersions), maxNamed+1)]),
			suites:   slices.Clone(hello.CipherSuites[:min(len(hello.CipherSuites), maxNamed+1)]),
			nSuites:  len(hello.CipherSuites),
			nVers:    len(hello.SupportedVersions),
		}
		return nil, nil
	}
	get := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := get(hello)
		if err == nil && c != nil && c.Leaf != nil {
			s.served = c.Leaf
			// The expiry policy's warning, once per connection, for the
			// certificate this connection is served (package certfile).
			if w := certfile.Expiring(c.Leaf, s.cfg.certWarnDays, time.Now()); w != "" {
				s.warn("%s (%s=%d)", w, certfile.WarnDaysEnv, s.cfg.certWarnDays)
			}
		}
		return c, err
	}
	tc := tls.Server(conn, cfg)
	// The deadline bounds the whole handshake: every read and write on
	// the client waits at most until then (the key process's exchanges
	// have their own).
	s.raw.SetDeadline(time.Now().Add(s.cfg.handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		switch {
		case len(pre) > 0 && pre[0] != 0x16:
			s.warn("client sent plaintext after %s: dropped", s.cfg.mode.StartTLS)
			s.end = endHandshakeFailed
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.end = endHandshakeTimeout
		case strings.Contains(err.Error(), "application protocol"):
			s.warn("client offered no %s ALPN protocol: refused", s.cfg.mode.ALPN)
			s.end = endALPNRefused
		case s.certSent:
			// The client had the certificate and went: it refused it
			// (an alert, an encrypted alert crypto/tls reads as a bad
			// record MAC, or just a close, as mbsync and neomutt do).
			s.warn("client rejected the certificate (expired/untrusted/wrong name?): %s; served %s; sni=%s",
				log.Clip(log.Reason(err), maxLogged), servedText(s.served), field(s.sni))
			s.end = endHandshakeFailed
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				s.end = endClientEOF
			}
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			s.end = endClientEOF
		default:
			// The error's text can hold what the client offered (every
			// cipher suite of a hostile hello): named, and bounded.
			s.warn("unable to complete tls handshake: %s", log.Clip(s.offered.explain(log.Reason(err)), maxLogged))
			s.end = endHandshakeFailed
		}
		return false
	}
	s.state = tc.ConnectionState()
	s.tlsIn, s.tlsDone = s.in.Load(), time.Now()
	s.client = tc
	s.cr = bufio.NewReaderSize(tc, 4096)
	s.tlsOn = true
	if s.cfg.verbosity > 0 {
		s.info("tls %s %s", tlsVersion(s.state), tls.CipherSuiteName(s.state.CipherSuite))
	}
	return true
}

// rejectedAfterHandshake warns of a client that closed soon after a
// completed handshake without sending a byte in TLS: clients that check
// the certificate only once the handshake is done (mbsync, mpop,
// neomutt) close just so when they refuse it, with no alert. "Soon" is
// within -T of the handshake: a client's own check takes no longer than
// a handshake.
func (s *session) rejectedAfterHandshake() {
	if !s.tlsOn || s.loggedIn || s.in.Load() != s.tlsIn || (s.end != endClientEOF && s.end != endClientError) {
		return
	}
	if time.Since(s.tlsDone) > s.cfg.handshakeTimeout {
		return
	}
	s.warn("client closed after the tls handshake without a command: it probably rejected the certificate (expired/untrusted/wrong name?); served %s; sni=%s",
		servedText(s.served), field(s.sni))
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

// sentConn notes the first write after the certificate was chosen: from
// then on the client has (or is getting) the certificate.
type sentConn struct {
	net.Conn
	s *session
}

func (c *sentConn) Write(b []byte) (int, error) {
	// crypto/tls writes a server's flight in one write, the certificate
	// in it; an alert record (0x15) alone, when it refuses the client,
	// carries none.
	if c.s.served != nil && len(b) > 0 && b[0] != 0x15 {
		c.s.certSent = true
	}
	return c.Conn.Write(b)
}

// maxNamed bounds the versions or suites named in one warning.
const maxNamed = 12

// offered is what a ClientHello offered, kept (bounded) for the log.
type offered struct {
	versions, suites []uint16
	nVers, nSuites   int
}

// explain rewrites crypto/tls's errors that list what the client offered
// as hexadecimal numbers ([302 301], [9c ff]) with their names.
func (o offered) explain(reason string) string {
	const versions = "tls: client offered only unsupported versions"
	const suites = "tls: no cipher suite supported by both client and server"
	switch {
	case strings.HasPrefix(reason, versions) && o.nVers > 0:
		return versions + ": " + nameList(o.versions, o.nVers, tls.VersionName)
	case strings.HasPrefix(reason, suites) && o.nSuites > 0:
		return suites + "; client offered: " + nameList(o.suites, o.nSuites, tls.CipherSuiteName)
	}
	return reason
}

// nameList is "TLS 1.1, TLS 1.0", at most maxNamed names, then "and N
// more".
func nameList(ids []uint16, n int, name func(uint16) string) string {
	var b strings.Builder
	for i, id := range ids[:min(len(ids), maxNamed)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(name(id))
	}
	if n > maxNamed {
		b.WriteString(" and " + strconv.Itoa(n-maxNamed) + " more")
	}
	return b.String()
}

// servedText names the served certificate for a rejection: "the
// certificate for mail.example.org, valid until 2026-12-05".
func servedText(c *x509.Certificate) string {
	if c == nil {
		return "no certificate"
	}
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	n := "(no name)"
	if len(names) > 0 {
		n = log.Clip(strings.Join(names[:min(len(names), 4)], ","), 200)
	}
	state := "valid until"
	if time.Now().After(c.NotAfter) {
		state = "expired on"
	}
	return "the certificate for " + n + ", " + state + " " + c.NotAfter.UTC().Format(time.DateOnly)
}
