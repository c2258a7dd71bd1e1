package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// read feeds in to Need the way a reader of a socket does, one Need at a
// time, and returns the header bytes it read and the error; it never
// reads past what Need asked for.
func read(in []byte) ([]byte, error) {
	var b []byte
	for {
		n, err := Need(b)
		if err != nil {
			return b, err
		}
		if n == len(b) {
			return b, nil
		}
		if n < len(b) {
			panic("Need asked for fewer bytes than it has")
		}
		if n > len(in) {
			return b, errors.New("short")
		}
		b = in[:n]
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestV2RoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Version: 2, Src: ap("192.0.2.7:40000"), Dst: ap("198.51.100.1:143")},
		{Version: 2, Src: ap("[2001:db8::7]:40000"), Dst: ap("[::1]:993"),
			TLVs: []TLV{SSL(ClientSSL, 1, TLV{SubtypeSSLVersion, []byte("TLSv1.3")}), {TypeAuthority, []byte("imap.example")}}},
		{Version: 2, Local: true},
	} {
		b, err := AppendV2(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		got, err := read(append(b, "a LOGIN x y\r\n"...))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("read %q, %v; want %q", got, err, b)
		}
		p, err := Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if h.Local {
			h.TLVs = nil
		}
		if !reflect.DeepEqual(p, h) {
			t.Errorf("parsed %+v, want %+v", p, h)
		}
	}
}

func TestV2Bytes(t *testing.T) {
	b, _ := AppendV2(nil, Header{Src: ap("127.0.0.5:1234"), Dst: ap("127.0.0.1:143"),
		TLVs: []TLV{SSL(ClientSSL, 1)}})
	want := append([]byte(nil), Signature...)
	want = append(want, 0x21, 0x11, 0, 12+8,
		127, 0, 0, 5, 127, 0, 0, 1, 0x04, 0xd2, 0, 143,
		0x20, 0, 5, 0x01, 0, 0, 0, 1)
	if !bytes.Equal(b, want) {
		t.Errorf("got % x\nwant % x", b, want)
	}
	// Mixed families: both as IPv6; an IPv4-mapped pair: IPv4.
	b, _ = AppendV2(nil, Header{Src: ap("[::ffff:10.0.0.1]:1"), Dst: ap("10.0.0.2:2")})
	if b[13] != 0x11 {
		t.Errorf("mapped IPv4 pair: family %#x, want 0x11", b[13])
	}
	b, _ = AppendV2(nil, Header{Src: ap("[2001:db8::1]:1"), Dst: ap("10.0.0.2:2")})
	h, err := Parse(b)
	if b[13] != 0x21 || err != nil || h.Dst.Addr() != netip.MustParseAddr("::ffff:10.0.0.2") {
		t.Errorf("mixed: family %#x, %+v, %v", b[13], h, err)
	}
	// Too long.
	if _, err := AppendV2(nil, Header{TLVs: []TLV{{TypeAuthority, make([]byte, MaxV2)}}}); err != ErrTooLong {
		t.Errorf("oversized: %v", err)
	}
}

func TestHealthCheck(t *testing.T) {
	// HAProxy 2.6's check with send-proxy-v2, as measured.
	b := append(append([]byte(nil), Signature...), 0x20, 0x00, 0x00, 0x00)
	got, err := read(b)
	if err != nil || len(got) != 16 {
		t.Fatalf("%q %v", got, err)
	}
	h, err := Parse(got)
	if err != nil || !h.Local || h.Version != 2 {
		t.Errorf("%+v %v", h, err)
	}
}

