package main

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/suite"
	"imap-tls/log"
	"imap-tls/stunnel-imap/imap"
	"imap-tls/stunnel-imap/line"
	"imap-tls/stunnel-imap/pop3"
)

// fakeServer is a plaintext IMAP server that parses commands as a real
// one does (literals included; it refuses the literal of XREFUSE before
// its "+", and gives up late on the literal of XEARLY) and records every
// command name it executes.
func fakeServer(conn net.Conn, mu *sync.Mutex, seen *[]string) {
	defer closeWrite(conn)
	io.WriteString(conn, serverGreeting)
	r := bufio.NewReaderSize(conn, 2*imap.MaxLiteral)
	for {
		l, err := line.Read(r, 1<<20)
		if err != nil {
			return
		}
		tag, name, _, ok := imap.ParseCommand(l)
		if ok {
			mu.Lock()
			*seen = append(*seen, name)
			mu.Unlock()
		}
		refused := false
		for {
			lit, has := imap.Literal(l)
			if !has {
				break
			}
			if name == "XREFUSE" {
				refused = true
				break
			}
			if name == "XEARLY" && lit.Size <= imap.MaxLiteral {
				// A server that gives up on the literal late: after its
				// "+" (for {n}; none for {n+}) and after the client's
				// octets have arrived, it answers the command and reads
				// those octets as commands (issue 21: a race no phase
				// of the proxy can close; only not forwarding literals
				// before TLS does).
				if !lit.NonSync {
					io.WriteString(conn, "+ go ahead\r\n")
				}
				r.Peek(int(lit.Size)) // until they are all in, or the end
				refused = true
				break
			}
			if lit.Size > 1<<20 {
				return
			}
			if !lit.NonSync {
				io.WriteString(conn, "+ go ahead\r\n")
			}
			if _, err := imap.ReadLiteral(r, lit.Size); err != nil {
				return
			}
			if l, err = line.Read(r, 1<<20); err != nil {
				return
			}
		}
		switch {
		case !ok:
			io.WriteString(conn, "* BAD what\r\n")
		case refused:
			io.WriteString(conn, tag+" BAD literal refused\r\n")
		default:
			io.WriteString(conn, tag+" OK done\r\n")
		}
	}
}

// FuzzSession: whatever a client sends before TLS on a STARTTLS-required
// port, the server never executes LOGIN, AUTHENTICATE or STARTTLS, even
// a server that gives up on a literal late (XEARLY): no literal reaches
// it before TLS. testdata/fuzz/FuzzSession holds the inputs longer runs
// found (sh redo.do fuzz), as regression seeds.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"a LOGIN alice secret\r\n",
		"a STARTTLS\r\nb LOGIN alice secret\r\n",
		"a NOOP {12+}\r\nb LOGIN x y\r\n\r\n",
		"a XREFUSE {12+}\r\nb LOGIN x y\r\n\r\nc NOOP\r\n",
		"a XREFUSE {12}\r\nb LOGIN x y\r\n",
		"a NOOP \"x\r\nb LOGIN x y\r\n",
		"a NOOP\nb AUTHENTICATE PLAIN\n",
		"a NOOP {5}\r\nb LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n",
		"a LOGIN {5+}\r\nb STARTTLS\r\n\r\nc LOGIN x y\r\n",
		"a NOOP ~{4+}\r\nb LO\r\nc NOOP\r\n",
		"a NOOP\rb LOGIN x y\r\n",
		"a STARTTLS x\r\n",
		"a XEARLY {20}\r\nb LOGIN alice secret\r\n",
		"a XEARLY {10}\r\nb STARTTLS\r\n",
		"a XEARLY {20+}\r\nb LOGIN alice secret\r\n",
		"a XEARLY {5}\r\nhello\r\nb LOGIN x y\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		seen, sess := fuzzOne(t, modeRequired, fakeServer, in)
		for _, name := range seen {
			switch name {
			case "LOGIN", "AUTHENTICATE", "STARTTLS":
				t.Fatalf("the server executed %s before TLS (commands %q, end %s)", name, seen, sess.end)
			}
		}
		if sess.loggedIn {
			t.Fatalf("authenticated without TLS")
		}
	})
}

