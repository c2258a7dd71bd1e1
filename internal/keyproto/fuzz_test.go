package keyproto_test

import (
	"bytes"
	"crypto"
	"io"
	"testing"

	. "imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
)

// consumed reports how many bytes of data the reader has taken.
func consumed(data []byte, r *bytes.Reader) int { return len(data) - r.Len() }

// FuzzReadRequest is the key holder's decoder: whatever the proxy
// sends, no panic, no frame beyond its limit, and every frame it accepts
// encodes back to exactly the bytes it came from.
func FuzzReadRequest(f *testing.F) {
	f.Add(kt.Cat(kt.Frame(TypeName, []byte("imap.example.test")...), kt.SignFrame(crypto.SHA256, 0, 32)))
	f.Add(kt.Cat(kt.Frame(TypeName), kt.SignFrame(crypto.SHA384, FlagPSS, 48)))
	f.Add(kt.Cat(kt.Frame(TypeName), kt.SignFrame(0, 0, 146)))
	f.Add([]byte{1, TypeSign, 0xff, 0xff})
	f.Add([]byte{2, TypeName, 0, 0})
	f.Add([]byte{1, TypeName, 0, 3, '.', '.', '/'})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, ReadRequest, EncodeRequest, func(in []byte, req Request) {
			if len(in) > HeaderLen+MaxRequest(req.Type) {
				t.Fatalf("accepted a %d-byte frame of type %c", len(in), req.Type)
			}
		})
	})
}

// FuzzReadReply is the proxy's decoder, for a key holder gone wrong.
func FuzzReadReply(f *testing.F) {
	f.Add(kt.Cat(kt.Frame(TypeReady), kt.Frame(TypeChain, 1, 0, 3, 0x30, 0x01, 0x00), kt.Frame(TypeSig, 1, 2, 3)))
	f.Add([]byte{1, TypeReady, 0, 1, 0})
	f.Add(kt.Cat(kt.Frame(TypeChain, 2, 0, 1, 0x30, 0, 1, 0x31)))
	f.Add(kt.Frame(TypeError, []byte("signature refused")...))
	f.Add([]byte{1, TypeChain, 0xff, 0xff})
	f.Add([]byte{1, TypeChain, 0, 1, 9})
	f.Add([]byte{1, TypeSig, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, data, ReadReply, EncodeReply, func(_ []byte, rep Reply) {
			if rep.Type == TypeChain && (len(rep.Chain) < 1 || len(rep.Chain) > MaxCerts) {
				t.Fatalf("accepted a chain of %d certificates", len(rep.Chain))
			}
		})
	})
}

// roundTrip decodes up to 16 frames from data with read, stopping at the
// first error, checks each with check, and requires that encode gives
// back exactly the bytes each came from.
func roundTrip[T any](t *testing.T, data []byte,
	read func(io.Reader, *[MaxFrame]byte) (T, error), encode func(T) ([]byte, error), check func(in []byte, v T)) {
	t.Helper()
	r := bytes.NewReader(data)
	var buf [MaxFrame]byte
	for i := 0; i < 16; i++ {
		start := consumed(data, r)
		v, err := read(r, &buf)
		if err != nil {
			return
		}
		in := data[start:consumed(data, r)]
		check(in, v)
		out, err := encode(v)
		if err != nil {
			t.Fatalf("accepted %x but cannot encode it: %v", in, err)
		}
		if !bytes.Equal(in, out) {
			t.Fatalf("round trip: %x became %x", in, out)
		}
	}
}
