package main

import "strings"

// tlsEnv returns env for the chain: IMAP_TLS=1 when the chain's
// stunnel-imap mode is imap or imaps, POP3_TLS=1 when it is pop3 or
// pop3s, and neither otherwise (whatever env held for them is dropped).
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
	var mode string
	for i := 0; i+2 < len(chain); i++ {
		if chain[i] == "stunnel-imap" && chain[i+1] == "-n" {
			mode = chain[i+2]
			break
		}
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "IMAP_TLS=") && !strings.HasPrefix(kv, "POP3_TLS=") {
			out = append(out, kv)
		}
	}
	switch mode {
	case "imap", "imaps":
		out = append(out, "IMAP_TLS=1")
	case "pop3", "pop3s":
		out = append(out, "POP3_TLS=1")
	}
	return out
}
