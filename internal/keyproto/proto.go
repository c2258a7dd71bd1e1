// Package keyproto is the key protocol: how the network-facing proxy
// (stunnel-imap -K) gets a certificate chain and one signature from the
// process that holds the private key, the key holder: the service's
// signer (stunnel-imap-signer, one per service) or a key process
// (stunnel-imap-key, one per connection). It holds the wire format, its
// limits, and the proxy's end (Client, a crypto.Signer that crypto/tls
// uses unchanged); the key holder's end is package keyholder, which the
// proxy never imports.
//
// The protocol is tiny, and the same framing goes both ways:
//
//	frame   = version type length payload
//	version = 0x01
//	type    = 'N' / 'S'              (proxy to key holder)
//	        / 'R' / 'C' / 'G' / 'E'  (key holder to proxy)
//	length  = 2 bytes, big-endian, at most the type's own maximum
//
//	'R' ready    empty: every key is loaded and checked
//	'N' name     the SNI server name, possibly empty (0..255 bytes)
//	'C' chain    count(1) then count x ( length(2) DER certificate )
//	'S' sign     hash(1) flags(1) digest: hash is the crypto.Hash number
//	             (0: Ed25519, where digest is the whole message),
//	             flags bit 0 is RSA-PSS with salt length = hash length
//	'G' sig      the signature
//	'E' error    a short text
//
// A session is exactly: R, then N -> C, then S -> G (or E), then the key
// holder ends it. Anything else, a second N, an S before N, a second S, a
// bad version, type or length, and the key holder logs one line and
// ends it; the proxy gone at any point (EOF, a reset) ends it quietly.
// Every buffer is a fixed array of the largest frame: no size read from
// the peer is ever allocated.
package keyproto

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// Version is the protocol version every frame carries.
const Version = 1

// Frame types.
const (
	TypeName  = 'N'
	TypeSign  = 'S'
	TypeReady = 'R'
	TypeChain = 'C'
	TypeSig   = 'G'
	TypeError = 'E'
)

// Limits, per frame type. The certificate loader (package certfile)
// refuses a chain that does not fit the chain frame (FitChain): a chain
// that loads, in any program, is a chain the key holder can send.
const (
	MaxName    = 255 // a DNS name is at most 253
	MaxMessage = 512 // an Ed25519 message: TLS 1.3 needs 146, TLS 1.2 at most 201
	MaxSign    = 2 + MaxMessage
	MaxSig     = 1024 // RSA-8192
	MaxError   = 256
	MaxCerts   = 8     // certificates in one chain
	MaxChain   = 16384 // the encoded chain: count(1), then length(2) and DER per certificate
	MaxFrame   = MaxChain

	headerLen = 4
	flagPSS   = 1
)

var (
	errVersion  = errors.New("unknown protocol version")
	errType     = errors.New("unknown frame type")
	errTooLong  = errors.New("frame too long")
	errMalform  = errors.New("malformed frame")
	errBadName  = errors.New("malformed server name")
	errBadHash  = errors.New("unsupported hash")
	errBadFlags = errors.New("unknown sign flags")
	errDigest   = errors.New("digest length does not match the hash")
)

// Request is a decoded proxy-to-key-holder frame.
type Request struct {
	Type   byte
	Name   string      // TypeName
	Hash   crypto.Hash // TypeSign; 0 for Ed25519
	PSS    bool        // TypeSign
	Digest []byte      // TypeSign; aliases the read buffer
}

// Reply is a decoded key-holder-to-proxy frame.
type Reply struct {
	Type  byte
	Chain [][]byte // TypeChain; each aliases the read buffer
	Sig   []byte   // TypeSig; aliases the read buffer
	Err   string   // TypeError
}

func maxRequest(t byte) int {
	switch t {
	case TypeName:
		return MaxName
	case TypeSign:
		return MaxSign
	}
	return -1
}

func maxReply(t byte) int {
	switch t {
	case TypeReady:
		return 0
	case TypeChain:
		return MaxChain
	case TypeSig:
		return MaxSig
	case TypeError:
		return MaxError
	}
	return -1
}

// FrameError is a frame that breaks the protocol; the text names the
// frame's type when it is known.
type FrameError struct {
	Type byte
	Err  error
}

