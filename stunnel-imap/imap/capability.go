package imap

import (
	"bytes"
	"strings"
)

// Rule says how the proxy rewrites a capability list (RFC 2595 §3.2,
// RFC 9051 §6.2.1, §7.1).
type Rule struct {
	// StartTLS: before TLS. STARTTLS is added when missing. When false
	// (after TLS, implicit TLS) STARTTLS and LOGINDISABLED are removed
	// even if the server sent them: they are false on a private channel.
	StartTLS bool
	// LoginDisabled: before TLS with TLS required. LOGINDISABLED is added
	// and every AUTH= mechanism removed: the proxy refuses LOGIN and
	// AUTHENTICATE until TLS.
	LoginDisabled bool
}

var (
	capWord  = []byte("CAPABILITY")
	capCode  = []byte("[CAPABILITY")
	startTLS = "STARTTLS"
	loginDis = "LOGINDISABLED"
)

// Rewrite returns the first line of a server response with its
// capability list rewritten by rule, wherever the list appears: an
// untagged "* CAPABILITY ..." response, or a [CAPABILITY ...] response
// code in a status response (greeting, tagged OK). Any other line is
// returned unchanged (the same slice).
func Rewrite(line []byte, rule Rule) []byte {
	t := Trim(line)
	start, end := capList(t)
	if start < 0 {
		return line
	}
	list := rewriteList(t[start:end], rule)
	out := make([]byte, 0, len(line)+32)
	out = append(out, t[:start]...)
	out = append(out, list...)
	out = append(out, t[end:]...)
	return append(out, Ending(line)...)
}

// capList finds the capability list in a trimmed response line: the
// bytes from start to end (exclusive), or start -1.
func capList(t []byte) (start, end int) {
	sp := bytes.IndexByte(t, ' ')
	if sp <= 0 {
		return -1, -1
	}
	rest := t[sp+1:]
	off := sp + 1
	e := bytes.IndexByte(rest, ' ')
	if e < 0 {
		e = len(rest)
	}
	word := rest[:e]
	if sp == 1 && t[0] == '*' && bytes.EqualFold(word, capWord) {
		return off + e, len(t)
	}
	if !IsStatus(word) || e == len(rest) {
		return -1, -1
	}
	// resp-text-code right after the status: SP "[" CAPABILITY ...
	code := rest[e+1:]
	off += e + 1
	if len(code) < len(capCode) || !bytes.EqualFold(code[:len(capCode)], capCode) {
		return -1, -1
	}
	after := code[len(capCode):]
	if len(after) > 0 && after[0] != ' ' && after[0] != ']' {
		return -1, -1 // [CAPABILITYX ...]: some other code
	}
	close := bytes.IndexByte(after, ']')
	if close < 0 {
		return -1, -1
	}
	s := off + len(capCode)
	return s, s + close
}

// rewriteList rewrites " CAP1 CAP2 ..." (with its leading space, as it
// stands in the line) and returns it in the same shape.
func rewriteList(list []byte, rule Rule) []byte {
	var out []byte
	has := map[string]bool{}
	for _, c := range bytes.Fields(list) {
		u := upper(c)
		switch {
		case (u == startTLS || u == loginDis) && !rule.StartTLS:
			continue
		case rule.LoginDisabled && strings.HasPrefix(u, "AUTH="):
			continue
		}
		if has[u] {
			continue
		}
		has[u] = true
		out = append(out, ' ')
		out = append(out, c...)
	}
	if rule.StartTLS && !has[startTLS] {
		out = append(out, " "+startTLS...)
	}
	if rule.LoginDisabled && !has[loginDis] {
		out = append(out, " "+loginDis...)
	}
	return out
}
