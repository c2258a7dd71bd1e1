// Package suite is what every program of imap-tls agrees on, spelled
// once: the table of modes (what a port serves) and the list of the
// suite's programs. stunnel-imap, imap-tls-server, imap-tls-conf and
// imap-tls-check all read these; none keeps a list of its own.
package suite

import "strings"

// Policy is how a port uses TLS.
type Policy int

const (
	Required Policy = iota // STARTTLS (STLS) before any login
	Optional               // STARTTLS offered, plaintext relayed
	Implicit               // TLS from the first byte
)

// Mode is what a port serves: a protocol with a TLS policy. Its Name is
// stunnel-imap's -n, env/MODE and the log line's mode=.
type Mode struct {
	Name     string
	Protocol string // "imap" or "pop3"
	Policy   Policy
	ALPN     string // the protocol's ALPN id (RFC 7301); ALPACA: nothing else is accepted
	StartTLS string // the command that starts TLS: STARTTLS (RFC 3501 6.2.1) or STLS (RFC 2595 4)
	Port     int    // the standard port (RFC 6186, RFC 8314)
	// Secured: the PROXY header tells the server the client's login is
	// over TLS (PP2_TYPE_SSL, client flag). True where no login can pass
	// before TLS: the proxy refuses every one in the required modes.
	Secured bool
	// TLSEnv is the variable Courier's login programs read to learn that
	// the session is encrypted ("IMAP_TLS", "POP3_TLS"); set to 1 where
	// Secured is, and removed elsewhere.
	TLSEnv string
	Text   string // what it does, in a few words, for people
}

// Modes, in the order every list of them is given.
var Modes = []Mode{
	{"imap", "imap", Required, "imap", "STARTTLS", 143, true, "IMAP_TLS", "IMAP, STARTTLS required"},
	{"imap-", "imap", Optional, "imap", "STARTTLS", 143, false, "IMAP_TLS", "IMAP, STARTTLS offered, plaintext allowed"},
	{"imaps", "imap", Implicit, "imap", "STARTTLS", 993, true, "IMAP_TLS", "IMAP, implicit TLS"},
	{"pop3", "pop3", Required, "pop3", "STLS", 110, true, "POP3_TLS", "POP3, STLS required"},
	{"pop3-", "pop3", Optional, "pop3", "STLS", 110, false, "POP3_TLS", "POP3, STLS offered, plaintext allowed"},
	{"pop3s", "pop3", Implicit, "pop3", "STLS", 995, true, "POP3_TLS", "POP3, implicit TLS"},
}

// ModeNamed finds a mode by its name.
func ModeNamed(name string) (Mode, bool) {
	for _, m := range Modes {
		if m.Name == name {
			return m, true
		}
	}
	return Mode{}, false
}

// ModeForPort is a port's usual mode: the mode whose standard port it is
// (the STARTTLS-required one where two share a port), imap for any other.
func ModeForPort(port int) Mode {
	for _, m := range Modes {
		if m.Port == port {
			return m
		}
	}
	return Modes[0]
}

// ModeList names the modes for a message: "imap, imap-, imaps, pop3,
// pop3- or pop3s".
func ModeList() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = m.Name
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ModeAlternatives is the modes as a synopsis spells them: "imap|imap-|...".
func ModeAlternatives() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = m.Name
	}
	return strings.Join(names, "|")
}

// Programs are the suite's own programs, each built from the folder of
// its name into bin/ and installed beside each other.
var Programs = []string{
	"makesock",
	"setuidgid-chroot",
	"stunnel-imap",
	"stunnel-imap-key",
	"stunnel-imap-signer",
	"proxy-server",
	"imap-tls-server",
	"imap-tls-conf",
	"imap-tls-check",
}
