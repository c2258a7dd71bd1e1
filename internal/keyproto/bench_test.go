package keyproto

import (
	"crypto/tls"
	"testing"
)

// BenchmarkHandshake compares a full TLS 1.3 handshake with the key in
// the server's own memory against one signed through the keyproc
// protocol (Serve in a goroutine, over a socketpair): the protocol's own
// cost, without the key process's exec.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range []string{"ecdsa", "rsa"} {
		k := genKey(b, kind)
		pool := k.pool(b)
		b.Run(kind+"/direct", func(b *testing.B) {
			cert, err := tls.X509KeyPair(k.pem, k.pem)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				sc, cc := socketConns(b)
				srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
				go srv.Handshake()
				if err := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "imap.example.test"}).Handshake(); err != nil {
					b.Fatal(err)
				}
				sc.Close()
				cc.Close()
			}
		})
		b.Run(kind+"/keyproc", func(b *testing.B) {
			ks := k.keys(b)
			for i := 0; i < b.N; i++ {
				pc, kc := socketConns(b)
				go Serve(kc, kc, ks)
				c := NewClient(pc, testTimeout)
				sc, cc := socketConns(b)
				srv := tls.Server(sc, &tls.Config{GetCertificate: c.GetCertificate})
				go srv.Handshake()
				if err := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "imap.example.test"}).Handshake(); err != nil {
					b.Fatal(err)
				}
				sc.Close()
				cc.Close()
				pc.Close()
				kc.Close()
			}
		})
	}
}
