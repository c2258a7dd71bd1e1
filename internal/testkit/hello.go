package testkit

import "encoding/binary"

// ClientHello is a TLS 1.2 ClientHello offering the given cipher suites
// and no extension, split into as many records as it needs: for tests
// of what a hostile hello makes a server log.
func ClientHello(suites []uint16) []byte {
	var body []byte
	body = append(body, 3, 3)                // client_version TLS 1.2
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = binary.BigEndian.AppendUint16(body, uint16(2*len(suites)))
	for _, s := range suites {
		body = binary.BigEndian.AppendUint16(body, s)
	}
	body = append(body, 1, 0) // compression: null
	msg := []byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	msg = append(msg, body...)
	var out []byte
	for len(msg) > 0 {
		n := min(len(msg), 16384)
		out = append(out, 0x16, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}
