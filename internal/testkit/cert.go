package testkit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CertOptions says what NewCert makes. The zero value is a P-256 server
// certificate for localhost and 127.0.0.1, valid from an hour ago for 90
// days, signed by a fresh test CA.
type CertOptions struct {
	// Names are DNS names (wildcards allowed) or IP addresses; the first
	// is also the subject's common name. Default: localhost, 127.0.0.1.
	Names []string
	// NotBefore and NotAfter bound the leaf. Default: an hour ago, and
	// 90 days from now (as an ACME certificate: clear of the suite's
	// expiry warning, 14 days by default). A NotAfter in the past makes an expired certificate;
	// NotBefore then defaults to a day before it. The CA is valid
	// throughout, so a client's error names the leaf.
	NotBefore, NotAfter time.Time
	// Key is the leaf's key type: "p256" (default), "p384", "rsa2048",
	// "ed25519".
	Key string
	// Intermediate signs the leaf by an intermediate CA (itself signed
	// by the root), served in the chain after the leaf.
	Intermediate bool
	// SelfSigned makes the leaf its own root: no CA key is generated,
	// the chain is the leaf alone and CAPEM is the leaf. Cheaper, and
	// what a test that only needs a trusted certificate wants.
	SelfSigned bool
}

// Cert is a generated certificate with its key and trust anchor.
type Cert struct {
	// PEM is what stunnel-imap reads: ChainPEM then KeyPEM.
	PEM []byte
	// ChainPEM is the leaf, then the intermediate if any (never the
	// root, which a server need not send).
	ChainPEM []byte
	// KeyPEM is the leaf's private key, PKCS#8 ("PRIVATE KEY").
	KeyPEM []byte
	// CAPEM is the root a client trusts (the leaf itself if SelfSigned).
	CAPEM []byte
	// Key is the leaf's private key.
	Key crypto.Signer
	// Leaf is the parsed leaf; Leaf.Raw is its DER.
	Leaf *x509.Certificate
	// CA is the parsed root; Intermediate the intermediate or nil.
	CA, Intermediate *x509.Certificate
}

// NewCert generates a certificate as o says, or fails the test.
func NewCert(t testing.TB, o CertOptions) *Cert {
	t.Helper()
	c, err := GenerateCert(o)
	if err != nil {
		t.Fatalf("testkit: unable to generate a certificate: %v", err)
	}
	return c
}

// GenerateCert is NewCert for code without a testing.TB (a test binary
// re-executed as a child process).
func GenerateCert(o CertOptions) (*Cert, error) {
	now := time.Now()
	if len(o.Names) == 0 {
		o.Names = []string{"localhost", "127.0.0.1"}
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(90 * 24 * time.Hour)
	}
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
		if !o.NotBefore.Before(o.NotAfter) {
			o.NotBefore = o.NotAfter.Add(-24 * time.Hour)
		}
	}
	if o.SelfSigned && o.Intermediate {
		return nil, fmt.Errorf("a self-signed certificate has no intermediate")
	}
	key, err := newKey(o.Key)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: o.Names[0]},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		leaf.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	for _, n := range o.Names {
		if ip := net.ParseIP(n); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, n)
		}
	}
	c := &Cert{Key: key}
	var chain [][]byte
	if o.SelfSigned {
		leaf.IsCA, leaf.BasicConstraintsValid = true, true
		leaf.KeyUsage |= x509.KeyUsageCertSign
		der, err := x509.CreateCertificate(rand.Reader, leaf, leaf, key.Public(), key)
		if err != nil {
			return nil, err
		}
		chain = [][]byte{der}
		if c.Leaf, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		c.CA = c.Leaf
	} else {
		// The CA outlives the leaf on both sides, and is valid now.
		from, until := earlier(o.NotBefore, now).Add(-time.Hour), later(o.NotAfter, now).Add(24*time.Hour)
		rootKey, err := newKey("p256")
		if err != nil {
			return nil, err
		}
		root, err := caCert("imap-tls test CA", from, until, rootKey, nil, nil)
		if err != nil {
			return nil, err
		}
		c.CA = root
		signer, signerKey := root, crypto.Signer(rootKey)
		if o.Intermediate {
			interKey, err := newKey("p256")
			if err != nil {
				return nil, err
			}
			if c.Intermediate, err = caCert("imap-tls test intermediate CA", from, until, interKey, root, rootKey); err != nil {
				return nil, err
			}
			signer, signerKey = c.Intermediate, interKey
		}
		der, err := x509.CreateCertificate(rand.Reader, leaf, signer, key.Public(), signerKey)
		if err != nil {
			return nil, err
		}
		if c.Leaf, err = x509.ParseCertificate(der); err != nil {
			return nil, err
		}
		chain = [][]byte{der}
		if c.Intermediate != nil {
			chain = append(chain, c.Intermediate.Raw)
		}
	}
	var b bytes.Buffer
	for _, der := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	c.ChainPEM = b.Bytes()
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	c.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	c.PEM = append(append([]byte{}, c.ChainPEM...), c.KeyPEM...)
	c.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.CA.Raw})
	return c, nil
}

func newKey(kind string) (crypto.Signer, error) {
	switch kind {
	case "", "p256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("unknown key type %q (want p256, p384, rsa2048 or ed25519)", kind)
}

// caCert makes a CA certificate for key, signed by parent (self-signed
// when parent is nil).
func caCert(name string, from, until time.Time, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             from,
		NotAfter:              until,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Write writes the chain and key to dir/base.pem (mode 0400, as a real
// key file; an existing file is replaced) and the root to
// dir/base-ca.crt (mode 0644; not .pem, so that a certificate folder
// read by name, stunnel-imap -d, never takes it for a certificate), and
// returns both paths.
func (c *Cert) Write(t testing.TB, dir, base string) (pemPath, caPath string) {
	t.Helper()
	pemPath = filepath.Join(dir, base+".pem")
	caPath = filepath.Join(dir, base+"-ca.crt")
	os.Remove(pemPath)
	if err := os.WriteFile(pemPath, c.PEM, 0o400); err != nil {
		t.Fatalf("testkit: unable to write %s: %v", pemPath, err)
	}
	os.Remove(caPath)
	if err := os.WriteFile(caPath, c.CAPEM, 0o644); err != nil {
		t.Fatalf("testkit: unable to write %s: %v", caPath, err)
	}
	return pemPath, caPath
}

// Pool returns a pool holding the root alone.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.CA)
	return p
}

// ClientConfig returns a client configuration that trusts the root alone
// and expects serverName.
func (c *Cert) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: c.Pool(), ServerName: serverName}
}

// ClientConfig returns a client configuration that trusts the
// certificates in caPEM (as read from a CA file) and expects serverName.
func ClientConfig(t testing.TB, caPEM []byte, serverName string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("testkit: no certificate in the CA PEM")
	}
	return &tls.Config{RootCAs: pool, ServerName: serverName}
}
