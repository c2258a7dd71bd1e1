package keyproto_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	. "imap-tls/internal/keyproto"
)

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

// TestFitChain: the chain frame's limits, which the certificate loader
// applies to every chain it loads; the encoder refuses the same chains.
func TestFitChain(t *testing.T) {
	der := func(n int) []byte { return bytes.Repeat([]byte{0x30}, n) }
	nine := make([][]byte, MaxCerts+1)
	for i := range nine {
		nine[i] = der(10)
	}
	for _, tc := range []struct {
		name  string
		chain [][]byte
		want  string // "" when it fits
	}{
		{"one", [][]byte{der(1000)}, ""},
		{"eight", nine[:MaxCerts], ""},
		{"exactly the frame", [][]byte{der(MaxChain - 3)}, ""},
		{"nine", nine, "chain of 9 certificates: the limit is 8"},
		{"a byte beyond the frame", [][]byte{der(MaxChain - 2)}, "certificate chain of 16385 bytes: the limit is 16384"},
		{"beyond a 2-byte length", [][]byte{der(0x10000)}, "certificate of 65536 bytes in the chain: the limit is 65535"},
		{"empty certificate", [][]byte{der(10), nil}, "empty certificate in the chain"},
	} {
		err := FitChain(tc.chain)
		if (tc.want == "" && err != nil) || (tc.want != "" && (err == nil || err.Error() != tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		_, eerr := EncodeReply(Reply{Type: TypeChain, Chain: tc.chain})
		if (err == nil) != (eerr == nil) {
			t.Errorf("%s: FitChain %v, but EncodeReply %v", tc.name, err, eerr)
		}
	}
}
