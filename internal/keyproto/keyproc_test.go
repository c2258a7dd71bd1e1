package keyproto

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

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
				k := genKey(t, kind)
				pc, kc := socketConns(t)
				done := serveAsync(kc, k.keys(t))
				c := NewClient(pc, testTimeout)
				st, serr, cerr := handshake(t, c, k.pool(t), "imap.example.test",
					&tls.Config{MinVersion: v, MaxVersion: v})
				if serr != nil || cerr != nil {
					t.Fatalf("handshake: server %v, client %v", serr, cerr)
				}
				if st.Version != v {
					t.Errorf("version %s, want %s", tls.VersionName(st.Version), tls.VersionName(v))
				}
				if !bytes.Equal(st.PeerCertificates[0].Raw, k.der) {
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
	k := genKey(t, "rsa")
	pc, kc := socketConns(t)
	done := serveAsync(kc, k.keys(t))
	c := NewClient(pc, testTimeout)
	_, serr, cerr := handshake(t, c, k.pool(t), "imap.example.test", &tls.Config{
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
	a := genKey(t, "ecdsa", "a.example.test")
	b := genKey(t, "ecdsa", "b.example.test", "*.b.example.test")
	c := genKey(t, "ecdsa", "c.example.test")
	ks := append(append(a.keys(t), b.keys(t)...), c.keys(t)...)
	for _, tc := range []struct {
		sni  string
		want *testKey
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
		if !bytes.Equal(k.Cert.Certificate[0], tc.want.der) {
			t.Errorf("choose(%q) picked %v", tc.sni, k.Cert.Leaf.DNSNames)
		}
	}
	// And through the protocol, with a real handshake.
	pc, kc := socketConns(t)
	done := serveAsync(kc, ks)
	cl := NewClient(pc, testTimeout)
	st, serr, cerr := handshake(t, cl, b.pool(t), "x.b.example.test", nil)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, b.der) {
		t.Error("wrong certificate served for SNI")
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func frame(t byte, p ...byte) []byte { return appendFrame(nil, t, p) }

// cat joins frames into a fresh slice: the table's cases share none.
func cat(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

func signFrame(h crypto.Hash, flags byte, n int) []byte {
	return appendFrame(nil, TypeSign, []byte{byte(h), flags}, make([]byte, n))
}

// TestServeRefuses feeds Serve what a compromised proxy might send.
func TestServeRefuses(t *testing.T) {
	name := frame(TypeName)
	for _, tc := range []struct {
		name string
		in   []byte
		want string // "" when Serve must end quietly
		sigs int    // signatures it may send
	}{
		{"eof at once", nil, "", 0},
		{"eof after name", name, "", 0},
		{"bad version", []byte{2, TypeName, 0, 0}, "unknown protocol version", 0},
		{"unknown type", []byte{1, 'X', 0, 0}, "unknown frame type", 0},
		{"reply type from proxy", []byte{1, TypeSig, 0, 1, 0}, "unknown frame type", 0},
		{"oversized name", []byte{1, TypeName, 1, 0}, "frame too long", 0},
		{"oversized sign", cat(name, []byte{1, TypeSign, 0xff, 0xff}), "frame too long", 0},
		{"truncated header", []byte{1, TypeName}, "unexpected EOF", 0},
		{"truncated payload", []byte{1, TypeName, 0, 9, 'a'}, "unexpected EOF", 0},
		{"name with slash", frame(TypeName, []byte("../etc")...), "malformed server name", 0},
		{"name with nul", frame(TypeName, 'a', 0), "malformed server name", 0},
		{"sign before name", signFrame(crypto.SHA256, 0, 32), "sign request before the server name", 0},
		{"second name", cat(name, name), "second server name request", 0},
		{"sha1", cat(name, signFrame(crypto.SHA1, 0, 20)), "unsupported hash", 0},
		{"md5", cat(name, signFrame(crypto.MD5, 0, 16)), "unsupported hash", 0},
		{"short digest", cat(name, signFrame(crypto.SHA256, 0, 31)), "digest length", 0},
		{"unknown flags", cat(name, signFrame(crypto.SHA256, 2, 32)), "unknown sign flags", 0},
		{"pss with ecdsa", cat(name, signFrame(crypto.SHA256, 1, 32)), "does not make", 0},
		{"message for ecdsa", cat(name, signFrame(0, 0, 100)), "does not make", 0},
		{"empty sign", cat(name, frame(TypeSign)), "malformed frame", 0},
		{"extra request after the signature", cat(name, signFrame(crypto.SHA256, 0, 32), signFrame(crypto.SHA256, 0, 32)), "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := genKey(t, "ecdsa")
			var out bytes.Buffer
			err := Serve(bytes.NewReader(tc.in), &out, k.keys(t))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Serve: %v, want a quiet end", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Serve: %v, want %q", err, tc.want)
			}
			if sigs := strings.Count(replyTypes(t, &out), string(rune(TypeSig))); sigs != tc.sigs {
				t.Errorf("%d signatures sent, want %d", sigs, tc.sigs)
			}
		})
	}
}

func TestClientRefusesBadReplies(t *testing.T) {
	k := genKey(t, "ecdsa")
	other := genKey(t, "ecdsa", "other.example.test")
	chain, _ := EncodeReply(Reply{Type: TypeChain, Chain: [][]byte{k.der}})
	ready := frame(TypeReady)
	for _, tc := range []struct {
		name  string
		first []byte // before the name request
		reply []byte // after it
		want  string
	}{
		{"nothing at all", nil, nil, "key process ended"},
		{"chain before ready", chain, nil, "unexpected frame (type C)"},
		{"ready with a payload", []byte{1, TypeReady, 0, 1, 0}, nil, "frame too long (type R)"},
		{"nothing after ready", ready, nil, "key process ended"},
		{"oversized chain", ready, []byte{1, TypeChain, 0xff, 0xff}, "frame too long"},
		{"chain with zero certificates", ready, frame(TypeChain, 0), "malformed frame"},
		{"chain with trailing bytes", ready, append(frame(TypeChain, 1, 0, 1, 0x30), 0), "malformed"},
		{"garbage certificate", ready, frame(TypeChain, 1, 0, 2, 1, 2), "bad certificate"},
		{"signature instead of chain", ready, frame(TypeSig, 1), "unexpected frame"},
		{"second ready", ready, ready, "unexpected frame"},
		{"error", ready, frame(TypeError, []byte("no")...), "refused"},
		{"bad version", ready, []byte{9, TypeChain, 0, 0}, "unknown protocol version"},
		{"chain then eof", ready, chain, "key process ended"},
		{"chain then oversized signature", ready, cat(chain, []byte{1, TypeSig, 0x04, 0x01}), "frame too long"},
		{"chain then a signature by another key", nil, nil, "bad signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, kc := socketConns(t)
			go func() {
				defer kc.Close()
				if tc.name == "chain then a signature by another key" {
					// A key process whose key does not match its chain.
					bad := Keys{{Cert: tls.Certificate{Certificate: [][]byte{k.der}, PrivateKey: other.priv}}}
					Serve(kc, kc, bad)
					return
				}
				if tc.first == nil {
					return
				}
				kc.Write(tc.first)
				var b [MaxFrame]byte
				if _, err := ReadRequest(kc, &b); err != nil || tc.reply == nil {
					return
				}
				kc.Write(tc.reply)
				ReadRequest(kc, &b) // the sign request, if any
			}()
			c := NewClient(pc, testTimeout)
			cert, err := c.Certificate("imap.example.test")
			if err == nil {
				_, err = cert.PrivateKey.(crypto.Signer).Sign(nil, make([]byte, 32), crypto.SHA256)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParsePEMRefuses(t *testing.T) {
	a := genKey(t, "ecdsa")
	b := genKey(t, "rsa")
	certOnly, _, _ := bytes.Cut(a.pem, []byte("-----BEGIN PRIVATE KEY"))
	i := bytes.Index(b.pem, []byte("-----BEGIN PRIVATE KEY"))
	mismatch := append(append([]byte(nil), certOnly...), b.pem[i:]...)
	for name, in := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("hello"),
		"no key":    certOnly,
		"key only":  b.pem[i:],
		"mismatch":  mismatch,
		"truncated": a.pem[:len(a.pem)/2],
	} {
		if _, err := ParsePEM(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParsePEM(a.pem); err != nil {
		t.Errorf("good pem: %v", err)
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "a": true, "imap.example.test": true, "x_y-z.test": true,
		".": false, "a..b": false, "a.": false, ".a": false, "../x": false, "a/b": false,
		"a b": false, "\x00": false, strings.Repeat("a", 254): false, strings.Repeat("a", 253): true,
	} {
		if ValidName(s) != want {
			t.Errorf("ValidName(%q) = %v", s, !want)
		}
	}
}

func TestFrameErrorNamesType(t *testing.T) {
	_, err := ParseRequest('X', nil)
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Error() != "unknown frame type (type X)" {
		t.Errorf("got %v", err)
	}
}

// TestClientKeyProcessGoneBeforeRequest: the key process said ready and
// left; the proxy's request meets a broken pipe, reported as the end.
func TestClientKeyProcessGoneBeforeRequest(t *testing.T) {
	pc, kc := socketConns(t)
	kc.Write(frame(TypeReady))
	kc.Close()
	c := NewClient(pc, testTimeout)
	if err := c.Ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certificate("imap.example.test"); err == nil || err.Error() != "key process ended" {
		t.Errorf("Certificate: %v, want key process ended", err)
	}
}

// TestParseRefusesBeyondLimits: the exported decoders check a payload
// handed to them directly as readFrame checks one read from the wire.
func TestParseRefusesBeyondLimits(t *testing.T) {
	long := func(n int) []byte { return bytes.Repeat([]byte{'a'}, n) }
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"request: name of 256 bytes", func() error { _, err := ParseRequest(TypeName, long(MaxName+1)); return err }(), "frame too long (type N)"},
		{"request: sign beyond its limit", func() error { _, err := ParseRequest(TypeSign, long(MaxSign+1)); return err }(), "frame too long (type S)"},
		{"request: a reply's type", func() error { _, err := ParseRequest(TypeChain, nil); return err }(), "unknown frame type (type C)"},
		{"reply: ready with a payload", func() error { _, err := ParseReply(TypeReady, long(1)); return err }(), "frame too long (type R)"},
		{"reply: signature beyond its limit", func() error { _, err := ParseReply(TypeSig, long(MaxSig+1)); return err }(), "frame too long (type G)"},
		{"reply: error beyond its limit", func() error { _, err := ParseReply(TypeError, long(MaxError+1)); return err }(), "frame too long (type E)"},
		{"reply: a request's type", func() error { _, err := ParseReply(TypeName, nil); return err }(), "unknown frame type (type N)"},
	} {
		var fe *FrameError
		if !errors.As(tc.err, &fe) || tc.err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, tc.err, tc.want)
		}
	}
}

// TestClientTimesOut: a key process that is alive but silent, or stops
// inside a frame, costs the proxy its timeout, not its connection's life.
func TestClientTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sent  []byte
		ready bool // the wait is for the chain, after ready
	}{
		{"silent", nil, false},
		{"half a header", []byte{Version, TypeReady}, false},
		{"half a chain", append(frame(TypeReady), Version, TypeChain, 0, 9, 1), true},
		{"no chain after ready", frame(TypeReady), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, kc := socketConns(t)
			kc.Write(tc.sent) // and kc stays open, unread
			c := NewClient(pc, 50*time.Millisecond)
			start := time.Now()
			err := c.Ready()
			if tc.ready {
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Certificate("")
			}
			if err == nil || !strings.Contains(err.Error(), "i/o timeout") {
				t.Errorf("got %v, want an i/o timeout", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v with a 50ms timeout", d)
			}
		})
	}
}
