package main

import (
	"errors"
	"io"
	"os"
)

// ending is how a session ended: the log line's end= value, the log's
// contract with operators and fail2ban (README.md, Notes, lists every
// value; TestEndsDocumented holds the page to this set). The zero value
// is a session still running: the event loop and the relay stop on any
// other. A value set once is kept: the first cause is the one logged.
type ending int

const (
	running ending = iota // not ended: never logged

	endClientEOF   // the client closed (or half-closed and the server then finished); also a client that closed during the handshake
	endClientError // a read or write on the client failed other than by end of file or a deadline (a reset)
	endServerEOF   // the server closed first
	endServerError // a read or write on the server failed; a server response over the limit before login; no PROXY header could be made
	endServerBye   // the server's greeting was BYE (IMAP) or -ERR (POP3): relayed, then the end

	endPreauth       // the server greeted with PREAUTH on a STARTTLS port: refused, the client told * BYE
	endTimeout       // -t ran out before login: a command, its literal or its answer took too long (* BYE Autologout)
	endServerTimeout // -t ran out before the server's greeting (* BYE Server not responding)
	endIdleTimeout   // -A ran out after login: no byte either way

	// endKeyHolderFailed: the key holder (the signer or the key
	// process, -K) was not ready: nothing was sent to the client, the
	// process exits 111. Its log value predates the signer and is kept,
	// key-process-failed, since the log line is a contract: a watch on
	// the old value keeps working.
	endKeyHolderFailed

	endHandshakeTimeout // -T ran out during the TLS handshake
	endHandshakeFailed  // the TLS handshake failed (a refused certificate, plaintext after STARTTLS, no shared version or suite, the key holder gone mid-handshake)
	endALPNRefused      // the client offered ALPN protocols, none of them this mode's (the ALPACA attack)

	endLineTooLong     // a client line before login over line.Max (* BYE Command line too long)
	endLiteralTooLarge // a client literal before login over imap.MaxLiteral (* BYE Literal too large)
	endingCount        // not an ending: the size of the set
)

// endNames are the log line's end= values, by ending.
var endNames = [endingCount]string{
	running:             "running",
	endClientEOF:        "client-eof",
	endClientError:      "client-error",
	endServerEOF:        "server-eof",
	endServerError:      "server-error",
	endServerBye:        "server-bye",
	endPreauth:          "preauth",
	endTimeout:          "timeout",
	endServerTimeout:    "server-timeout",
	endIdleTimeout:      "idle-timeout",
	endKeyHolderFailed:  "key-process-failed",
	endHandshakeTimeout: "handshake-timeout",
	endHandshakeFailed:  "handshake-failed",
	endALPNRefused:      "alpn-refused",
	endLineTooLong:      "line-too-long",
	endLiteralTooLarge:  "literal-too-large",
}

func (e ending) String() string { return endNames[e] }

// endReason is the ending of a read or write on a peer that failed:
// end of file (also in the middle of a response), a deadline, or
// anything else.
func endReason(server bool, err error) ending {
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if server {
			return endServerEOF
		}
		return endClientEOF
	case errors.Is(err, os.ErrDeadlineExceeded):
		return endTimeout
	case server:
		return endServerError
	}
	return endClientError
}
