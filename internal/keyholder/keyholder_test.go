package keyholder

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
)

// keys is k as a key holder's set, through the one loader.
func keys(t testing.TB, k *kt.Key) Keys {
	t.Helper()
	key, err := ParsePEM(k.PEM)
	if err != nil {
		t.Fatal(err)
	}
	return Keys{key}
}

// serveAsync runs Serve on conn with ks and returns its result channel.
func serveAsync(conn net.Conn, ks Keys) chan error {
	done := make(chan error, 1)
	go func() {
		err := Serve(conn, conn, ks)
		conn.Close()
		done <- err
	}()
	return done
}

func TestHandshakeWithKeyProcessSigner(t *testing.T) {
	for _, kind := range []string{"rsa", "ecdsa", "ed25519"} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			name := kind + "/" + tls.VersionName(v)
			t.Run(name, func(t *testing.T) {
				k := kt.GenKey(t, kind)
				pc, kc := kt.SocketConns(t)
				done := serveAsync(kc, keys(t, k))
				c := keyproto.NewClient(pc, kt.Timeout)
				st, serr, cerr := kt.Handshake(t, c, k.Pool(), "imap.example.test",
					&tls.Config{MinVersion: v, MaxVersion: v})
				if serr != nil || cerr != nil {
					t.Fatalf("handshake: server %v, client %v", serr, cerr)
				}
				if st.Version != v {
					t.Errorf("version %s, want %s", tls.VersionName(st.Version), tls.VersionName(v))
				}
				if !bytes.Equal(st.PeerCertificates[0].Raw, k.DER) {
					t.Error("client saw another certificate")
				}
				if err := <-done; err != nil {
					t.Errorf("key side: %v", err)
				}
				// The signer is not a Decrypter: no RSA key exchange.
				cert, _ := c.Certificate("")
				if _, ok := cert.PrivateKey.(crypto.Decrypter); ok {
					t.Error("signer implements crypto.Decrypter")
				}
				// A second signature is refused by the proxy's side too.
				_, err := cert.PrivateKey.(crypto.Signer).Sign(nil, make([]byte, 32), crypto.SHA256)
				if err == nil || !strings.Contains(err.Error(), "already signed") {
					t.Errorf("second Sign: %v", err)
				}
			})
		}
	}
}

func TestRSAKeyExchangeNeverOffered(t *testing.T) {
	k := kt.GenKey(t, "rsa")
	pc, kc := kt.SocketConns(t)
	done := serveAsync(kc, keys(t, k))
	c := keyproto.NewClient(pc, kt.Timeout)
	_, serr, cerr := kt.Handshake(t, c, k.Pool(), "imap.example.test", &tls.Config{
		MaxVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384},
	})
	if serr == nil || cerr == nil {
		t.Fatalf("a client offering only RSA key exchange got a session (server %v, client %v)", serr, cerr)
	}
	pc.Close() // the key process exits on its end of file
	if err := <-done; err != nil {
		t.Errorf("key side: %v", err)
	}
}

