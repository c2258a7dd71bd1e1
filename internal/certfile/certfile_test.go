package certfile_test

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"imap-tls/internal/certfile"
	"imap-tls/internal/certfile/certfiletest"
	"imap-tls/internal/testkit"
	"imap-tls/log"
)

// load runs the loader as the programs do for one option.
func load(t *testing.T, c certfiletest.Case) (certfile.Set, int, error) {
	t.Helper()
	switch c.Option {
	case "-p":
		cert, err := certfile.File(c.Arg)
		return certfile.Set{cert}, -1, err
	case "-P":
		fd := c.Descriptor(t)
		cert, err := certfile.Descriptor(fd, "")
		return certfile.Set{cert}, fd, err
	case "-d":
		s, err := certfile.Dir(c.Arg)
		return s, -1, err
	}
	t.Fatalf("unknown option %s", c.Option)
	return nil, 0, nil
}

// TestPolicy: every case of the shared table gives its exit status and
// its message, from a file, a descriptor and a directory.
func TestPolicy(t *testing.T) {
	for _, c := range certfiletest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			s, fd, err := load(t, c)
			if c.Code == 0 {
				if err != nil {
					t.Fatalf("%s %s: %v", c.Option, c.Arg, err)
				}
				for _, cert := range s {
					if cert.Leaf == nil || cert.PrivateKey == nil || len(cert.Certificate) == 0 {
						t.Errorf("incomplete certificate %+v", cert)
					}
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

// TestDescriptorClosed: the loader closes the descriptor it read, and
// one it could not parse too.
func TestDescriptorClosed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.pem")
	os.WriteFile(p, newPEM(t, "a.test"), 0o400)
	q := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(q, []byte("garbage"), 0o400)
	for _, path := range []string{p, q} {
		fd := certfiletest.Case{Arg: path}.Descriptor(t)
		certfile.Descriptor(fd, "")
		if _, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil {
			t.Errorf("%s: descriptor %d still open", path, fd)
		}
	}
}

// TestDirOrder: default.pem first, then the rest in file-name order,
// whatever order the directory lists them in.
func TestDirOrder(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"c", "a", "default", "b"} {
		os.WriteFile(filepath.Join(dir, n+".pem"), newPEM(t, n+".test"), 0o400)
	}
	s, err := certfile.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range s {
		got = append(got, c.Leaf.Subject.CommonName)
	}
	if strings.Join(got, " ") != "default.test a.test b.test c.test" {
		t.Errorf("order %v", got)
	}
}

// TestChoose: the shared SNI table, straight on the Set the proxy and
// the key process both choose from.
func TestChoose(t *testing.T) {
	dir, cases := certfiletest.SNIDir(t)
	s, err := certfile.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if got := s.Choose(c.SNI).Leaf.Subject.CommonName; got != c.Want {
			t.Errorf("Choose(%q) = %s, want %s", c.SNI, got, c.Want)
		}
	}
}

// TestReadWipes: the buffer the PEM was read into is zero once parsed,
// whether the PEM loaded or not, and across a buffer that had to grow.
func TestReadWipes(t *testing.T) {
	good := newPEM(t, "a.test")
	for name, in := range map[string][]byte{
		"good":      good,
		"bad":       []byte("garbage"),
		"large":     append(bytes.Repeat([]byte("#"), 200<<10), good...), // grows past 64 KiB
		"too large": bytes.Repeat([]byte("#"), certfile.MaxPEM+10),
	} {
		r := &recorder{r: bytes.NewReader(in)}
		certfile.Read(r, "x")
		if len(r.bufs) == 0 {
			t.Fatalf("%s: nothing read", name)
		}
		for i, b := range r.bufs {
			for _, c := range b {
				if c != 0 {
					t.Errorf("%s: buffer %d of %d not wiped", name, i, len(r.bufs))
					break
				}
			}
		}
	}
}

// recorder keeps every slice it was asked to read into.
type recorder struct {
	r    *bytes.Reader
	bufs [][]byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.bufs = append(r.bufs, p[:n])
	return n, err
}

// TestParse: what Parse returns is what crypto/tls loads, with the leaf
// parsed, for each key type a handshake signs with and for a chain with
// an intermediate.
func TestParse(t *testing.T) {
	for _, o := range []testkit.CertOptions{
		{Key: "p256"}, {Key: "p384"}, {Key: "rsa2048"}, {Key: "ed25519"}, {Intermediate: true},
	} {
		c := testkit.NewCert(t, o)
		got, err := certfile.Parse(c.PEM, "a.pem")
		if err != nil {
			t.Errorf("%+v: %v", o, err)
			continue
		}
		want, err := tls.X509KeyPair(c.PEM, c.PEM)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Certificate) != len(want.Certificate) || !bytes.Equal(bytes.Join(got.Certificate, nil), bytes.Join(want.Certificate, nil)) ||
			!got.Leaf.Equal(c.Leaf) || !c.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(got.PrivateKey.(crypto.Signer).Public()) {
			t.Errorf("%+v: Parse gave another certificate or key", o)
		}
	}
}

