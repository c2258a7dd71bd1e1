package main

import (
	"crypto/tls"

	"imap-tls/internal/certfile"
	"imap-tls/internal/keyproto"
	"imap-tls/log"
)

// certSource yields the certificate for one handshake, from
// tls.Config.GetCertificate. This is the one seam through which the proxy
// gets its certificate: the PrivateKey of what it returns is any
// crypto.Signer, a key parsed from PEM here, or (keySource, -K) a signer
// that asks the key process, so that the proxy never holds the key.
type certSource interface {
	certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// staticSource serves one certificate (-p, -P), read when the process
// starts: the process lives for one connection, so a renewed file takes
// effect at the next connection.
type staticSource struct{ cert *tls.Certificate }

func (s staticSource) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

// setSource serves a certificate directory (-d) by SNI: every file is
// read and checked at start, before the lock-down (which forbids opening
// files), and the certificate is chosen by its own names, as the key
// process chooses (certfile.Set).
type setSource struct{ set certfile.Set }

func (s setSource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.set.Choose(hello.ServerName), nil
}

// openCertSource loads the certificate the options name, through the one
// loader the key process uses too (package certfile): one policy, one
// exit status per failure.
func openCertSource(o *options) (certSource, error) {
	switch {
	case o.pemFile != "":
		c, err := certfile.File(o.pemFile)
		if err != nil {
			return nil, err
		}
		return staticSource{c}, nil
	case o.pemFD >= 0:
		c, err := certfile.Descriptor(o.pemFD, "")
		if err != nil {
			return nil, err
		}
		return staticSource{c}, nil
	case o.certDir != "":
		set, err := certfile.Dir(o.certDir)
		if err != nil {
			return nil, err
		}
		return setSource{set}, nil
	default:
		return openKeySource(o)
	}
}

// keySource (-K fd) gets each certificate from the key process on fd
// (package keyproto): the chain for the client's server name, and a
// crypto.Signer that asks the key process for the one signature a
// handshake needs. The private key never enters this process.
type keySource struct{ c *keyproto.Client }

func (k keySource) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.c.GetCertificate(hello)
}

// ready waits for the key process's ready frame: a key process that
// could not load its key ends this one before a byte reaches the client.
// The session calls it (config.ready) while the IMAP server is starting,
// not here, so that the two start-ups overlap.
func (k keySource) ready() error { return k.c.Ready() }

func openKeySource(o *options) (certSource, error) {
	c, err := keyproto.FileClient(o.keyFD, o.handshakeTimeout)
	if err != nil {
		return nil, log.Temp(err, "use descriptor %d for the key holder", o.keyFD)
	}
	return keySource{c}, nil
}