func (e *FrameError) Error() string {
	if e.Type >= 0x21 && e.Type < 0x7f {
		return fmt.Sprintf("%s (type %c)", e.Err, e.Type)
	}
	return fmt.Sprintf("%s (type 0x%02x)", e.Err, e.Type)
}

func (e *FrameError) Unwrap() error { return e.Err }

// readFrame reads one frame into buf. It returns io.EOF only when the
// peer closed before the frame began, io.ErrUnexpectedEOF inside it.
func readFrame(r io.Reader, buf *[MaxFrame]byte, max func(byte) int) (byte, []byte, error) {
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	t := h[1]
	if h[0] != Version {
		return t, nil, &FrameError{t, errVersion}
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if err := checkFrame(t, n, max); err != nil {
		return t, nil, err
	}
	p := buf[:n]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return t, nil, err
	}
	return t, p, nil
}

// checkFrame refuses a type that max does not know, and a payload of n
// bytes beyond the type's maximum.
func checkFrame(t byte, n int, max func(byte) int) error {
	m := max(t)
	if m < 0 {
		return &FrameError{t, errType}
	}
	if n > m {
		return &FrameError{t, errTooLong}
	}
	return nil
}

// ReadRequest reads and decodes one request; the key holder's side.
func ReadRequest(r io.Reader, buf *[MaxFrame]byte) (Request, error) {
	t, p, err := readFrame(r, buf, maxRequest)
	if err != nil {
		return Request{}, err
	}
	return ParseRequest(t, p)
}

// ParseRequest decodes a request's payload of type t.
func ParseRequest(t byte, p []byte) (Request, error) {
	if err := checkFrame(t, len(p), maxRequest); err != nil {
		return Request{}, err
	}
	switch t {
	case TypeName:
		if !ValidName(string(p)) {
			return Request{}, &FrameError{t, errBadName}
		}
		return Request{Type: t, Name: string(p)}, nil
	case TypeSign:
		if len(p) < 3 {
			return Request{}, &FrameError{t, errMalform}
		}
		h, flags, d := crypto.Hash(p[0]), p[1], p[2:]
		if flags&^flagPSS != 0 {
			return Request{}, &FrameError{t, errBadFlags}
		}
		if err := checkDigest(h, flags&flagPSS != 0, len(d)); err != nil {
			return Request{}, &FrameError{t, err}
		}
		return Request{Type: t, Hash: h, PSS: flags&flagPSS != 0, Digest: d}, nil
	}
	return Request{}, &FrameError{t, errType}
}

// checkDigest accepts the hashes TLS 1.2 and 1.3 sign with (RFC 8446
// 4.2.3; SHA-1 is gone, RFC 9155), and Ed25519's whole message.
func checkDigest(h crypto.Hash, pss bool, n int) error {
	switch h {
	case 0:
		if pss {
			return errBadFlags
		}
		if n < 1 || n > MaxMessage {
			return errDigest
		}
		return nil
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		if n != h.Size() {
			return errDigest
		}
		return nil
	}
	return errBadHash
}

// ValidName reports whether s may be sent as a server name: empty (no
// SNI), or at most 253 bytes of letters, digits, '-', '_' and '.', with
// no empty label. The key holder uses it to pick a certificate and a
// file name, so no '/' and no ".." ever reach it.
func ValidName(s string) bool {
	if len(s) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			label++
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
	}
	return len(s) == 0 || label > 0
}

// ReadReply reads and decodes one reply; the proxy's side.
func ReadReply(r io.Reader, buf *[MaxFrame]byte) (Reply, error) {
	t, p, err := readFrame(r, buf, maxReply)
	if err != nil {
		return Reply{}, err
	}
	return ParseReply(t, p)
}

