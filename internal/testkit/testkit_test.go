package testkit

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imap-tls/internal/suite"
)

// fakeTB records what a helper says when it fails, and stops the helper
// there as t.Fatalf would.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs f with a fakeTB and returns its fatal message, "" if none.
func failure(t *testing.T, f func(tb testing.TB)) string {
	fake := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(fake)
	}()
	<-done
	return fake.msg
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "module imap-tls\n") {
		t.Errorf("%s/go.mod is not imap-tls's: %.40q", root, b)
	}
}

// TestBinFromEnv: with $IMAPTLS_BIN set, Bin returns the file there and
// builds nothing; a missing file fails the test naming sh redo.do.
func TestBinFromEnv(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "makesock")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IMAPTLS_BIN", dir)
	if got := Bin(t, "makesock"); got != fake {
		t.Errorf("Bin = %s, want %s", got, fake)
	}
	msg := failure(t, func(tb testing.TB) { Bin(tb, "stunnel-imap") })
	if !strings.Contains(msg, filepath.Join(dir, "stunnel-imap")) || !strings.Contains(msg, "sh redo.do") {
		t.Errorf("missing binary: %q, want the path and sh redo.do", msg)
	}
	msg = failure(t, func(tb testing.TB) { Bin(tb, "no-such-program") })
	if !strings.Contains(msg, "no-such-program is not a program of the suite") {
		t.Errorf("unknown program: %q", msg)
	}
}

// TestBinBuilds: without $IMAPTLS_BIN, Bin builds the program once, as a
// static binary named as the program, in a folder any account can
// traverse.
func TestBinBuilds(t *testing.T) {
	t.Setenv("IMAPTLS_BIN", "")
	p := Bin(t, "makesock")
	if filepath.Base(p) != "makesock" || !filepath.IsAbs(p) {
		t.Errorf("Bin = %s", p)
	}
	st, err := os.Stat(filepath.Dir(p))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("folder %s: %v %v, want mode 0755", filepath.Dir(p), st.Mode(), err)
	}
	out, _ := exec.Command(p).CombinedOutput()
	if !strings.HasPrefix(string(out), "makesock: ") {
		t.Errorf("the built makesock said %q", out)
	}
	if file, err := exec.Command("file", p).Output(); err == nil && !strings.Contains(string(file), "statically linked") {
		t.Errorf("not static: %s", file)
	}
	before, _ := os.Stat(p)
	if p2 := Bin(t, "makesock"); p2 != p {
		t.Errorf("second Bin = %s, want %s", p2, p)
	}
	after, _ := os.Stat(p)
	if !before.ModTime().Equal(after.ModTime()) {
		t.Error("makesock was built twice")
	}
}

// TestProgramDir: every program of the suite is built from the folder
// of its name.
func TestProgramDir(t *testing.T) {
	for _, name := range suite.Programs {
		if d := ProgramDir(t, name); d != name {
			t.Errorf("%s: folder %s", name, d)
		}
	}
}

// TestBuild: once per (package, tags), tags applied, named as the folder.
func TestBuild(t *testing.T) {
	plain := Build(t, "./testdata/hello")
	tagged := Build(t, "imap-tls/internal/testkit/testdata/hello", "testkittag")
	if plain == tagged || filepath.Base(plain) != "hello" || filepath.Base(tagged) != "hello" {
		t.Errorf("paths %s and %s", plain, tagged)
	}
	for p, want := range map[string]string{plain: "hello\n", tagged: "hello testkittag\n"} {
		out, err := exec.Command(p).Output()
		if err != nil || string(out) != want {
			t.Errorf("%s: %q %v, want %q", p, out, err, want)
		}
	}
	if again := Build(t, "./testdata/hello"); again != plain {
		t.Errorf("second Build = %s, want %s", again, plain)
	}
	if msg := failure(t, func(tb testing.TB) { Build(tb, "./testdata/nonexistent") }); !strings.Contains(msg, "unable to build ./testdata/nonexistent") {
		t.Errorf("bad package: %q", msg)
	}
}

