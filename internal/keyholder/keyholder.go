// Package keyholder is the key holder's end of the key protocol
// (package keyproto): the keys, the choice of one by the client's server
// name, and one session of the protocol, which gives a proxy its chain
// and one signature. The suite's two key holders run it:
// stunnel-imap-signer once per accepted connection, stunnel-imap-key
// once in its life. The proxy (stunnel-imap) never imports it: the code
// that signs with the private key is not linked into the program that
// talks to the network (internal/layout's test pins it).
package keyholder

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"imap-tls/internal/certfile"
	"imap-tls/internal/keyproto"
)

// Key is one certificate chain with its private key, held by the key
// holder only.
type Key struct {
	Cert tls.Certificate // Certificate (DER chain), PrivateKey, Leaf
}

// Keys is a key holder's set, in the order loaded; the first is the
// default, for clients that send no server name or one that no other
// covers.
type Keys []Key

// ParsePEM checks one PEM, a chain (leaf first) and its private key, as
// every certificate of the suite is checked (package certfile): they
// match, the chain fits one frame, the leaf is valid now.
func ParsePEM(data []byte) (Key, error) {
	c, err := certfile.Parse(data, "PEM")
	if err != nil {
		return Key{}, err
	}
	return Key{Cert: *c}, nil
}

// choose picks the key for an SNI name by the certificates' own names,
// as the proxy picks from a -d directory (certfile.Set.Index): the first
// after the default that covers the name, else the default.
func (ks Keys) choose(name string) *Key {
	s := make(certfile.Set, len(ks))
	for i := range ks {
		s[i] = &ks[i].Cert
	}
	return &ks[s.Index(name)]
}

// sign makes the one signature, refusing any request that does not fit
// the key: crypto/tls never asks for PSS with ECDSA, for a digest with
// Ed25519 (that would be Ed25519ph), or for a bare message with RSA.
func (k *Key) sign(req keyproto.Request) ([]byte, error) {
	var opts crypto.SignerOpts = req.Hash
	switch k.Cert.PrivateKey.(type) {
	case *rsa.PrivateKey:
		if req.Hash == 0 {
			return nil, errors.New("rsa key asked to sign without a hash")
		}
		if req.PSS {
			opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: req.Hash}
		}
	case *ecdsa.PrivateKey:
		if req.Hash == 0 || req.PSS {
			return nil, errors.New("ecdsa key asked for a signature it does not make")
		}
	case ed25519.PrivateKey:
		if req.Hash != 0 || req.PSS {
			return nil, errors.New("ed25519 key asked to sign a digest")
		}
	}
	return k.Cert.PrivateKey.(crypto.Signer).Sign(rand.Reader, req.Digest, opts)
}

// Serve answers one handshake's requests on r and w: it says it is
// ready, then answers the server name, then one signature. It returns
// nil after the signature is sent, or when the proxy leaves at any step,
// and an error for anything the protocol does not allow, after which the
// caller ends the session (the key process exits; the signer closes the
// connection).
func Serve(r io.Reader, w io.Writer, ks Keys) error {
	if len(ks) == 0 {
		return errors.New("no key")
	}
	if err := serve(r, w, ks); err != nil && !keyproto.Gone(err) {
		return err
	}
	return nil
}

func serve(r io.Reader, w io.Writer, ks Keys) error {
	send := func(rep keyproto.Reply, what string) error {
		f, err := keyproto.EncodeReply(rep)
		if err != nil {
			return err
		}
		if _, err := w.Write(f); err != nil {
			return fmt.Errorf("send %s: %w", what, err)
		}
		return nil
	}
	if err := send(keyproto.Reply{Type: keyproto.TypeReady}, "ready"); err != nil {
		return err
	}
	var buf [keyproto.MaxFrame]byte
	req, err := keyproto.ReadRequest(r, &buf)
	if err != nil {
		return err
	}
	if req.Type != keyproto.TypeName {
		return errors.New("sign request before the server name")
	}
	k := ks.choose(req.Name)
	if err := send(keyproto.Reply{Type: keyproto.TypeChain, Chain: k.Cert.Certificate}, "certificate chain"); err != nil {
		return err
	}

	if req, err = keyproto.ReadRequest(r, &buf); err != nil {
		return err
	}
	if req.Type != keyproto.TypeSign {
		return errors.New("second server name request")
	}
	sig, err := k.sign(req)
	if err != nil {
		send(keyproto.Reply{Type: keyproto.TypeError, Err: "signature refused"}, "error")
		return err
	}
	// One handshake needs one signature: nothing more is answered, and
	// the session ends.
	return send(keyproto.Reply{Type: keyproto.TypeSig, Sig: sig}, "signature")
}
