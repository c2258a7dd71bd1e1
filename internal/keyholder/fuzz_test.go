package keyholder

import (
	"bytes"
	"crypto"
	"sync"
	"testing"

	"imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
)

var (
	fuzzKeyOnce sync.Once
	fuzzKeys    Keys
)

// FuzzServe drives the whole key holder's session: whatever arrives, it
// answers with well-formed frames, at most one chain, at most one
// signature, and the chain first.
func FuzzServe(f *testing.F) {
	name := kt.Frame(keyproto.TypeName)
	f.Add(kt.Cat(name, kt.SignFrame(crypto.SHA256, 0, 32)))
	f.Add(kt.Cat(name, name))
	f.Add(kt.Cat(kt.SignFrame(crypto.SHA256, 0, 32)))
	f.Add(kt.Cat(name, kt.SignFrame(crypto.SHA256, 0, 32), kt.SignFrame(crypto.SHA256, 0, 32)))
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzKeyOnce.Do(func() { fuzzKeys = keys(t, kt.GenKey(t, "ecdsa")) })
		var out bytes.Buffer
		Serve(bytes.NewReader(data), &out, fuzzKeys)
		switch types := kt.ReplyTypes(t, &out); types {
		case "R", "RC", "RCG", "RCE":
		default:
			t.Fatalf("Serve answered %q", types)
		}
	})
}