// fakePOP3 is a plaintext POP3 server that records every command name it
// executes: +OK to everything, a multi-line CAPA, and an AUTH challenge
// it gives up on at once.
func fakePOP3(conn net.Conn, mu *sync.Mutex, seen *[]string) {
	defer closeWrite(conn)
	io.WriteString(conn, "+OK ready <1@x>\r\n")
	r := bufio.NewReader(conn)
	for {
		l, err := line.Read(r, 1<<20)
		if err != nil {
			return
		}
		name, _, ok := pop3.ParseCommand(l)
		if ok {
			mu.Lock()
			*seen = append(*seen, name)
			mu.Unlock()
		}
		switch name {
		case "CAPA":
			io.WriteString(conn, "+OK\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
		case "AUTH":
			io.WriteString(conn, "+ \r\n-ERR given up\r\n")
		default:
			io.WriteString(conn, "+OK\r\n")
		}
	}
}

// FuzzPOP3Session: whatever a client sends before TLS on an
// STLS-required port, the server never executes USER, PASS, APOP, AUTH
// or STLS, and no login happens.
func FuzzPOP3Session(f *testing.F) {
	for _, seed := range []string{
		"USER alice\r\nPASS secret\r\n",
		"STLS\r\nUSER alice\r\n",
		"CAPA\r\nAUTH PLAIN AGFsaWNlAGFsaWNlAHNlY3JldA==\r\n",
		"APOP alice 0123456789abcdef0123456789abcdef\r\n",
		"user alice\npass secret\n",
		"STLS x\r\nNOOP\r\n",
		"\r\n\r\nQUIT\r\n",
		"NOOP\rPASS x\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		seen, sess := fuzzOne(t, mustMode("pop3"), fakePOP3, in)
		for _, name := range seen {
			switch name {
			case "USER", "PASS", "APOP", "AUTH", "STLS":
				t.Fatalf("the server executed %s before TLS (commands %q, end %s)", name, seen, sess.end)
			}
		}
		if sess.loggedIn {
			t.Fatalf("authenticated without TLS")
		}
	})
}

// fuzzOne runs one session of mode between a client that sends in and
// then half-closes, and server, a fake that records the command names
// it executes; it returns them and the ended session.
func fuzzOne(t *testing.T, m suite.Mode, server func(net.Conn, *sync.Mutex, *[]string), in []byte) ([]string, *session) {
	cTest, cProxy := socketpair(t)
	sProxy, sTest := socketpair(t)
	defer cTest.Close()
	defer sTest.Close()
	c, _ := certfile.Parse(testPEM, "test")
	l := log.NewTo("stunnel-imap", io.Discard, func(int) {})
	cfg := &config{mode: m, tls: tlsConfig(staticSource{c}, m.ALPN), handshakeTimeout: time.Second,
		commandTimeout: 2 * time.Second, idleTimeout: 2 * time.Second, log: l, linger: 100 * time.Millisecond, grace: time.Second}
	var mu sync.Mutex
	var seen []string
	srvDone := make(chan struct{})
	go func() { server(sTest, &mu, &seen); close(srvDone) }()
	done := make(chan *session, 1)
	go func() { done <- serve(cfg, cProxy, sProxy) }()
	go func() {
		cTest.Write(in)
		closeWrite(cTest)
	}()
	cTest.SetReadDeadline(time.Now().Add(guard))
	io.Copy(io.Discard, cTest)
	var sess *session
	select {
	case sess = <-done:
	case <-time.After(guard):
		t.Fatal("session did not end")
	}
	sTest.Close()
	<-srvDone
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), seen...), sess
}