// newPEM is a self-signed certificate for name, valid now.
func newPEM(t *testing.T, name string) []byte {
	return testkit.NewCert(t, testkit.CertOptions{Names: []string{name}, SelfSigned: true}).PEM
}

// TestDescriptorOption: a key holder's -P value, "fd" or "fd:name"; the
// name only ever names the file in messages (DescriptorName).
func TestDescriptorOption(t *testing.T) {
	for _, tc := range []struct {
		v, name, msg, err string
		fd                int
	}{
		{v: "3", fd: 3, msg: "descriptor 3"},
		{v: "3:/etc/imap-tls/ssl/stunnel.pem", fd: 3, name: "/etc/imap-tls/ssl/stunnel.pem", msg: "/etc/imap-tls/ssl/stunnel.pem"},
		{v: "5:a:b", fd: 5, name: "a:b", msg: "a:b"},
		{v: "3:", err: "no file name after the colon"},
		{v: "x:/a", err: "not a descriptor number from 0 to 1048575"},
		{v: "-1", err: "not a descriptor number from 0 to 1048575"},
	} {
		fd, name := -1, "unset"
		err := certfile.DescriptorOption(tc.v, &fd, &name)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: %v, want %q", tc.v, err, tc.err)
			}
			continue
		}
		if err != nil || fd != tc.fd || name != tc.name || certfile.DescriptorName(fd, name) != tc.msg {
			t.Errorf("%q: fd %d name %q (%v), named %q; want %d %q, %q", tc.v, fd, name, err, certfile.DescriptorName(fd, name), tc.fd, tc.name, tc.msg)
		}
	}
}

// TestCheckChain: the warning about a missing intermediate says when
// appending one applies (the file cannot tell whether the leaf's issuer
// is an intermediate or a root the clients trust), and is not given when
// the issuer is in the file (an intermediate, or the root itself) or the
// leaf is self-signed.
func TestCheckChain(t *testing.T) {
	byRoot := testkit.NewCert(t, testkit.CertOptions{})
	byInter := testkit.NewCert(t, testkit.CertOptions{Intermediate: true})
	self := testkit.NewCert(t, testkit.CertOptions{SelfSigned: true})
	leafOnly := func(c *testkit.Cert) []byte {
		return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw}), c.KeyPEM...)
	}
	const warn = "warning: no intermediate certificate after the leaf: if its issuer (CN=imap-tls test CA) is an intermediate, as with every public CA, append it (certbot: fullchain.pem, not cert.pem), or clients that do not already hold it refuse the chain; a leaf issued directly by a root the clients trust (a private CA) needs none"
	for _, tc := range []struct {
		name string
		pem  []byte
		want string // a finding, or "" for none that names an intermediate
	}{
		{"a leaf issued by a root, alone", byRoot.PEM, warn},
		{"a leaf issued by a root, the root appended", bytes.Join([][]byte{byRoot.ChainPEM, byRoot.CAPEM, byRoot.KeyPEM}, nil), "ok: certificate 2 (root): subject CN=imap-tls test CA"},
		{"a leaf and its intermediate", byInter.PEM, "ok: certificate 2 (intermediate): subject CN=imap-tls test intermediate CA"},
		{"a leaf without its intermediate", leafOnly(byInter), strings.ReplaceAll(warn, "CN=imap-tls test CA", "CN=imap-tls test intermediate CA")},
		{"self-signed", self.PEM, "ok: the leaf is self-signed: clients must trust it as it is"},
	} {
		findings, err := certfile.Check(bytes.NewReader(tc.pem), "a.pem", 14, time.Now())
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		found, warned := false, false
		for _, f := range findings {
			found = found || strings.HasPrefix(f.String(), tc.want)
			warned = warned || (f.Kind == "warning" && strings.Contains(f.Text, "intermediate"))
		}
		if !found || (warned != (tc.want == warn || strings.HasPrefix(tc.want, "warning:"))) {
			t.Errorf("%s: findings %q, want %q and an intermediate warning only with it", tc.name, findings, tc.want)
		}
	}
}

// TestValid: the policy's clock, as the signer asks it of a certificate
// it keeps loaded: the moment after NotAfter it is refused, in Parse's
// words.
func TestValid(t *testing.T) {
	c := testkit.NewCert(t, testkit.CertOptions{SelfSigned: true})
	var le *log.Error
	if err := certfile.Valid(c.Leaf, "a.pem", c.Leaf.NotAfter); err != nil {
		t.Errorf("at NotAfter: %v", err)
	}
	err := certfile.Valid(c.Leaf, "a.pem", c.Leaf.NotAfter.Add(time.Second))
	if want := "certificate a.pem expired on " + c.Leaf.NotAfter.UTC().Format(time.DateOnly); err == nil || err.Error() != want || !errors.As(err, &le) || le.Code != log.ExitUsage {
		t.Errorf("after NotAfter: %v, want %q (100)", err, want)
	}
	err = certfile.Valid(c.Leaf, "", c.Leaf.NotBefore.Add(-time.Second))
	if err == nil || !strings.HasPrefix(err.Error(), "certificate ") || !strings.Contains(err.Error(), "is not valid before") {
		t.Errorf("before NotBefore: %v", err)
	}
}
