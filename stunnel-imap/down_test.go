package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/suite"
)

const (
	byeUnavailable = "* BYE [UNAVAILABLE] Mail server unavailable, try again later\r\n"
	errUnavailable = "-ERR [SYS/TEMP] Mail server unavailable, try again later\r\n"
)

// unavailableFor is what a client of mode m reads when its session
// cannot be served.
func unavailableFor(m suite.Mode) string {
	if m.Protocol == "pop3" {
		return errUnavailable
	}
	return byeUnavailable
}

var allModes = []suite.Mode{modeRequired, modeOptional, modeImplicit, modePOP3Required, modePOP3Optional, modePOP3Implicit}

// TestServerDown: setuidgid-chroot -c could not connect (FD3_ERROR): the
// client is told, in TLS with implicit TLS, in place of the greeting
// otherwise; the server's descriptor is never used; the log line says
// end=server-error and why, never the client.
func TestServerDown(t *testing.T) {
	const why = "unable to connect to 127.0.0.1:10143: connection refused"
	for _, m := range allModes {
		t.Run(m.Name, func(t *testing.T) {
			h := start(t, setup{mode: m, down: down{server: why}})
			var script []step
			if m.Policy == suite.Implicit {
				script = append(script, handshake())
			}
			h.run(append(script, C(unavailableFor(m)), clientEnds(), serverEnds()))
			h.ended("server-error", `reason="`+why+`" end=server-error`)
			if strings.Contains(h.logs.String(), "warning:") {
				t.Errorf("a warning for a server that is down:\n%s", h.logs)
			}
		})
	}
}

// TestKeyHolderDown: setuidgid-chroot -s could not reach the signer
// (FD4_ERROR): a STARTTLS client is told in plaintext in place of the
// greeting; a TLS client (implicit TLS) gets an internal_error alert, the
// only word possible without a certificate; the server gets nothing.
func TestKeyHolderDown(t *testing.T) {
	const why = "unable to reach the signer at /etc/imap-tls/signer/socket: connection refused (is the signer service linked and up?)"
	for _, m := range allModes {
		t.Run(m.Name, func(t *testing.T) {
			h := start(t, setup{mode: m, down: down{keyHolder: why}})
			if m.Policy == suite.Implicit {
				tc := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test"})
				tc.SetDeadline(time.Now().Add(guard))
				if err := tc.Handshake(); err == nil || !strings.Contains(err.Error(), "internal error") {
					t.Errorf("handshake: %v, want the internal_error alert", err)
				}
			} else {
				h.run([]step{C(unavailableFor(m)), clientEnds()})
			}
			h.run([]step{serverEnds()})
			sess := h.ended("key-process-failed", `reason="`+why+`" end=key-process-failed`)
			if sess.fatal != nil {
				t.Errorf("fatal %v: the reason was logged before, by setuidgid-chroot", sess.fatal)
			}
		})
	}
}

// TestServerGoneBeforeGreeting: a server that closes before its greeting
// (a server program that exited, Dovecot's listener gone): the client is
// told, never a bare end of file, and the log says why.
func TestServerGoneBeforeGreeting(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.Name, func(t *testing.T) {
			h := start(t, setup{mode: m})
			var script []step
			if m.Policy == suite.Implicit {
				script = append(script, handshake())
			}
			h.run(append(script, s("* OK part of a gree"), serverClose(), C(unavailableFor(m)), clientEnds()))
			h.ended("server-eof", `reason="server closed the connection before its greeting" end=server-eof`)
		})
	}
}