// TestStaleDirs: a folder of a process that is gone is removed, ours and
// a live process's are kept.
func TestStaleDirs(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("%s%d", dirPrefix, cmd.Process.Pid)
	live := fmt.Sprintf("%s%d", dirPrefix, 1)
	if _, err := os.Stat(live); err == nil {
		t.Skip(live + " exists")
	}
	for _, d := range []string{dead, live} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer os.RemoveAll(live)
	removeStaleDirs()
	if _, err := os.Stat(dead); err == nil {
		os.RemoveAll(dead)
		t.Errorf("%s of a dead process kept", dead)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("%s of pid 1 removed", live)
	}
}

// TestCert: every key type, with and without an intermediate, and
// self-signed: the pair loads, the chain verifies for every name against
// the root alone, a TLS handshake succeeds with ClientConfig, and the
// files are written as documented.
func TestCert(t *testing.T) {
	for _, key := range []string{"", "p256", "p384", "rsa2048", "ed25519"} {
		for _, shape := range []string{"ca", "intermediate", "self-signed"} {
			t.Run(key+"/"+shape, func(t *testing.T) {
				o := CertOptions{Key: key, Names: []string{"imap.example.test", "*.wild.example.test", "127.0.0.2"}}
				o.Intermediate = shape == "intermediate"
				o.SelfSigned = shape == "self-signed"
				c := NewCert(t, o)
				checkKeyType(t, key, c)
				pair, err := tls.X509KeyPair(c.PEM, c.PEM)
				if err != nil {
					t.Fatal(err)
				}
				wantChain := 1
				if o.Intermediate {
					wantChain = 2
				}
				if len(pair.Certificate) != wantChain || n(c.ChainPEM) != wantChain || !strings.Contains(string(c.KeyPEM), "BEGIN PRIVATE KEY") {
					t.Errorf("chain of %d (%d in ChainPEM), want %d", len(pair.Certificate), n(c.ChainPEM), wantChain)
				}
				if string(c.PEM) != string(c.ChainPEM)+string(c.KeyPEM) {
					t.Error("PEM is not ChainPEM then KeyPEM")
				}
				if !c.Leaf.Equal(mustParse(t, pair.Certificate[0])) {
					t.Error("Leaf is not the chain's first certificate")
				}
				if c.Leaf.Subject.CommonName != "imap.example.test" {
					t.Errorf("common name %q", c.Leaf.Subject.CommonName)
				}
				inter := x509.NewCertPool()
				if o.Intermediate {
					inter.AddCert(mustParse(t, pair.Certificate[1]))
				}
				for _, name := range []string{"imap.example.test", "x.wild.example.test", "127.0.0.2"} {
					if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.Pool(), Intermediates: inter}); err != nil {
						t.Errorf("%s: %v", name, err)
					}
				}
				if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.example.test", Roots: c.Pool(), Intermediates: inter}); err == nil {
					t.Error("verified for a name it does not hold")
				}
				if err := handshake(pair, c.ClientConfig("imap.example.test")); err != nil {
					t.Errorf("handshake: %v", err)
				}
				if err := handshake(pair, ClientConfig(t, c.CAPEM, "x.wild.example.test")); err != nil {
					t.Errorf("handshake with ClientConfig(CAPEM): %v", err)
				}
				other := NewCert(t, CertOptions{Names: o.Names})
				if err := handshake(pair, other.ClientConfig("imap.example.test")); err == nil {
					t.Error("a client trusting another CA accepted the certificate")
				}
			})
		}
	}
}

func n(pemData []byte) int { return strings.Count(string(pemData), "BEGIN CERTIFICATE") }

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func checkKeyType(t *testing.T, key string, c *Cert) {
	t.Helper()
	ok := false
	switch k := c.Key.(type) {
	case *ecdsa.PrivateKey:
		ok = (key == "" || key == "p256") && k.Curve == elliptic.P256() || key == "p384" && k.Curve == elliptic.P384()
	case *rsa.PrivateKey:
		ok = key == "rsa2048" && k.N.BitLen() == 2048
	case ed25519.PrivateKey:
		ok = key == "ed25519"
	}
	if !ok {
		t.Errorf("key %q: got %T", key, c.Key)
	}
}

// handshake runs a TLS handshake over a socketpair (buffered, unlike
// net.Pipe, so a refusing client's alert never waits for the server) and
// returns the client's error.
func handshake(cert tls.Certificate, cfg *tls.Config) error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			panic(err)
		}
		return c
	}
	a, b := conn(fds[0]), conn(fds[1])
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	go func() {
		srv := tls.Server(a, &tls.Config{Certificates: []tls.Certificate{cert}})
		srv.Handshake()
		a.Close()
	}()
	return tls.Client(b, cfg).Handshake()
}