func TestSNIPicksTheNamedCertificate(t *testing.T) {
	a := kt.GenKey(t, "ecdsa", "a.example.test")
	b := kt.GenKey(t, "ecdsa", "b.example.test", "*.b.example.test")
	c := kt.GenKey(t, "ecdsa", "c.example.test")
	ks := append(append(keys(t, a), keys(t, b)...), keys(t, c)...)
	for _, tc := range []struct {
		sni  string
		want *kt.Key
	}{
		{"b.example.test", b},
		{"x.b.example.test", b},
		{"B.EXAMPLE.TEST", b},
		{"c.example.test", c},
		{"C.Example.Test", c},
		{"", a},
		{"a.example.test", a},
		{"y.x.b.example.test", a}, // a wildcard is one label
		{"other.test", a},
	} {
		k := ks.choose(tc.sni)
		if !bytes.Equal(k.Cert.Certificate[0], tc.want.DER) {
			t.Errorf("choose(%q) picked %v", tc.sni, k.Cert.Leaf.DNSNames)
		}
	}
	// And through the protocol, with a real handshake.
	pc, kc := kt.SocketConns(t)
	done := serveAsync(kc, ks)
	cl := keyproto.NewClient(pc, kt.Timeout)
	st, serr, cerr := kt.Handshake(t, cl, b.Pool(), "x.b.example.test", nil)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, b.DER) {
		t.Error("wrong certificate served for SNI")
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// TestServeRefuses feeds Serve what a compromised proxy might send.
func TestServeRefuses(t *testing.T) {
	name := kt.Frame(keyproto.TypeName)
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" when Serve must end quietly
		sigs int    // signatures it may send
	}{
		{"eof at once", nil, "", 0},
		{"eof after name", name, "", 0},
		{"bad version", []byte{2, keyproto.TypeName, 0, 0}, "unknown protocol version", 0},
		{"unknown type", []byte{1, 'X', 0, 0}, "unknown frame type", 0},
		{"reply type from proxy", []byte{1, keyproto.TypeSig, 0, 1, 0}, "unknown frame type", 0},
		{"oversized name", []byte{1, keyproto.TypeName, 1, 0}, "frame too long", 0},
		{"oversized sign", kt.Cat(name, []byte{1, keyproto.TypeSign, 0xff, 0xff}), "frame too long", 0},
		{"truncated header", []byte{1, keyproto.TypeName}, "unexpected EOF", 0},
		{"truncated payload", []byte{1, keyproto.TypeName, 0, 9, 'a'}, "unexpected EOF", 0},
		{"name with slash", kt.Frame(keyproto.TypeName, []byte("../etc")...), "malformed server name", 0},
		{"name with nul", kt.Frame(keyproto.TypeName, 'a', 0), "malformed server name", 0},
		{"sign before name", kt.SignFrame(crypto.SHA256, 0, 32), "sign request before the server name", 0},
		{"second name", kt.Cat(name, name), "second server name request", 0},
		{"sha1", kt.Cat(name, kt.SignFrame(crypto.SHA1, 0, 20)), "unsupported hash", 0},
		{"md5", kt.Cat(name, kt.SignFrame(crypto.MD5, 0, 16)), "unsupported hash", 0},
		{"short digest", kt.Cat(name, kt.SignFrame(crypto.SHA256, 0, 31)), "digest length", 0},
		{"unknown flags", kt.Cat(name, kt.SignFrame(crypto.SHA256, 2, 32)), "unknown sign flags", 0},
		{"pss with ecdsa", kt.Cat(name, kt.SignFrame(crypto.SHA256, 1, 32)), "does not make", 0},
		{"message for ecdsa", kt.Cat(name, kt.SignFrame(0, 0, 100)), "does not make", 0},
		{"empty sign", kt.Cat(name, kt.Frame(keyproto.TypeSign)), "malformed frame", 0},
		{"extra request after the signature", kt.Cat(name, kt.SignFrame(crypto.SHA256, 0, 32), kt.SignFrame(crypto.SHA256, 0, 32)), "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := kt.GenKey(t, "ecdsa")
			var out bytes.Buffer
			err := Serve(bytes.NewReader(tc.in), &out, keys(t, k))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Serve: %v, want a quiet end", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Serve: %v, want %q", err, tc.want)
			}
			if sigs := strings.Count(kt.ReplyTypes(t, &out), string(rune(keyproto.TypeSig))); sigs != tc.sigs {
				t.Errorf("%d signatures sent, want %d", sigs, tc.sigs)
			}
		})
	}
}

func TestParsePEMRefuses(t *testing.T) {
	a := kt.GenKey(t, "ecdsa")
	b := kt.GenKey(t, "rsa")
	certOnly, _, _ := bytes.Cut(a.PEM, []byte("-----BEGIN PRIVATE KEY"))
	i := bytes.Index(b.PEM, []byte("-----BEGIN PRIVATE KEY"))
	mismatch := append(append([]byte(nil), certOnly...), b.PEM[i:]...)
	for name, in := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("hello"),
		"no key":    certOnly,
		"key only":  b.PEM[i:],
		"mismatch":  mismatch,
		"truncated": a.PEM[:len(a.PEM)/2],
	} {
		if _, err := ParsePEM(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParsePEM(a.PEM); err != nil {
		t.Errorf("good pem: %v", err)
	}
}
