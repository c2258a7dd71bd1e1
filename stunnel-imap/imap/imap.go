// Package imap is the small part of IMAP (RFC 3501, RFC 9051, RFC 7888)
// that a STARTTLS proxy must understand before authentication: where a
// line ends, where a literal is announced, which tag and command a line
// carries, what kind of response the server sent, and how to rewrite a
// capability list. It never interprets more than that.
package imap

import (
	"bufio"
	"bytes"
	"io"
	"math"

	"imap-tls/stunnel-imap/line"
)

// MaxLiteral bounds one literal a client may send before authentication
// (a line is bounded by line.Max).
const MaxLiteral = 64 << 10

// Trim and Ending are line's, for the callers of this package.
var (
	Trim   = line.Trim
	Ending = line.Ending
)

// LiteralInfo describes a literal announced at the end of a line.
type LiteralInfo struct {
	Size    int64 // math.MaxInt64 when the number does not fit
	NonSync bool  // {n+}: RFC 7888, the client does not wait for "+"
	Start   int   // index of '{' in the line
}

// Literal reports whether line ends (before its line ending) with a
// literal announcement, {n} or {n+} (also as literal8, ~{n}: the '~'
// stays part of the text before Start).
func Literal(line []byte) (LiteralInfo, bool) {
	t := Trim(line)
	n := len(t)
	if n < 3 || t[n-1] != '}' {
		return LiteralInfo{}, false
	}
	i := n - 2
	nonSync := false
	if t[i] == '+' {
		nonSync = true
		i--
	}
	end := i + 1
	for i >= 0 && t[i] >= '0' && t[i] <= '9' {
		i--
	}
	if i < 0 || t[i] != '{' || i+1 == end {
		return LiteralInfo{}, false
	}
	var size int64
	for _, c := range t[i+1 : end] {
		d := int64(c - '0')
		if size > (math.MaxInt64-d)/10 {
			size = math.MaxInt64
			break
		}
		size = size*10 + d
	}
	return LiteralInfo{Size: size, NonSync: nonSync, Start: i}, true
}

// ToSync turns a non-synchronizing literal announcement {n+} at the end
// of line into a synchronizing one {n}, in a new slice.
func ToSync(line []byte, lit LiteralInfo) []byte {
	if !lit.NonSync {
		return line
	}
	t := Trim(line)
	out := make([]byte, 0, len(line)-1)
	out = append(out, t[:len(t)-2]...)
	out = append(out, '}')
	return append(out, Ending(line)...)
}

// ParseCommand splits the first line of a client command into its tag,
// its command name (upper-cased) and whatever follows the name (args,
// with its leading space; empty when the command has no arguments). ok is
// false when the line has no tag and command name.
func ParseCommand(line []byte) (tag, name string, args []byte, ok bool) {
	t := Trim(line)
	sp := bytes.IndexByte(t, ' ')
	if sp <= 0 || !isTag(t[:sp]) {
		return "", "", nil, false
	}
	rest := t[sp+1:]
	e := bytes.IndexByte(rest, ' ')
	if e < 0 {
		e = len(rest)
	}
	if e == 0 || !isAtom(rest[:e]) {
		return "", "", nil, false
	}
	return string(t[:sp]), upper(rest[:e]), rest[e:], true
}

// ParseTag returns the tag of a client line, or "" when it has none: for
// an answer to a command that could not be parsed further.
func ParseTag(line []byte) string {
	t := Trim(line)
	if sp := bytes.IndexByte(t, ' '); sp > 0 && isTag(t[:sp]) {
		return string(t[:sp])
	}
	if len(t) > 0 && bytes.IndexByte(t, ' ') < 0 && isTag(t) {
		return string(t)
	}
	return ""
}

// isTag: tag = 1*<any ASTRING-CHAR except "+"> (RFC 9051 §9).
func isTag(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c == '+' || !isAstringChar(c) {
			return false
		}
	}
	return true
}

func isAtom(b []byte) bool {
	for _, c := range b {
		if c == ']' || !isAstringChar(c) {
			return false
		}
	}
	return len(b) > 0
}

// isAstringChar: ATOM-CHAR or "]"; ATOM-CHAR is any CHAR except
// atom-specials: ( ) { SP CTL % * " \ ].
func isAstringChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\':
		return false
	}
	return true
}

func upper(b []byte) string {
	return string(bytes.ToUpper(b))
}

// Response kinds.
const (
	Untagged     = '*'
	Continuation = '+'
	Tagged       = 't'
)

// Response is what the proxy needs to know about a server response.
type Response struct {
	Kind byte   // Untagged, Continuation or Tagged; 0 when unparsable
	Tag  string // for Tagged
	// Name is the status (OK, NO, BAD, PREAUTH, BYE) or, for an untagged
	// response that is not a status, its first word (CAPABILITY, ...),
	// upper-cased.
	Name string
}

// ParseResponse looks at the first line of a server response.
func ParseResponse(line []byte) Response {
	t := Trim(line)
	if len(t) > 0 && t[0] == '+' {
		return Response{Kind: Continuation}
	}
	sp := bytes.IndexByte(t, ' ')
	if sp <= 0 {
		return Response{}
	}
	rest := t[sp+1:]
	e := bytes.IndexByte(rest, ' ')
	if e < 0 {
		e = len(rest)
	}
	name := upper(rest[:e])
	if sp == 1 && t[0] == '*' {
		return Response{Kind: Untagged, Name: name}
	}
	if !isTag(t[:sp]) {
		return Response{}
	}
	return Response{Kind: Tagged, Tag: string(t[:sp]), Name: name}
}

// IsStatus reports whether word, in any case, is a status response's
// condition. It copies nothing: every server line before authentication
// passes through it.
func IsStatus(word []byte) bool {
	for _, s := range [...]string{"OK", "NO", "BAD", "PREAUTH", "BYE"} {
		if len(word) == len(s) && bytes.EqualFold(word, []byte(s)) {
			return true
		}
	}
	return false
}

// ReadResponse reads one whole server response: its line and, for every
// literal the line announces, the literal and the line that follows it.
// first is the length of the response's first line in raw. A line over
// maxLine or a response over maxTotal is ErrTooLong.
func ReadResponse(r *bufio.Reader, maxLine, maxTotal int) (raw []byte, first int, err error) {
	for {
		n := len(raw)
		raw, err = line.Append(raw, r, maxLine)
		if err != nil {
			return raw, first, err
		}
		if len(raw) > maxTotal {
			return nil, 0, line.ErrTooLong
		}
		if first == 0 {
			first = len(raw)
		}
		lit, ok := Literal(raw[n:])
		if !ok {
			return raw, first, nil
		}
		if lit.Size > int64(maxTotal-len(raw)) {
			return nil, 0, line.ErrTooLong
		}
		n = len(raw)
		raw = append(raw, make([]byte, lit.Size)...)
		if k, err := io.ReadFull(r, raw[n:]); err != nil {
			return raw[:n+k], first, err
		}
	}
}

// ReadLiteral reads exactly n bytes.
func ReadLiteral(r *bufio.Reader, n int64) ([]byte, error) {
	b := make([]byte, n)
	k, err := io.ReadFull(r, b)
	return b[:k], err
}