func TestV1(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Header
		err  error
	}{
		{"PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\n", Header{Version: 1, Src: ap("192.0.2.7:40000"), Dst: ap("198.51.100.1:143")}, nil},
		{"PROXY TCP6 2001:db8::7 ::1 40000 993\r\n", Header{Version: 1, Src: ap("[2001:db8::7]:40000"), Dst: ap("[::1]:993")}, nil},
		{"PROXY UNKNOWN\r\n", Header{Version: 1, Local: true}, nil},
		{"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", Header{Version: 1, Local: true}, nil},
		{"PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\n", Header{}, ErrMalformed},
		{"PROXY TCP4 192.0.2.7 198.51.100.1 040000 143\r\n", Header{}, ErrMalformed},
		{"PROXY TCP4 192.0.2.7 198.51.100.1 65536 143\r\n", Header{}, ErrMalformed},
		{"PROXY TCP4 ::1 198.51.100.1 1 143\r\n", Header{}, ErrMalformed},
		{"PROXY TCP6 192.0.2.7 ::1 1 143\r\n", Header{}, ErrMalformed},
		{"PROXY TCP6 fe80::1%eth0 ::1 1 143\r\n", Header{}, ErrMalformed},
		{"PROXY TCP4  192.0.2.7 198.51.100.1 1 143\r\n", Header{}, ErrMalformed},
		{"PROXY UDP4 192.0.2.7 198.51.100.1 1 143\r\n", Header{}, ErrFamily},
		{"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n", Header{}, ErrMalformed},
		{"PROXX TCP4\r\n", Header{}, ErrSignature},
		{"a LOGIN alice secret\r\n", Header{}, ErrSignature},
	} {
		b, err := read([]byte(c.in + "next bytes\r\n"))
		if err == nil {
			var h Header
			h, err = Parse(b)
			if err == nil && !reflect.DeepEqual(h, c.want) {
				t.Errorf("%q: %+v, want %+v", c.in, h, c.want)
			}
		}
		if err != c.err {
			t.Errorf("%q: error %v, want %v", c.in, err, c.err)
		}
	}
	// 107 bytes at most: a line that has no end by then is refused
	// before a 108th byte is read.
	long := []byte("PROXY TCP6 " + string(bytes.Repeat([]byte("1"), 200)))
	if b, err := read(long); err != ErrTooLong || len(b) != MaxV1 {
		t.Errorf("long v1: %d bytes, %v", len(b), err)
	}
}

func TestV2Bad(t *testing.T) {
	head := func(vc, fam byte, body ...byte) []byte {
		b := append(append([]byte(nil), Signature...), vc, fam, byte(len(body)>>8), byte(len(body)))
		return append(b, body...)
	}
	addr4 := []byte{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}
	for name, c := range map[string]struct {
		in  []byte
		err error
	}{
		"version 1 binary":   {head(0x11, 0x11, addr4...), ErrMalformed},
		"command 2":          {head(0x22, 0x11, addr4...), ErrMalformed},
		"short addresses":    {head(0x21, 0x11, addr4[:11]...), ErrMalformed},
		"udp":                {head(0x21, 0x12, addr4...), ErrFamily},
		"unix":               {head(0x21, 0x31, make([]byte, 216)...), ErrFamily},
		"tlv over the end":   {head(0x21, 0x11, append(addr4, 0x02, 0, 9, 'x')...), ErrMalformed},
		"tlv head cut":       {head(0x21, 0x11, append(addr4, 0x02, 0)...), ErrMalformed},
		"too long":           {head(0x21, 0x11, make([]byte, MaxV2)...), ErrTooLong},
		"bad signature":      {[]byte("\r\n\r\n\x00\r\nQUIT\r\x21\x11\x00\x00"), ErrSignature},
		"unspec means local": {head(0x21, 0x00), nil},
	} {
		b, err := read(c.in)
		if err == nil {
			_, err = Parse(b)
		}
		if err != c.err {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
	}
}

// FuzzParse: Need never asks for a byte past the header nor more than
// the limits; Parse accepts only what Need calls whole; a parsed TCP
// header written again with AppendV2 parses to the same addresses.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 143\r\nabc"))
	f.Add([]byte("PROXY TCP6 ::1 ::1 1 2\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	b, _ := AppendV2(nil, Header{Src: ap("[2001:db8::7]:40000"), Dst: ap("[::1]:993"), TLVs: []TLV{SSL(ClientSSL, 1), {TypeAuthority, []byte("x")}}})
	f.Add(b)
	f.Add(append(append([]byte(nil), Signature...), 0x20, 0x00, 0x00, 0x00))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := read(in)
		if len(h) > MaxV2 || (len(h) > 0 && h[0] == 'P' && len(h) > MaxV1) {
			t.Fatalf("read %d bytes", len(h))
		}
		if err != nil {
			return
		}
		p, err := Parse(h)
		if err != nil {
			return
		}
		if p.Local {
			return
		}
		if !p.Src.IsValid() || !p.Dst.IsValid() {
			t.Fatalf("PROXY without addresses: %+v", p)
		}
		out, err := AppendV2(nil, Header{Src: p.Src, Dst: p.Dst, TLVs: p.TLVs})
		if err != nil {
			if len(h) > 0 && h[0] == 'P' {
				t.Fatal(err)
			}
			return
		}
		q, err := Parse(out)
		if err != nil || q.Src.Addr().Unmap() != p.Src.Addr().Unmap() || q.Dst.Port() != p.Dst.Port() || len(q.TLVs) != len(p.TLVs) {
			t.Fatalf("%+v -> %q -> %+v, %v", p, out, q, err)
		}
	})
}
