package main

import (
	"crypto/tls"
	"net/netip"
	"strconv"
	"time"

	"imap-tls/internal/proxyproto"
	"imap-tls/log"
)

// This file is -H: a PROXY protocol v2 header as the first bytes on the
// server's descriptor, so that a server behind a socket (Dovecot's
// inet_listener with haproxy = yes) learns the client's address, and
// whether the client's login is over TLS.

// proxyAddrs are the connection's addresses, from tcpserver's
// environment (or proxy-server's, when a load balancer is in front).
type proxyAddrs struct {
	remote, local netip.AddrPort
}

// proxyAddrsFromEnv reads TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP and
// TCPLOCALPORT; -H without them is a configuration error: the header
// would have to lie or say nothing.
func proxyAddrsFromEnv(getenv func(string) string) (*proxyAddrs, error) {
	var a proxyAddrs
	for _, v := range []struct {
		ip, port string
		p        *netip.AddrPort
	}{
		{"TCPREMOTEIP", "TCPREMOTEPORT", &a.remote},
		{"TCPLOCALIP", "TCPLOCALPORT", &a.local},
	} {
		ip, err := netip.ParseAddr(getenv(v.ip))
		if err != nil {
			return nil, log.Config(nil, "-H needs $%s, as tcpserver sets it: %q is not an address", v.ip, getenv(v.ip))
		}
		port, err := strconv.ParseUint(getenv(v.port), 10, 16)
		if err != nil {
			return nil, log.Config(nil, "-H needs $%s, as tcpserver sets it: %q is not a port", v.port, getenv(v.port))
		}
		*v.p = netip.AddrPortFrom(ip.WithZone(""), uint16(port))
	}
	return &a, nil
}

// proxyHeader is the header for this session, now: the addresses; with
// every login the server can see made over TLS (every mode but imap-
// and pop3-), PP2_TYPE_SSL with the client flag (Dovecot then counts the
// connection as secured); once the handshake is done (implicit TLS),
// the TLS version and the server name the client asked for
// (PP2_TYPE_AUTHORITY).
func (s *session) proxyHeader() ([]byte, error) {
	a := s.cfg.proxy
	h := proxyproto.Header{Src: a.remote, Dst: a.local}
	if s.cfg.mode.Secured {
		var sub []proxyproto.TLV
		if s.tlsOn {
			sub = append(sub, proxyproto.TLV{Type: proxyproto.SubtypeSSLVersion, Value: []byte(tlsVersionName(s.state.Version))})
		}
		// verify 1: no client certificate was verified (none is asked for)
		h.TLVs = append(h.TLVs, proxyproto.SSL(proxyproto.ClientSSL, 1, sub...))
	}
	if s.tlsOn && s.sni != "" && len(s.sni) <= 255 {
		h.TLVs = append(h.TLVs, proxyproto.TLV{Type: proxyproto.TypeAuthority, Value: []byte(s.sni)})
	}
	return proxyproto.AppendV2(nil, h)
}

// tlsVersionName names a version as HAProxy's PP2_SUBTYPE_SSL_VERSION
// does.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	}
	return "TLS"
}

// sendProxyHeader writes the header with -H, before any other byte to
// the server: with STARTTLS at once, with implicit TLS after the
// handshake (so that it can carry the server name), before the server's
// greeting is read. The server (Dovecot) sends its greeting only once
// the header is in.
func (s *session) sendProxyHeader() bool {
	if s.cfg.proxy == nil {
		return true
	}
	b, err := s.proxyHeader()
	if err != nil { // cannot happen: the addresses and a bounded name fit
		s.warn("unable to make the proxy header: %s", log.Reason(err))
		s.end = endServerError
		return false
	}
	s.server.SetWriteDeadline(time.Now().Add(s.cfg.commandTimeout))
	if _, err := s.server.Write(b); err != nil {
		// The server went before the header (a server program that
		// exited): the client is told, as for a missing greeting.
		s.reason = "unable to send the proxy header to the server: " + log.Reason(err)
		s.bye(endReason(true, err), s.unavailableLine())
		return false
	}
	return true
}
