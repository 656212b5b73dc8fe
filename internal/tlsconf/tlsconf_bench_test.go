package tlsconf

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// BenchmarkHandshake measures one full TLS 1.3 handshake, server and client
// together over net.Pipe (no kernel sockets): ECDSA P-256 leaf signed by a
// P-256 CA, no session resumption, the client verifying the chain. The
// server side is ServerConfig's; kex= picks the key exchange the client
// offers (x25519, or Go's default hybrid X25519MLKEM768). The server's
// share of the CPU is roughly the ECDSA signature plus its half of the key
// exchange; the client's is the chain verification plus its half.
func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b)
	f := writeFiles(b, ca, "bench")
	sconf, stop, err := ServerConfig(Config{CertFile: f.cert, KeyFile: f.key, ReloadInterval: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	for _, tc := range []struct {
		name   string
		curves []tls.CurveID
	}{
		{"cert=p256/kex=x25519", []tls.CurveID{tls.X25519}},
		{"cert=p256/kex=x25519mlkem768", []tls.CurveID{tls.X25519MLKEM768}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cconf := &tls.Config{
				RootCAs: rootPool(ca), ServerName: "localhost", MinVersion: tls.VersionTLS13,
				CurvePreferences: tc.curves, ClientSessionCache: nil,
			}
			b.ReportAllocs()
			for b.Loop() {
				cn, sn := net.Pipe()
				srv := tls.Server(sn, sconf)
				errc := make(chan error, 1)
				go func() { errc <- srv.Handshake() }()
				cli := tls.Client(cn, cconf)
				if err := cli.Handshake(); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				if got := cli.ConnectionState().CurveID; got != tc.curves[0] {
					b.Fatalf("key exchange %v, want %v", got, tc.curves[0])
				}
				_ = cn.Close()
				_ = sn.Close()
			}
		})
	}
}
