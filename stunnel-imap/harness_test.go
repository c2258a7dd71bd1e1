package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/suite"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// hang guards: generous, never asserted on.
const guard = 20 * time.Second

var (
	testPEM  []byte // imap.test
	testPool *x509.CertPool
	binary   string // the built stunnel-imap
)

func TestMain(m *testing.M) {
	tb := testkit.MainTB()
	c := testkit.NewCert(tb, testkit.CertOptions{Names: []string{"imap.test"}, SelfSigned: true})
	testPEM, testPool = c.PEM, c.Pool()
	binary = testkit.Bin(tb, "stunnel-imap")
	os.Exit(m.Run())
}

// socketpair returns two connected unix stream sockets as net.Conns
// (both support CloseWrite, like the real descriptors).
func socketpair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}

// harness runs one session in-process between a scripted client and a
// scripted server.
type harness struct {
	t      *testing.T
	client net.Conn // the test's end: plain, then TLS
	rawCli net.Conn
	server net.Conn
	logs   *testkit.LockedBuffer
	done   chan *session
	sess   *session
}

type setup struct {
	mode      suite.Mode
	handshake time.Duration
	command   time.Duration
	idle      time.Duration
	src       certSource
	logs      *testkit.LockedBuffer
	ready     func() error
	warnDays  int // config.certWarnDays: 0, no expiry warning
	down      down
}