// TestCertValidity: an expired certificate and one not yet valid fail
// verification as such, while the CA stays valid; the defaults are valid
// now.
func TestCertValidity(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		o      CertOptions
		reason x509.InvalidReason // -1: valid
	}{
		{"default", CertOptions{}, -1},
		{"expired", CertOptions{NotAfter: now.Add(-time.Hour)}, x509.Expired},
		{"long expired", CertOptions{NotAfter: now.Add(-365 * 24 * time.Hour)}, x509.Expired},
		{"not yet valid", CertOptions{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, x509.Expired},
		{"expired self-signed", CertOptions{NotAfter: now.Add(-time.Hour), SelfSigned: true}, x509.Expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCert(t, tc.o)
			if !tc.o.NotAfter.IsZero() && !c.Leaf.NotAfter.Equal(tc.o.NotAfter.Truncate(time.Second)) {
				t.Errorf("NotAfter %v, want %v", c.Leaf.NotAfter, tc.o.NotAfter)
			}
			if !c.Leaf.NotBefore.Before(c.Leaf.NotAfter) {
				t.Errorf("NotBefore %v is not before NotAfter %v", c.Leaf.NotBefore, c.Leaf.NotAfter)
			}
			if !tc.o.SelfSigned && (c.CA.NotBefore.After(now) || c.CA.NotAfter.Before(now)) {
				t.Errorf("CA valid %v to %v, not now", c.CA.NotBefore, c.CA.NotAfter)
			}
			_, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: c.Pool()})
			var inv x509.CertificateInvalidError
			switch {
			case tc.reason == -1 && err != nil:
				t.Errorf("verify: %v", err)
			case tc.reason != -1 && (!errors.As(err, &inv) || inv.Reason != tc.reason || inv.Cert == nil || !inv.Cert.Equal(c.Leaf)):
				t.Errorf("verify: %v, want the leaf invalid with reason %d", err, tc.reason)
			}
		})
	}
	if _, err := GenerateCert(CertOptions{Key: "dsa"}); err == nil || !strings.Contains(err.Error(), `unknown key type "dsa"`) {
		t.Errorf("unknown key type: %v", err)
	}
	if _, err := GenerateCert(CertOptions{SelfSigned: true, Intermediate: true}); err == nil {
		t.Error("self-signed with an intermediate accepted")
	}
}

func TestCertWrite(t *testing.T) {
	dir := t.TempDir()
	c := NewCert(t, CertOptions{})
	p, ca := c.Write(t, dir, "server")
	if p != filepath.Join(dir, "server.pem") || ca != filepath.Join(dir, "server-ca.crt") {
		t.Errorf("paths %s %s", p, ca)
	}
	// Again, as a renewal does: the 0400 file is replaced.
	c2 := NewCert(t, CertOptions{})
	c2.Write(t, dir, "server")
	for path, want := range map[string]struct {
		data []byte
		mode os.FileMode
	}{p: {c2.PEM, 0o400}, ca: {c2.CAPEM, 0o644}} {
		b, err := os.ReadFile(path)
		st, _ := os.Stat(path)
		if err != nil || string(b) != string(want.data) || st.Mode().Perm() != want.mode {
			t.Errorf("%s: mode %v, err %v, same content %v", path, st.Mode(), err, string(b) == string(want.data))
		}
	}
}

func TestLockedBuffer(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				fmt.Fprintf(&b, "line %d\n", i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "\n"); got != 8000 || b.Len() != len(b.String()) {
		t.Errorf("%d lines, Len %d", got, b.Len())
	}
}

// TestMainTB: outside a test, a failure prints its message and exits 1;
// a success returns as with a real test.
func TestMainTB(t *testing.T) {
	if os.Getenv("TESTKIT_MAINTB") != "" {
		tb := MainTB()
		tb.Helper()
		fmt.Println(RepoRoot(tb) != "")
		Bin(tb, "no-such-program")
		fmt.Println("not reached")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainTB$")
	cmd.Env = append(os.Environ(), "TESTKIT_MAINTB=1")
	var stderr LockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	if string(out) != "true\n" || !strings.Contains(stderr.String(), "no-such-program is not a program of the suite") {
		t.Errorf("stdout %q, stderr %q", out, stderr.String())
	}
}
