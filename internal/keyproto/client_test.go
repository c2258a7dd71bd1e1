package keyproto_test

import (
	"crypto"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	. "imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
)

// The Client against a key holder that breaks the protocol. A Client
// against the real key holder's end is tested with it, in
// internal/keyholder, and through the programs in stunnel-imap-key.

func TestClientRefusesBadReplies(t *testing.T) {
	k := kt.GenKey(t, "ecdsa")
	other := kt.GenKey(t, "ecdsa", "other.example.test")
	chain, _ := EncodeReply(Reply{Type: TypeChain, Chain: [][]byte{k.DER}})
	ready := kt.Frame(TypeReady)
	for _, tc := range []struct {
		name  string
		first []byte // before the name request
		reply []byte // after it
		want  string
	}{
		{"nothing at all", nil, nil, "key holder ended"},
		{"chain before ready", chain, nil, "unexpected frame (type C)"},
		{"ready with a payload", []byte{1, TypeReady, 0, 1, 0}, nil, "frame too long (type R)"},
		{"nothing after ready", ready, nil, "key holder ended"},
		{"oversized chain", ready, []byte{1, TypeChain, 0xff, 0xff}, "frame too long"},
		{"chain with zero certificates", ready, kt.Frame(TypeChain, 0), "malformed frame"},
		{"chain with trailing bytes", ready, append(kt.Frame(TypeChain, 1, 0, 1, 0x30), 0), "malformed"},
		{"garbage certificate", ready, kt.Frame(TypeChain, 1, 0, 2, 1, 2), "bad certificate"},
		{"signature instead of chain", ready, kt.Frame(TypeSig, 1), "unexpected frame"},
		{"second ready", ready, ready, "unexpected frame"},
		{"error", ready, kt.Frame(TypeError, []byte("no")...), "refused"},
		{"bad version", ready, []byte{9, TypeChain, 0, 0}, "unknown protocol version"},
		{"chain then eof", ready, chain, "key holder ended"},
		{"chain then oversized signature", ready, kt.Cat(chain, []byte{1, TypeSig, 0x04, 0x01}), "frame too long"},
		{"chain then a signature by another key", ready, chain, "bad signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, kc := kt.SocketConns(t)
			go func() {
				defer kc.Close()
				if tc.first == nil {
					return
				}
				kc.Write(tc.first)
				var b [MaxFrame]byte
				if _, err := ReadRequest(kc, &b); err != nil || tc.reply == nil {
					return
				}
				kc.Write(tc.reply)
				req, err := ReadRequest(kc, &b) // the sign request, if any
				if err == nil && tc.name == "chain then a signature by another key" {
					// A key holder whose key does not match its chain.
					sig, err := other.Priv.Sign(rand.Reader, req.Digest, req.Hash)
					if err != nil {
						t.Error(err)
						return
					}
					f, _ := EncodeReply(Reply{Type: TypeSig, Sig: sig})
					kc.Write(f)
				}
			}()
			c := NewClient(pc, kt.Timeout)
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

// TestClientKeyProcessGoneBeforeRequest: the key holder said ready and
// left; the proxy's request meets a broken pipe, reported as the end.
func TestClientKeyProcessGoneBeforeRequest(t *testing.T) {
	pc, kc := kt.SocketConns(t)
	kc.Write(kt.Frame(TypeReady))
	kc.Close()
	c := NewClient(pc, kt.Timeout)
	if err := c.Ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Certificate("imap.example.test"); err == nil || err.Error() != "key holder ended" {
		t.Errorf("Certificate: %v, want key holder ended", err)
	}
}

// TestClientTimesOut: a key holder that is alive but silent, or stops
// inside a frame, costs the proxy its timeout, not its connection's life.
func TestClientTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sent  []byte
		ready bool // the wait is for the chain, after ready
	}{
		{"silent", nil, false},
		{"half a header", []byte{Version, TypeReady}, false},
		{"half a chain", append(kt.Frame(TypeReady), Version, TypeChain, 0, 9, 1), true},
		{"no chain after ready", kt.Frame(TypeReady), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc, kc := kt.SocketConns(t)
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
