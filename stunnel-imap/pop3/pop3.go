// Package pop3 is the small part of POP3 (RFC 1939, RFC 2449, RFC 2595
// §4, RFC 3206, RFC 5034) that a STLS proxy must understand before
// authentication: which command a line carries, what kind of line the
// server sent, which responses are multi-line, and how to rewrite a CAPA
// response. It never interprets more than that.
package pop3

import (
	"bytes"

	"imap-tls/stunnel-imap/line"
)

// ParseCommand splits a client line into its command keyword
// (upper-cased) and its arguments (without the space after the keyword;
// empty when there are none). ok is false for a line with no keyword.
// RFC 1939 §3: keywords are 3 or 4 characters, case-insensitive; longer
// ones are allowed by extensions (RFC 2449 §3), so any printable word is
// taken.
func ParseCommand(l []byte) (name string, args []byte, ok bool) {
	t := line.Trim(l)
	sp := bytes.IndexByte(t, ' ')
	word := t
	if sp >= 0 {
		word, args = t[:sp], t[sp+1:]
	}
	if len(word) == 0 || len(word) > 40 {
		return "", nil, false
	}
	for _, c := range word {
		if c <= 0x20 || c >= 0x7f {
			return "", nil, false
		}
	}
	return string(bytes.ToUpper(word)), args, true
}

// Kinds of server line.
const (
	OK           = '+' // "+OK ...": a positive status
	Err          = '-' // "-ERR ...": a negative status
	Continuation = 'c' // "+ ..." or "+": an AUTH challenge (RFC 5034 §4)
)

// Kind says what a server line is: OK, Err, Continuation, or 0 for
// anything else.
func Kind(l []byte) byte {
	t := line.Trim(l)
	switch {
	case hasPrefixFold(t, "+OK") && (len(t) == 3 || t[3] == ' '):
		return OK
	case hasPrefixFold(t, "-ERR") && (len(t) == 4 || t[4] == ' '):
		return Err
	case len(t) == 1 && t[0] == '+', len(t) > 1 && t[0] == '+' && t[1] == ' ':
		return Continuation
	}
	return 0
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// MultiLine reports whether a positive response to the command is
// multi-line (ended by a line holding a lone "."): CAPA (RFC 2449),
// AUTH and LANG without arguments (mechanism and language lists), and,
// in the TRANSACTION state a server should never reach before login,
// LIST and UIDL without arguments, TOP and RETR.
func MultiLine(name string, args []byte) bool {
	switch name {
	case "CAPA", "TOP", "RETR":
		return true
	case "AUTH", "LANG", "LIST", "UIDL":
		return len(bytes.TrimSpace(args)) == 0
	}
	return false
}

// IsEnd reports whether a line of a multi-line response is its end: a
// lone "." (a line of data that starts with "." has it doubled, RFC 1939
// §3).
func IsEnd(l []byte) bool {
	t := line.Trim(l)
	return len(t) == 1 && t[0] == '.'
}

// Rule says how the proxy rewrites a CAPA response (RFC 2595 §4, RFC
// 2449 §6).
type Rule struct {
	// STLS: before TLS. STLS is added when missing. When false (after
	// TLS, implicit TLS) STLS is removed even if the server sent it.
	STLS bool
	// NoPlaintext: before TLS with TLS required. USER and the SASL line
	// are removed: the proxy refuses USER, PASS, APOP and AUTH until TLS.
	NoPlaintext bool
}

// Capability reports whether a line of a CAPA response (after its +OK,
// before its end) stays, and which capability it names (upper-cased
// first word, dot-stuffing undone).
func Capability(l []byte, rule Rule) (name string, keep bool) {
	t := line.Trim(l)
	if len(t) > 1 && t[0] == '.' {
		t = t[1:]
	}
	word := t
	if sp := bytes.IndexByte(t, ' '); sp >= 0 {
		word = t[:sp]
	}
	name = string(bytes.ToUpper(word))
	switch name {
	case "STLS":
		return name, rule.STLS
	case "USER", "SASL":
		return name, !rule.NoPlaintext
	}
	return name, true
}