func start(t *testing.T, su setup) *harness {
	t.Helper()
	cTest, cProxy := socketpair(t)
	sProxy, sTest := socketpair(t)
	logs := su.logs
	if logs == nil {
		logs = &testkit.LockedBuffer{}
	}
	l := log.NewTo("stunnel-imap", logs, func(int) {})
	if su.src == nil {
		c, err := certfile.Parse(testPEM, "test")
		if err != nil {
			t.Fatal(err)
		}
		su.src = staticSource{c}
	}
	cfg := &config{
		mode:             su.mode,
		tls:              tlsConfig(su.src, su.mode.ALPN),
		handshakeTimeout: or(su.handshake, guard),
		commandTimeout:   or(su.command, guard),
		idleTimeout:      or(su.idle, guard),
		log:              l,
		remote:           "192.0.2.1:4711",
		linger:           time.Second,
		grace:            2 * time.Second,
		ready:            su.ready,
		certWarnDays:     su.warnDays,
		down:             su.down,
	}
	h := &harness{t: t, client: cTest, rawCli: cTest, server: sTest, logs: logs, done: make(chan *session, 1)}
	go func() { h.done <- serve(cfg, cProxy, sProxy) }()
	t.Cleanup(func() {
		cTest.Close()
		sTest.Close()
		h.wait()
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	return h
}

// The modes, as -n names them.
var (
	modeRequired = mustMode("imap")
	modeOptional = mustMode("imap-")
	modeImplicit = mustMode("imaps")
)

func mustMode(name string) suite.Mode {
	m, ok := suite.ModeNamed(name)
	if !ok {
		panic("no mode " + name)
	}
	return m
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// wait returns the ended session (hang guard: fails the test).
func (h *harness) wait() *session {
	if h.sess != nil {
		return h.sess
	}
	select {
	case h.sess = <-h.done:
	case <-time.After(guard):
		h.t.Fatal("session did not end")
	}
	return h.sess
}

// step is one move of a script.
type step struct {
	op   byte
	data string
	cfg  *tls.Config
}

// The script's moves: the client or the server writes, the client or the
// server expects exactly these bytes next, TLS, half-closes, ends.
func c(s string) step                    { return step{op: 'c', data: s} }
func s(s string) step                    { return step{op: 's', data: s} }
func C(s string) step                    { return step{op: 'C', data: s} }
func S(s string) step                    { return step{op: 'S', data: s} }
func handshake() step                    { return step{op: 'T'} }
func handshakeWith(cfg *tls.Config) step { return step{op: 'T', cfg: cfg} }
func clientHalfClose() step              { return step{op: 'e'} }
func serverHalfClose() step              { return step{op: 'E'} }
func serverClose() step                  { return step{op: 'K'} }
func clientClose() step                  { return step{op: 'k'} }
func clientEnds() step                   { return step{op: 'x'} } // the client reads end of file (a TLS alert may come first)
func serverEnds() step                   { return step{op: 'X'} } // the server reads end of file, nothing before
func pause(d time.Duration) step         { return step{op: 'z', data: d.String()} }

func (h *harness) run(script []step) {
	h.t.Helper()
	for i, st := range script {
		if !h.step(st) {
			h.t.Fatalf("step %d (%c %q) failed", i, st.op, st.data)
		}
	}
}

func (h *harness) step(st step) bool {
	t := h.t
	t.Helper()
	switch st.op {
	case 'c':
		h.client.SetWriteDeadline(time.Now().Add(guard))
		if _, err := io.WriteString(h.client, st.data); err != nil {
			t.Errorf("client write: %v", err)
			return false
		}
	case 's':
		h.server.SetWriteDeadline(time.Now().Add(guard))
		if _, err := io.WriteString(h.server, st.data); err != nil {
			t.Errorf("server write: %v", err)
			return false
		}
	case 'C':
		return h.expect("client", h.client, st.data)
	case 'S':
		return h.expect("server", h.server, st.data)
	case 'T':
		cfg := st.cfg
		if cfg == nil {
			cfg = &tls.Config{RootCAs: testPool, ServerName: "imap.test"}
		}
		tc := tls.Client(h.rawCli, cfg)
		tc.SetDeadline(time.Now().Add(guard))
		if err := tc.Handshake(); err != nil {
			t.Errorf("client handshake: %v", err)
			return false
		}
		h.client = tc
	case 'e':
		closeWrite(h.client)
	case 'E':
		closeWrite(h.server)
	case 'K':
		h.server.Close()
	case 'R': // the server stops reading: the proxy's writes to it fail
		h.server.(interface{ CloseRead() error }).CloseRead()
	case 'z':
		d, _ := time.ParseDuration(st.data)
		time.Sleep(d)
	case 'k':
		h.client.Close()
	case 'l': // the client reads one line, whatever it says
		h.client.SetReadDeadline(time.Now().Add(guard))
		b := make([]byte, 1)
		for b[0] != '\n' {
			if _, err := io.ReadFull(h.client, b); err != nil {
				t.Errorf("client read: %v", err)
				return false
			}
		}
	case 'x':
		return h.expectEnd("client", h.client, true)
	case 'X':
		return h.expectEnd("server", h.server, false)
	}
	return true
}

func (h *harness) expect(who string, conn net.Conn, want string) bool {
	h.t.Helper()
	conn.SetReadDeadline(time.Now().Add(guard))
	got := make([]byte, len(want))
	n, err := io.ReadFull(conn, got)
	if string(got[:n]) != want {
		h.t.Errorf("%s got %q (%v), want %q", who, got[:n], err, want)
		return false
	}
	return true
}

// expectEnd reads to end of file: the peer must get nothing more, except
// (for the client, when alert is true) TLS alert records.
func (h *harness) expectEnd(who string, conn net.Conn, alert bool) bool {
	h.t.Helper()
	conn.SetReadDeadline(time.Now().Add(guard))
	rest, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		h.t.Errorf("%s: no end of file", who)
		return false
	}
	if len(rest) > 0 && !(alert && rest[0] == 0x15) {
		h.t.Errorf("%s got %q before its end", who, rest)
		return false
	}
	return true
}

// ended checks the session's end and its log.
func (h *harness) ended(end string, logs ...string) *session {
	h.t.Helper()
	// The client goes first; the server's end of file follows from it
	// (or from the session's own end), so the end reason is certain.
	h.client.Close()
	h.server.SetReadDeadline(time.Now().Add(guard))
	io.Copy(io.Discard, h.server)
	h.server.Close()
	sess := h.wait()
	if sess.end.String() != end {
		h.t.Errorf("end=%s, want %s", sess.end, end)
	}
	all := h.logs.String()
	for _, want := range logs {
		if !strings.Contains(all, want) {
			h.t.Errorf("log lacks %q:\n%s", want, all)
		}
	}
	return sess
}