// ParseReply decodes a reply's payload of type t.
func ParseReply(t byte, p []byte) (Reply, error) {
	if err := checkFrame(t, len(p), maxReply); err != nil {
		return Reply{}, err
	}
	switch t {
	case TypeReady:
		return Reply{Type: t}, nil
	case TypeChain:
		if len(p) < 1 || p[0] < 1 || p[0] > MaxCerts {
			return Reply{}, &FrameError{t, errMalform}
		}
		var chain [][]byte
		n := int(p[0])
		p = p[1:]
		for i := 0; i < n; i++ {
			if len(p) < 2 {
				return Reply{}, &FrameError{t, errMalform}
			}
			l := int(binary.BigEndian.Uint16(p))
			if l == 0 || len(p)-2 < l {
				return Reply{}, &FrameError{t, errMalform}
			}
			chain = append(chain, p[2:2+l:2+l])
			p = p[2+l:]
		}
		if len(p) != 0 {
			return Reply{}, &FrameError{t, errMalform}
		}
		return Reply{Type: t, Chain: chain}, nil
	case TypeSig:
		if len(p) == 0 {
			return Reply{}, &FrameError{t, errMalform}
		}
		return Reply{Type: t, Sig: p}, nil
	case TypeError:
		return Reply{Type: t, Err: string(p)}, nil
	}
	return Reply{}, &FrameError{t, errType}
}

// appendFrame appends a frame of type t around payload p, which the
// caller has checked against the type's maximum.
func appendFrame(b []byte, t byte, p ...[]byte) []byte {
	n := 0
	for _, q := range p {
		n += len(q)
	}
	b = append(b, Version, t, byte(n>>8), byte(n))
	for _, q := range p {
		b = append(b, q...)
	}
	return b
}

// EncodeRequest returns the frame for req, or an error if it breaks the
// protocol's limits.
func EncodeRequest(req Request) ([]byte, error) {
	switch req.Type {
	case TypeName:
		if !ValidName(req.Name) {
			return nil, errBadName
		}
		return appendFrame(nil, TypeName, []byte(req.Name)), nil
	case TypeSign:
		if req.Hash > 255 {
			return nil, errBadHash
		}
		if err := checkDigest(req.Hash, req.PSS, len(req.Digest)); err != nil {
			return nil, err
		}
		var flags byte
		if req.PSS {
			flags = flagPSS
		}
		return appendFrame(nil, TypeSign, []byte{byte(req.Hash), flags}, req.Digest), nil
	}
	return nil, errType
}

// EncodeReply returns the frame for rep, or an error if it breaks the
// protocol's limits.
func EncodeReply(rep Reply) ([]byte, error) {
	switch rep.Type {
	case TypeReady:
		return appendFrame(nil, TypeReady), nil
	case TypeChain:
		if len(rep.Chain) < 1 {
			return nil, errMalform
		}
		if err := FitChain(rep.Chain); err != nil {
			return nil, err
		}
		p := []byte{byte(len(rep.Chain))}
		for _, c := range rep.Chain {
			p = binary.BigEndian.AppendUint16(p, uint16(len(c)))
			p = append(p, c...)
		}
		return appendFrame(nil, TypeChain, p), nil
	case TypeSig:
		if len(rep.Sig) == 0 || len(rep.Sig) > MaxSig {
			return nil, errTooLong
		}
		return appendFrame(nil, TypeSig, rep.Sig), nil
	case TypeError:
		e := rep.Err
		if len(e) > MaxError {
			e = e[:MaxError]
		}
		return appendFrame(nil, TypeError, []byte(e)), nil
	}
	return nil, errType
}

// FitChain reports whether a chain (DER certificates, leaf first) fits
// one chain frame: at most MaxCerts certificates, none empty or beyond
// a 2-byte length, MaxChain bytes encoded. The certificate loader
// applies it to every chain it loads.
func FitChain(chain [][]byte) error {
	if len(chain) > MaxCerts {
		return fmt.Errorf("chain of %d certificates: the limit is %d", len(chain), MaxCerts)
	}
	n := 1
	for _, c := range chain {
		if len(c) == 0 {
			return errors.New("empty certificate in the chain")
		}
		if len(c) > 0xffff {
			return fmt.Errorf("certificate of %d bytes in the chain: the limit is %d", len(c), 0xffff)
		}
		n += 2 + len(c)
	}
	if n > MaxChain {
		return fmt.Errorf("certificate chain of %d bytes: the limit is %d", n, MaxChain)
	}
	return nil
}

// Gone reports whether err means that the peer has left: EOF between
// frames, a broken pipe, or a reset, which is what a unix socket
// reports when the peer closed with a frame of ours unread.
func Gone(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
