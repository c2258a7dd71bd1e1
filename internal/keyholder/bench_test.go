package keyholder

import (
	"crypto/tls"
	"testing"

	"imap-tls/internal/keyproto"
	kt "imap-tls/internal/keyproto/keyprototest"
)

// BenchmarkHandshake compares a full TLS 1.3 handshake with the key in
// the server's own memory against one signed through the key
// protocol (Serve in a goroutine, over a socketpair): the protocol's own
// cost, without the key process's exec.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range []string{"ecdsa", "rsa"} {
		k := kt.GenKey(b, kind)
		pool := k.Pool()
		b.Run(kind+"/direct", func(b *testing.B) {
			cert, err := tls.X509KeyPair(k.PEM, k.PEM)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < b.N; i++ {
				sc, cc := kt.SocketConns(b)
				srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
				go srv.Handshake()
				if err := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "imap.example.test"}).Handshake(); err != nil {
					b.Fatal(err)
				}
				sc.Close()
				cc.Close()
			}
		})
		b.Run(kind+"/keyproto", func(b *testing.B) {
			ks := keys(b, k)
			for i := 0; i < b.N; i++ {
				pc, kc := kt.SocketConns(b)
				go Serve(kc, kc, ks)
				c := keyproto.NewClient(pc, kt.Timeout)
				sc, cc := kt.SocketConns(b)
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
