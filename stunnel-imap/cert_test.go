package main

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imap-tls/log"
)

func writePEM(t *testing.T, path, name string) {
	t.Helper()
	b, err := makePEM(name, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSNI: -d serves certdir/NAME.pem by SNI, default.pem otherwise, and
// refuses names that would leave the directory or name a hidden file.
func TestSNI(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "certs")
	os.Mkdir(dir, 0o700)
	writePEM(t, filepath.Join(dir, "default.pem"), "default.test")
	writePEM(t, filepath.Join(dir, "a.test.pem"), "a.test")
	writePEM(t, filepath.Join(dir, ".hidden.pem"), "hidden.test")
	writePEM(t, filepath.Join(top, "secret.pem"), "secret.test")
	os.WriteFile(filepath.Join(dir, "bad.test.pem"), []byte("not a pem\n"), 0o600)

	cases := []struct {
		sni  string
		want string // the served certificate's name; "" when refused
		end  string
	}{
		{"", "default.test", ""},
		{"a.test", "a.test", ""},
		{"A.Test", "a.test", ""},
		{"b.test", "default.test", ""},
		{"../secret", "", "refused"},
		{"..x", "", "refused"},
		{".hidden", "", "refused"},
		{"a/b", "", "refused"},
		{"default", "", "refused"},
		{"bad.test", "", "unable to load certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.sni, func(t *testing.T) {
			logs := &syncBuffer{}
			l := log.NewTo("stunnel-imap", logs, func(int) {})
			src, err := openCertSource(&options{certDir: dir, pemFD: -1}, l)
			if err != nil {
				t.Fatal(err)
			}
			h := start(t, setup{mode: modeImplicit, src: src, logs: logs})
			cli := tls.Client(h.rawCli, &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni})
			cli.SetDeadline(time.Now().Add(guard))
			err = cli.Handshake()
			if tc.want == "" {
				if err == nil {
					t.Fatalf("handshake with SNI %q succeeded with %s", tc.sni, cli.ConnectionState().PeerCertificates[0].Subject.CommonName)
				}
				h.ended("handshake-failed", tc.end)
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := cli.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.want {
				t.Errorf("served %s, want %s", got, tc.want)
			}
			h.client = cli
			h.run([]step{s(greeting), C(greeting)})
			h.ended("client-eof")
		})
	}
}

func TestCertSourceErrors(t *testing.T) {
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "good.pem"), "good.test")
	expired, _ := makePEM("old.test", time.Now().Add(-time.Hour))
	os.WriteFile(filepath.Join(dir, "expired.pem"), expired, 0o600)
	good, _ := os.ReadFile(filepath.Join(dir, "good.pem"))
	certOnly := good[:strings.Index(string(good), "-----BEGIN EC PRIVATE KEY")]
	os.WriteFile(filepath.Join(dir, "certonly.pem"), certOnly, 0o600)
	os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("garbage"), 0o600)
	l := log.NewTo("stunnel-imap", &syncBuffer{}, func(int) {})
	cases := []struct {
		o    options
		want string
	}{
		{options{pemFile: filepath.Join(dir, "missing.pem"), pemFD: -1}, "unable to read certificate " + dir + "/missing.pem: file does not exist"},
		{options{pemFile: filepath.Join(dir, "expired.pem"), pemFD: -1}, "certificate has expired"},
		{options{pemFile: filepath.Join(dir, "certonly.pem"), pemFD: -1}, "unable to load certificate"},
		{options{pemFile: filepath.Join(dir, "garbage.pem"), pemFD: -1}, "unable to load certificate"},
		{options{certDir: filepath.Join(dir, "nodir"), pemFD: -1}, "default.pem: file does not exist"},
		{options{certDir: dir, pemFD: -1}, "default.pem: file does not exist"},
	}
	for _, tc := range cases {
		_, err := openCertSource(&tc.o, l)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
			continue
		}
		if e, ok := err.(*log.Error); !ok || e.Code != log.ExitUsage {
			t.Errorf("%+v: %#v, want a configuration error (100)", tc.o, err)
		}
	}
	if _, err := openCertSource(&options{pemFile: filepath.Join(dir, "good.pem"), pemFD: -1}, l); err != nil {
		t.Errorf("good.pem: %v", err)
	}
}

// TestSNIReadAtStart: -d reads its files before the lock-down (which
// forbids open): a handshake opens no file.
func TestSNIReadAtStart(t *testing.T) {
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "default.pem"), "default.test")
	writePEM(t, filepath.Join(dir, "a.test.pem"), "a.test")
	logs := &syncBuffer{}
	src, err := openCertSource(&options{certDir: dir, pemFD: -1}, log.NewTo("stunnel-imap", logs, func(int) {}))
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
	h.run([]step{s(greeting), C(greeting)})
	h.ended("client-eof")
}
