// Package proxyproto reads and writes the PROXY protocol header
// (HAProxy's proxy-protocol.txt, versions 1 and 2): the first bytes of a
// connection, sent by a proxy, that give the client's and the local
// address and port the proxy saw.
//
// Two programs need it: stunnel-imap writes a version 2 header to the
// IMAP server (-H), proxy-server reads one from a load balancer. The
// reader never reads a byte past the header: Need says how many bytes
// the header needs, given those read so far, so that a caller can read
// exactly that many from a socket whose next bytes belong to the client.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
)

// Signature opens every version 2 header.
var Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// v1Prefix opens every version 1 header.
const v1Prefix = "PROXY "

const (
	// MaxV1 is the longest version 1 header, CRLF included (§2.1).
	MaxV1 = 107
	// MaxV2 is the longest version 2 header this package reads or
	// writes: Dovecot's limit (the 16-byte head and the rest).
	MaxV2 = 1500
)

// TLV types (§2.2.1 to §2.2.7) that imap-tls writes or names.
const (
	TypeALPN          = 0x01
	TypeAuthority     = 0x02 // the host name the client asked for (SNI)
	TypeSSL           = 0x20
	SubtypeSSLVersion = 0x21
	SubtypeSSLCN      = 0x22
	// ClientSSL is PP2_CLIENT_SSL, the flag of TypeSSL's first byte
	// that says the client connected over TLS.
	ClientSSL = 0x01
)

// Header is one PROXY header.
type Header struct {
	Version int // 1 or 2
	// Local: the header gives no addresses (v2 LOCAL, or an UNSPEC
	// family; v1 UNKNOWN): the connection's own addresses stand.
	Local    bool
	Src, Dst netip.AddrPort
	TLVs     []TLV // version 2 only
}

// TLV is one type-length-value of a version 2 header.
type TLV struct {
	Type  byte
	Value []byte
}

var (
	ErrSignature = errors.New("not a PROXY header")
	ErrTooLong   = errors.New("PROXY header too long")
	ErrMalformed = errors.New("malformed PROXY header")
	ErrFamily    = errors.New("PROXY header of an unsupported family")
)

// Need returns how many bytes the header starting with b needs in all:
// more than len(b) when more must be read, len(b) when b is exactly a
// whole header. An error when b cannot begin a header, or the header
// would pass the limits. Need(nil) is 1.
func Need(b []byte) (int, error) {
	if len(b) == 0 {
		return 1, nil
	}
	if b[0] == 'P' {
		for i := 0; i < len(b) && i < len(v1Prefix); i++ {
			if b[i] != v1Prefix[i] {
				return 0, ErrSignature
			}
		}
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			if i != len(b)-1 {
				return 0, ErrMalformed // bytes after the end: never read that far
			}
			return len(b), nil
		}
		if len(b) >= MaxV1 {
			return 0, ErrTooLong
		}
		return len(b) + 1, nil
	}
	for i := 0; i < len(b) && i < len(Signature); i++ {
		if b[i] != Signature[i] {
			return 0, ErrSignature
		}
	}
	if len(b) < 16 {
		return 16, nil
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > MaxV2 {
		return 0, ErrTooLong
	}
	return n, nil
}

// Parse parses b, which must be exactly one whole header (Need(b) ==
// len(b)).
func Parse(b []byte) (Header, error) {
	n, err := Need(b)
	if err != nil {
		return Header{}, err
	}
	if n != len(b) {
		return Header{}, ErrMalformed
	}
	if b[0] == 'P' {
		return parseV1(b)
	}
	return parseV2(b)
}

// parseV1 parses "PROXY TCP4 src dst sport dport\r\n", "PROXY TCP6
// ...", or "PROXY UNKNOWN ...\r\n" (§2.1).
func parseV1(b []byte) (Header, error) {
	h := Header{Version: 1}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return h, ErrMalformed
	}
	f := bytes.Split(b[len(v1Prefix):len(b)-2], []byte(" "))
	if string(f[0]) == "UNKNOWN" {
		h.Local = true // whatever follows is to be ignored
		return h, nil
	}
	if len(f) != 5 {
		return h, ErrMalformed
	}
	var v6 bool
	switch string(f[0]) {
	case "TCP4":
	case "TCP6":
		v6 = true
	default:
		return h, ErrFamily
	}
	src, err1 := v1Addr(f[1], v6)
	dst, err2 := v1Addr(f[2], v6)
	sport, err3 := v1Port(f[3])
	dport, err4 := v1Port(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return h, ErrMalformed
	}
	h.Src, h.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, nil
}

func v1Addr(b []byte, v6 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" || a.Is4() == v6 {
		return netip.Addr{}, ErrMalformed
	}
	return a, nil
}

