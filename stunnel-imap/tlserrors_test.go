package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/testkit"
)

// What a failed handshake says (issue 13): versions and cipher suites
// by name, never crypto/tls's hexadecimal lists; a client that refuses
// the certificate named as such, with the certificate's expiry and the
// SNI; the expiry warning once per connection.

func TestTLSVersionsNamed(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	cli := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	cli.SetDeadline(time.Now().Add(guard))
	if err := cli.Handshake(); err == nil {
		t.Fatalf("TLS %x accepted", cli.ConnectionState().Version)
	}
	h.run([]step{serverEnds()})
	h.ended("handshake-failed", "warning: unable to complete tls handshake: tls: client offered only unsupported versions: TLS 1.1, TLS 1.0; remote=192.0.2.1:4711\n")
	if strings.Contains(h.logs.String(), "[30") {
		t.Errorf("hexadecimal versions in the log:\n%s", h.logs)
	}
}

func TestTLSSuitesNamed(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	// RSA key exchange only: crypto/tls's server does not offer it
	cli := tls.Client(h.rawCli, &tls.Config{RootCAs: testPool, ServerName: "imap.test", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}})
	cli.SetDeadline(time.Now().Add(guard))
	if err := cli.Handshake(); err == nil {
		t.Fatalf("RSA key exchange accepted: %s", tls.CipherSuiteName(cli.ConnectionState().CipherSuite))
	}
	h.run([]step{serverEnds()})
	h.ended("handshake-failed", "warning: unable to complete tls handshake: tls: no cipher suite supported by both client and server; client offered: TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_GCM_SHA384")
	if strings.Contains(h.logs.String(), "[9c") || strings.Contains(h.logs.String(), "rejected the certificate") {
		t.Errorf("hexadecimal suites, or a rejection, in the log:\n%s", h.logs)
	}
}

// Many suites: at most maxNamed named, the rest counted.
func TestTLSSuitesBounded(t *testing.T) {
	o := offered{suites: make([]uint16, maxNamed+1), nSuites: 500}
	for i := range o.suites {
		o.suites[i] = 0x0a00 + uint16(i)
	}
	got := o.explain("tls: no cipher suite supported by both client and server; client offered: [a00 ...]")
	if !strings.HasSuffix(got, "0x0A0B and 488 more") || strings.Count(got, ", ") != maxNamed-1 {
		t.Errorf("explain: %q", got)
	}
}

// A client that does not trust the CA: its alert, the served
// certificate's names and expiry, and the SNI it asked for.
func TestCertRejectedUntrusted(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	other := testkit.NewCert(t, testkit.CertOptions{Names: []string{"imap.test"}, SelfSigned: true})
	cli := tls.Client(h.rawCli, &tls.Config{RootCAs: other.Pool(), ServerName: "imap.test"})
	cli.SetDeadline(time.Now().Add(guard))
	if err := cli.Handshake(); err == nil {
		t.Fatal("handshake with an untrusted certificate succeeded")
	}
	h.run([]step{serverEnds()})
	c, _ := certfile.Parse(testPEM, "test")
	want := "warning: client rejected the certificate (expired/untrusted/wrong name?): remote error: tls: " +
		"bad certificate; served the certificate for imap.test, valid until " +
		c.Leaf.NotAfter.UTC().Format(time.DateOnly) + "; sni=imap.test; remote=192.0.2.1:4711\n"
	h.ended("handshake-failed", want)
}

// A client that just closes once it has the certificate (mbsync and
// neomutt do): named too, though the end is the client's.
func TestCertRejectedClose(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	cli := tls.Client(h.rawCli, &tls.Config{InsecureSkipVerify: true, ServerName: "wrong.example",
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			closeWrite(h.rawCli)
			return errors.New("no")
		}})
	cli.SetDeadline(time.Now().Add(guard))
	cli.Handshake()
	h.run([]step{serverEnds()})
	h.ended("client-eof", "warning: client rejected the certificate (expired/untrusted/wrong name?): ", "; served the certificate for imap.test, valid until ", "; sni=wrong.example; remote=192.0.2.1:4711\n")
}

// A refusal before the certificate (an old version) is no rejection of
// the certificate, and a session served is none either.
func TestCertNotRejected(t *testing.T) {
	h := start(t, setup{mode: modeImplicit})
	h.run([]step{handshake(), s(serverGreeting), C(serverGreeting), c("a LOGOUT\r\n"), S("a LOGOUT\r\n"), s("* BYE\r\na OK\r\n"), C("* BYE\r\na OK\r\n")})
	h.ended("client-eof")
	if strings.Contains(h.logs.String(), "rejected") || strings.Contains(h.logs.String(), "warning:") {
		t.Errorf("log:\n%s", h.logs)
	}
}

// The expiry warning: once per connection, naming the date, for a
// certificate within the warning days; none with 0 days or a later one.
func TestCertExpiringWarning(t *testing.T) {
	soon := testkit.NewCert(t, testkit.CertOptions{Names: []string{"imap.test"}, SelfSigned: true, NotAfter: time.Now().Add(5*24*time.Hour + time.Hour)})
	cert, err := certfile.Parse(soon.PEM, "soon")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		days int
		want bool
	}{{14, true}, {5, false}, {0, false}, {6, true}} {
		h := start(t, setup{mode: modeImplicit, src: staticSource{cert}, warnDays: tc.days})
		// A command, so that the session is no rejection after the
		// handshake (whose warning would count too).
		h.run([]step{handshakeWith(soon.ClientConfig("imap.test")), s(serverGreeting), C(serverGreeting), c("a NOOP\r\n"), S("a NOOP\r\n"), s("a OK\r\n"), C("a OK\r\n")})
		sess := h.ended("client-eof")
		line := "warning: certificate for imap.test expires on " + cert.Leaf.NotAfter.UTC().Format(time.DateOnly) + ", in 5 days: renew it (CERT_WARN_DAYS="
		if got := strings.Contains(h.logs.String(), line); got != tc.want {
			t.Errorf("%d days: warning %v, want %v:\n%s", tc.days, got, tc.want, h.logs)
		}
		if n := strings.Count(h.logs.String(), "expires on"); n > 1 || (tc.want && sess.warnings.count != 1) {
			t.Errorf("%d days: %d warnings, count %d, want at most one", tc.days, n, sess.warnings.count)
		}
	}
}
