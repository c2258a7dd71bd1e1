package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/proxyproto"
	"imap-tls/internal/suite"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// readHeader reads exactly one PROXY header from the server's end.
func readHeader(t *testing.T, r io.Reader) proxyproto.Header {
	t.Helper()
	var b []byte
	for {
		n, err := proxyproto.Need(b)
		if err != nil {
			t.Fatalf("server got %q: %v", b, err)
		}
		if n == len(b) {
			break
		}
		more := make([]byte, n-len(b))
		if _, err := io.ReadFull(r, more); err != nil {
			t.Fatalf("server got %q, then %v", b, err)
		}
		b = append(b, more...)
	}
	h, err := proxyproto.Parse(b)
	if err != nil {
		t.Fatalf("header %q: %v", b, err)
	}
	return h
}

// TestProxyHeader: with -H the server's first bytes are a PROXY v2
// header with the client's address; PP2_TYPE_SSL with the client flag
// exactly in the modes where no login can happen without TLS; with
// implicit TLS the header follows the handshake and names the TLS
// version and the SNI; the greeting then flows as before.
func TestProxyHeader(t *testing.T) {
	for _, c := range []struct {
		mode   string
		secure bool
		remote string
	}{
		{"imap", true, "192.0.2.7:40000"},
		{"imap-", false, "192.0.2.7:40000"},
		{"imaps", true, "[2001:db8::7]:40000"},
		{"pop3", true, "192.0.2.7:40000"},
		{"pop3-", false, "[2001:db8::7]:40000"},
		{"pop3s", true, "192.0.2.7:40000"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			m := mustMode(c.mode)
			cTest, cProxy := socketpair(t)
			sProxy, sTest := socketpair(t)
			defer cTest.Close()
			defer sTest.Close()
			cert, err := certfile.Parse(testPEM, "test")
			if err != nil {
				t.Fatal(err)
			}
			remote := netip.MustParseAddrPort(c.remote)
			local := netip.MustParseAddrPort("198.51.100.1:143")
			if remote.Addr().Is6() {
				local = netip.MustParseAddrPort("[2001:db8::1]:143")
			}
			logs := &testkit.LockedBuffer{}
			cfg := &config{
				mode: m, tls: tlsConfig(staticSource{cert}, m.ALPN),
				handshakeTimeout: guard, commandTimeout: guard, idleTimeout: guard,
				log: log.NewTo("stunnel-imap", logs, func(int) {}), remote: c.remote,
				linger: time.Second, grace: time.Second,
				proxy: &proxyAddrs{remote: remote, local: local},
			}
			done := make(chan *session, 1)
			go func() { done <- serve(cfg, cProxy, sProxy) }()
			client := cTest
			if m.Policy == suite.Implicit {
				sTest.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				var b [1]byte
				if n, _ := sTest.Read(b[:]); n != 0 {
					t.Fatalf("implicit TLS: the server got a byte before the handshake")
				}
				sTest.SetReadDeadline(time.Time{})
				tc := tls.Client(cTest, &tls.Config{RootCAs: testPool, ServerName: "imap.test", NextProtos: []string{m.ALPN}})
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				client = tc
			}
			sTest.SetReadDeadline(time.Now().Add(guard))
			h := readHeader(t, sTest)
			if h.Version != 2 || h.Local || h.Src != remote || h.Dst != local {
				t.Errorf("header %+v, want %v -> %v", h, remote, local)
			}
			ssl, ok := h.Find(proxyproto.TypeSSL)
			if ok != c.secure {
				t.Fatalf("PP2_TYPE_SSL present: %v, want %v", ok, c.secure)
			}
			if ok {
				flags, _, sub, err := proxyproto.SSLSub(ssl)
				if err != nil || flags != proxyproto.ClientSSL {
					t.Errorf("PP2_TYPE_SSL flags %#x, %v", flags, err)
				}
				var version string
				for _, s := range sub {
					if s.Type == proxyproto.SubtypeSSLVersion {
						version = string(s.Value)
					}
				}
				if want := map[bool]string{true: "TLSv1.3", false: ""}[m.Policy == suite.Implicit]; version != want {
					t.Errorf("PP2_SUBTYPE_SSL_VERSION %q, want %q", version, want)
				}
			}
			authority, ok := h.Find(proxyproto.TypeAuthority)
			if (m.Policy == suite.Implicit) != ok || ok && string(authority) != "imap.test" {
				t.Errorf("PP2_TYPE_AUTHORITY %q (%v)", authority, ok)
			}
			// The greeting flows after the header.
			greet := "* OK hi\r\n"
			if strings.HasPrefix(c.mode, "pop3") {
				greet = "+OK hi\r\n"
			}
			sTest.Write([]byte(greet))
			line, err := bufio.NewReader(client).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, greet[:3]) {
				t.Errorf("client got %q, %v", line, err)
			}
			client.Close()
			sTest.Close()
			<-done
		})
	}
}

func TestProxyAddrsFromEnv(t *testing.T) {
	env := map[string]string{"TCPREMOTEIP": "::1", "TCPREMOTEPORT": "40000", "TCPLOCALIP": "::1", "TCPLOCALPORT": "143"}
	a, err := proxyAddrsFromEnv(func(k string) string { return env[k] })
	if err != nil || a.remote.String() != "[::1]:40000" || a.local.String() != "[::1]:143" {
		t.Fatalf("%+v %v", a, err)
	}
	delete(env, "TCPLOCALPORT")
	if _, err := proxyAddrsFromEnv(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "$TCPLOCALPORT") {
		t.Errorf("no TCPLOCALPORT: %v", err)
	}
}

// TestProxyHeaderNeedsEnv: -H without tcpserver's environment is a
// configuration error (100) before a byte moves.
func TestProxyHeaderNeedsEnv(t *testing.T) {
	cmd := exec.Command(binary, "-n", "imap", "-p", "/nonexistent", "-H")
	cmd.Env = []string{"TCPREMOTEIP=192.0.2.1"}
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 100 || !strings.Contains(string(out), "-H needs $TCPREMOTEPORT") {
		t.Errorf("%v: %s", err, out)
	}
}