// v1Port is a decimal port from 0 to 65535, without leading zeros.
func v1Port(b []byte) (uint16, error) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, ErrMalformed
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, ErrMalformed
		}
	}
	n, err := strconv.Atoi(string(b))
	if err != nil || n > 65535 {
		return 0, ErrMalformed
	}
	return uint16(n), nil
}

// parseV2 parses the binary header (§2.2).
func parseV2(b []byte) (Header, error) {
	h := Header{Version: 2}
	if b[12]>>4 != 2 {
		return h, ErrMalformed
	}
	body := b[16:]
	switch b[12] & 0xf {
	case 0: // LOCAL: the proxy's own connection (a health check); the body is ignored
		h.Local = true
		return h, nil
	case 1: // PROXY
	default:
		return h, ErrMalformed
	}
	var alen int
	switch b[13] {
	case 0x00: // UNSPEC: use the connection's addresses
		h.Local = true
		return h, nil
	case 0x11: // TCP over IPv4
		alen = 12
	case 0x21: // TCP over IPv6
		alen = 36
	default: // UDP, unix sockets: not a TCP connection
		return h, ErrFamily
	}
	if len(body) < alen {
		return h, ErrMalformed
	}
	ipn := (alen - 4) / 2
	src, _ := netip.AddrFromSlice(body[:ipn])
	dst, _ := netip.AddrFromSlice(body[ipn : 2*ipn])
	sport := binary.BigEndian.Uint16(body[2*ipn:])
	dport := binary.BigEndian.Uint16(body[2*ipn+2:])
	h.Src, h.Dst = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	tlvs, err := parseTLVs(body[alen:])
	if err != nil {
		return h, err
	}
	h.TLVs = tlvs
	return h, nil
}

// parseTLVs parses a run of TLVs that must fill b exactly.
func parseTLVs(b []byte) ([]TLV, error) {
	var tlvs []TLV
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, ErrMalformed
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return nil, ErrMalformed
		}
		tlvs = append(tlvs, TLV{Type: b[0], Value: b[3 : 3+n]})
		b = b[3+n:]
	}
	return tlvs, nil
}

// Find returns the value of the first TLV of type t.
func (h Header) Find(t byte) ([]byte, bool) {
	for _, v := range h.TLVs {
		if v.Type == t {
			return v.Value, true
		}
	}
	return nil, false
}

// SSL is a TypeSSL TLV: the client flags, verify (zero only when the
// client presented a certificate that was verified), and sub-TLVs
// (SubtypeSSLVersion, ...).
func SSL(client byte, verify uint32, sub ...TLV) TLV {
	v := []byte{client, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(v[1:], verify)
	for _, t := range sub {
		v = appendTLV(v, t)
	}
	return TLV{Type: TypeSSL, Value: v}
}

// SSLSub parses the sub-TLVs of a TypeSSL value.
func SSLSub(v []byte) (client byte, verify uint32, sub []TLV, err error) {
	if len(v) < 5 {
		return 0, 0, nil, ErrMalformed
	}
	sub, err = parseTLVs(v[5:])
	return v[0], binary.BigEndian.Uint32(v[1:5]), sub, err
}

func appendTLV(b []byte, t TLV) []byte {
	b = append(b, t.Type, byte(len(t.Value)>>8), byte(len(t.Value)))
	return append(b, t.Value...)
}

// AppendV2 appends h as a version 2 header to b. A Local header, or one
// whose Src is not valid, is a LOCAL command with no addresses. Src and
// Dst of different families are both sent as IPv6 (an IPv4 address
// mapped); zones are dropped. The result is at most MaxV2 bytes, or an
// error.
func AppendV2(b []byte, h Header) ([]byte, error) {
	start := len(b)
	b = append(b, Signature...)
	if h.Local || !h.Src.IsValid() || !h.Dst.IsValid() {
		b = append(b, 0x20, 0x00, 0, 0)
	} else {
		src, dst := h.Src.Addr().WithZone("").Unmap(), h.Dst.Addr().WithZone("").Unmap()
		if src.Is4() && dst.Is4() {
			b = append(b, 0x21, 0x11, 0, 0)
		} else {
			src, dst = netip.AddrFrom16(src.As16()), netip.AddrFrom16(dst.As16())
			b = append(b, 0x21, 0x21, 0, 0)
		}
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, h.Src.Port())
		b = binary.BigEndian.AppendUint16(b, h.Dst.Port())
	}
	for _, t := range h.TLVs {
		if len(t.Value) > 0xffff {
			return b[:start], ErrTooLong
		}
		b = appendTLV(b, t)
	}
	n := len(b) - start
	if n > MaxV2 {
		return b[:start], ErrTooLong
	}
	binary.BigEndian.PutUint16(b[start+14:], uint16(n-16))
	return b, nil
}
