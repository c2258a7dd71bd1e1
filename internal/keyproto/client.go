package keyproto

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Client is the proxy's end of the channel. It asks for one certificate
// chain and one signature, never more, which is all one handshake needs.
// It deliberately implements crypto.Signer and not crypto.Decrypter, so
// crypto/tls never picks an RSA key-exchange suite (it requires a
// Decrypter for those), and the key holder is never a decryption oracle.
//
// Its errors still say "key process" whichever key holder answers: they
// reach the proxy's log, whose wording is the proxy's to change.
type Client struct {
	conn    net.Conn
	timeout time.Duration

	mu     sync.Mutex
	ready  bool
	cert   *tls.Certificate
	signed bool
	buf    [MaxFrame]byte
}

// NewClient returns a Client on conn, with timeout for each exchange (the
// proxy gives its -T: a hang guard, not a performance figure).
func NewClient(conn net.Conn, timeout time.Duration) *Client {
	return &Client{conn: conn, timeout: timeout}
}

// FileClient returns a Client on descriptor fd (stunnel-imap -K fd),
// which it takes over: call it before the seccomp filter is installed.
func FileClient(fd int, timeout time.Duration) (*Client, error) {
	f := os.NewFile(uintptr(fd), "key holder")
	if f == nil {
		return nil, fmt.Errorf("bad descriptor %d", fd)
	}
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return NewClient(conn, timeout), nil
}

// Ready waits for the key holder to say that every key is loaded and
// checked. Call it at start, before the first byte to the client, to
// fail early; Certificate calls it too.
func (c *Client) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitReady()
}

func (c *Client) waitReady() error {
	if c.ready {
		return nil
	}
	rep, err := c.exchange(nil)
	if err != nil {
		return err
	}
	if rep.Type != TypeReady {
		return unexpected(rep)
	}
	c.ready = true
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *Client) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.Certificate(hello.ServerName)
}

// Certificate asks the key holder for the chain to serve for an SNI
// name ("" for the default) and returns it with a signer as its
// PrivateKey. Only the first call asks; later ones return the same
// certificate, whatever the name.
func (c *Client) Certificate(name string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil {
		return c.cert, nil
	}
	if err := c.waitReady(); err != nil {
		return nil, err
	}
	if !ValidName(name) {
		name = "" // crypto/tls checks little; an odd name gets the default
	}
	f, err := EncodeRequest(Request{Type: TypeName, Name: name})
	if err != nil {
		return nil, err
	}
	rep, err := c.exchange(f)
	if err != nil {
		return nil, err
	}
	if rep.Type != TypeChain {
		return nil, unexpected(rep)
	}
	cert := &tls.Certificate{}
	for _, der := range rep.Chain {
		cert.Certificate = append(cert.Certificate, append([]byte(nil), der...))
	}
	cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("key holder sent a bad certificate: %w", err)
	}
	switch cert.Leaf.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported public key type %T", cert.Leaf.PublicKey)
	}
	cert.PrivateKey = &signer{c: c, pub: cert.Leaf.PublicKey}
	c.cert = cert
	return cert, nil
}

// exchange sends one frame (none if f is nil) and reads one reply under
// the deadline.
func (c *Client) exchange(f []byte) (Reply, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	defer c.conn.SetDeadline(time.Time{})
	var err error
	if f != nil {
		_, err = c.conn.Write(f)
	}
	var rep Reply
	if err == nil {
		rep, err = ReadReply(c.conn, &c.buf)
	}
	if Gone(err) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Reply{}, errors.New("key holder ended")
	}
	if err != nil {
		return Reply{}, fmt.Errorf("key process: %w", err)
	}
	return rep, nil
}

func unexpected(rep Reply) error {
	if rep.Type == TypeError {
		return fmt.Errorf("key holder refused: %q", rep.Err)
	}
	return fmt.Errorf("key holder sent an unexpected frame (type %c)", rep.Type)
}

// signer is the crypto.Signer crypto/tls sees as the private key.
type signer struct {
	c   *Client
	pub crypto.PublicKey
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign asks the key holder for the signature, once, and checks it
// against the public key before crypto/tls sends it.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signed {
		return nil, errors.New("key process already signed for this connection")
	}
	c.signed = true
	defer c.conn.Close() // the key holder ends the session after one signature

	req := Request{Type: TypeSign, Hash: opts.HashFunc(), Digest: digest}
	if p, ok := opts.(*rsa.PSSOptions); ok {
		if p.SaltLength != rsa.PSSSaltLengthEqualsHash && p.SaltLength != req.Hash.Size() {
			return nil, errors.New("rsa-pss salt length other than the hash length")
		}
		req.PSS = true
	}
	f, err := EncodeRequest(req)
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	rep, err := c.exchange(f)
	if err != nil {
		return nil, err
	}
	if rep.Type != TypeSig {
		return nil, unexpected(rep)
	}
	sig := append([]byte(nil), rep.Sig...)
	if err := verify(s.pub, req, sig); err != nil {
		return nil, fmt.Errorf("key holder sent a bad signature: %w", err)
	}
	return sig, nil
}

func verify(pub crypto.PublicKey, req Request, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if req.PSS {
			return rsa.VerifyPSS(k, req.Hash, req.Digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(k, req.Hash, req.Digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, req.Digest, sig) {
			return errors.New("verification error")
		}
		return nil
	case ed25519.PublicKey:
		if req.Hash != 0 || !ed25519.Verify(k, req.Digest, sig) {
			return errors.New("verification error")
		}
		return nil
	}
	return fmt.Errorf("unsupported public key type %T", pub)
}
