package main

import (
	"strings"

	"imap-tls/internal/suite"
)

// tlsEnv returns env for the chain: the mode's TLSEnv (IMAP_TLS or
// POP3_TLS) set to 1 when the chain's stunnel-imap mode is Secured (imap,
// imaps, pop3, pop3s), and neither otherwise (whatever env held for them
// is dropped).
//
// Courier's imaplogin and pop3login (and imapd, pop3d after them) take
// from these whether the session is encrypted: it decides their log
// line's starttls=1 / stls=1, the capability list they offer
// (IMAP_CAPABILITY_TLS), and whether IMAP_TLS_REQUIRED lets a LOGIN
// through. Only the proxy knows, and only in these modes is it true: with
// imap and pop3 no login and no mail get past the proxy before the
// client's TLS; with imaps and pop3s everything is TLS. With imap- and
// pop3- a client may stay in plaintext, so a value left in env/ would
// lie: it is removed. Set in the environment of the whole chain (every
// other program ignores it) rather than with an env program in front of
// the server: no exec more per connection.
func tlsEnv(chain, env []string) []string {
	var mode suite.Mode
	for i := 0; i+2 < len(chain); i++ {
		if chain[i] == "stunnel-imap" && chain[i+1] == "-n" {
			mode, _ = suite.ModeNamed(chain[i+2])
			break
		}
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !tlsVar(kv) {
			out = append(out, kv)
		}
	}
	if mode.Secured {
		out = append(out, mode.TLSEnv+"=1")
	}
	return out
}

// tlsVar: kv sets one of the modes' TLSEnv variables.
func tlsVar(kv string) bool {
	for _, m := range suite.Modes {
		if strings.HasPrefix(kv, m.TLSEnv+"=") {
			return true
		}
	}
	return false
}