// TestRejectedAfterHandshake: a client that closes right after a
// completed handshake without a byte (mbsync, mpop and neomutt refusing
// the certificate) is named, with the certificate and the SNI; one that
// sent a command is not.
func TestRejectedAfterHandshake(t *testing.T) {
	const want = "warning: client closed after the tls handshake without a command: it probably rejected the certificate (expired/untrusted/wrong name?); served the certificate for imap.test, valid until "
	for _, m := range []suite.Mode{modeRequired, modeImplicit, modePOP3Required, modePOP3Implicit} {
		t.Run(m.Name, func(t *testing.T) {
			greet, startTLS, ok := serverGreeting, "", ""
			if m.Protocol == "pop3" {
				greet = pop3Greet
			}
			var script []step
			if m.Policy == suite.Implicit {
				script = []step{handshake(), s(greet), C(greet)}
			} else {
				startTLS, ok = "s STARTTLS\r\n", "s OK Begin TLS negotiation now\r\n"
				if m.Protocol == "pop3" {
					startTLS, ok = "STLS\r\n", "+OK Begin TLS negotiation\r\n"
				}
				script = []step{s(greet), clientSkipLine(), c(startTLS), C(ok), handshake()}
			}
			h := start(t, setup{mode: m})
			h.run(script)
			sess := h.ended("client-eof", want, "; sni=imap.test; remote=192.0.2.1:4711")
			if sess.warnings.count != 1 {
				t.Errorf("warnings=%d, want 1", sess.warnings.count)
			}
		})
	}
	// A command after the handshake: no such warning.
	h := start(t, setup{mode: modeImplicit})
	h.run([]step{handshake(), s(serverGreeting), C(serverGreeting), c("a NOOP\r\n"), S("a NOOP\r\n"), s("a OK\r\n"), C("a OK\r\n")})
	h.ended("client-eof")
	if strings.Contains(h.logs.String(), "rejected") {
		t.Errorf("a client that sent a command was named:\n%s", h.logs)
	}
}

// clientSkipLine reads the client's next line, whatever it is (the
// greeting as the proxy rewrote it).
func clientSkipLine() step { return step{op: 'l'} }

// TestBinaryPeerDown: with FD3_ERROR (FD4_ERROR) the built
// program never uses the server's (the key holder's) descriptor, which
// is not open here, tells the client, and exits 0 with the reason in its
// one line.
func TestBinaryPeerDown(t *testing.T) {
	pem := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(pem, testPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	const serverWhy = "unable to connect to 127.0.0.1:10143: connection refused"
	code, stderr, got := runBinaryEnv(t, []string{"FD3_ERROR=" + serverWhy}, []string{"-n", "pop3", "-p", pem, "-F", "3"})
	if code != 0 || got != errUnavailable || !strings.HasSuffix(stderr, ` reason="`+serverWhy+`" end=server-error`+"\n") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("server down: exit %d, client %q, stderr %q", code, got, stderr)
	}

	sProc, sTest := socketpair(t)
	defer sTest.Close()
	sf := fileOf(t, sProc)
	sProc.Close()
	const keyWhy = "unable to reach the signer at /x/signer/socket: connection refused (is the signer service linked and up?)"
	code, stderr, got = runBinaryEnv(t, []string{"FD4_ERROR=" + keyWhy}, []string{"-n", "imap", "-K", "4", "-F", "3"}, sf)
	if code != 0 || got != byeUnavailable || !strings.HasSuffix(stderr, ` reason="`+keyWhy+`" end=key-process-failed`+"\n") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("key holder down: exit %d, client %q, stderr %q", code, got, stderr)
	}
}

// TestDownFromEnv: the variables follow -F and -K, whoever opened the
// descriptors; without -K the key holder's variable means nothing.
func TestDownFromEnv(t *testing.T) {
	env := map[string]string{"FD3_ERROR": "s3", "FD4_ERROR": "k4", "FD5_ERROR": "s5", "FD6_ERROR": "k6"}
	getenv := func(k string) string { return env[k] }
	for _, tt := range []struct {
		serverFD, keyFD int
		want            down
	}{
		{3, 4, down{server: "s3", keyHolder: "k4"}},
		{5, 6, down{server: "s5", keyHolder: "k6"}},
		{3, -1, down{server: "s3"}},
		{7, 8, down{}},
	} {
		if got := downFromEnv(getenv, tt.serverFD, tt.keyFD); got != tt.want {
			t.Errorf("downFromEnv(-F %d, -K %d) = %+v, want %+v", tt.serverFD, tt.keyFD, got, tt.want)
		}
	}
}
