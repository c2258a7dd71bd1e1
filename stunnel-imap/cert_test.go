package main

import (
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"imap-tls/internal/certfile/certfiletest"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// writePEM writes a self-signed certificate for name (testkit.NewCert),
// chain and key, to path.
func writePEM(t *testing.T, path, name string) {
	t.Helper()
	b := testkit.NewCert(t, testkit.CertOptions{Names: []string{name}, SelfSigned: true}).PEM
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSNI: -d serves the shared SNI table (certfiletest.SNIDir) through
// real handshakes, as the key process does (stunnel-imap-key's
// TestKeyProcessCertDir): by the certificates' own names, never a file
// named after the client's name, never one outside the directory or
// hidden; a name that matches nothing gets default.pem.
func TestSNI(t *testing.T) {
	dir, cases := certfiletest.SNIDir(t)
	for _, tc := range cases {
		t.Run(tc.SNI, func(t *testing.T) {
			logs := &testkit.LockedBuffer{}
			src, err := openCertSource(&options{certDir: dir, pemFD: -1})
			if err != nil {
				t.Fatal(err)
			}
			h := start(t, setup{mode: modeImplicit, src: src, logs: logs})
			cli := tls.Client(h.rawCli, &tls.Config{InsecureSkipVerify: true, ServerName: tc.SNI})
			cli.SetDeadline(time.Now().Add(guard))
			if err := cli.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := cli.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.Want {
				t.Errorf("served %s, want %s", got, tc.Want)
			}
			h.client = cli
			h.run([]step{s(serverGreeting), C(serverGreeting)})
			h.ended("client-eof")
		})
	}
}

// TestCertPolicy: every case of the shared table (certfiletest.Cases)
// through -p, -P and -d: the exit status and the message, the same as
// the key process gives (stunnel-imap-key's TestKeyProcessPolicy).
func TestCertPolicy(t *testing.T) {
	for _, c := range certfiletest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			o := options{pemFD: -1, keyFD: -1}
			fd := -1
			switch c.Option {
			case "-p":
				o.pemFile = c.Arg
			case "-P":
				fd = c.Descriptor(t)
				o.pemFD = fd
			case "-d":
				o.certDir = c.Arg
			}
			src, err := openCertSource(&o)
			if c.Code == 0 {
				if err != nil || src == nil {
					t.Fatalf("%s %s: %v", c.Option, c.Arg, err)
				}
				if _, err := src.certificate(&tls.ClientHelloInfo{}); err != nil {
					t.Errorf("%s %s: no default certificate: %v", c.Option, c.Arg, err)
				}
				return
			}
			var e *log.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s %s: %#v, want a *log.Error", c.Option, c.Arg, err)
			}
			if e.Code != c.Code || e.Error() != c.Message(fd) {
				t.Errorf("%s %s:\n got %d %q\nwant %d %q", c.Option, c.Arg, e.Code, e.Error(), c.Code, c.Message(fd))
			}
		})
	}
}

// TestSNIReadAtStart: -d reads its files before the lock-down (which
// forbids open): a handshake opens no file.
func TestSNIReadAtStart(t *testing.T) {
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "default.pem"), "default.test")
	writePEM(t, filepath.Join(dir, "a.pem"), "a.test")
	logs := &testkit.LockedBuffer{}
	src, err := openCertSource(&options{certDir: dir, pemFD: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	h := start(t, setup{mode: modeImplicit, src: src, logs: logs})
	cli := tls.Client(h.rawCli, &tls.Config{InsecureSkipVerify: true, ServerName: "a.test"})
	cli.SetDeadline(time.Now().Add(guard))
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if got := cli.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "a.test" {
		t.Errorf("served %s, want a.test", got)
	}
	h.client = cli
	h.run([]step{s(serverGreeting), C(serverGreeting)})
	h.ended("client-eof")
}
