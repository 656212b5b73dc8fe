package tlsconf

import (
	"crypto/tls"
	"net"
	"path/filepath"
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
			benchHandshakes(b, sconf, cconf, func(cli, _ *tls.Conn) {
				if got := cli.ConnectionState().CurveID; got != tc.curves[0] {
					b.Fatalf("key exchange %v, want %v", got, tc.curves[0])
				}
			})
		})
	}
}

// BenchmarkLinkHandshake measures one tier-link TLS handshake as a fleet
// runs it: mutual TLS 1.3 with certificates from NewCA and Issue, the
// server asking for and verifying the client's, a deny list checked on
// both sides, Go's default key exchange, over net.Pipe. Server and client
// CPU together.
func BenchmarkLinkHandshake(b *testing.B) {
	dir := b.TempDir()
	caCert, caKey, err := NewCA("bench fleet", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeAtomic(b, p, data)
		return p
	}
	ca := write("ca.crt", caCert)
	deny := write("deny.txt", []byte("# none\n"))
	pair := func(node string) (string, string) {
		c, k, _, err := Issue(caCert, caKey, node, []string{"127.0.0.1", "localhost"}, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		return write(node+".crt", c), write(node+".key", k)
	}
	lc, lk := pair("logic")
	cc, ck := pair("connsrv")
	sconf, stop, err := ServerConfig(Config{CertFile: lc, KeyFile: lk, ClientCAFile: ca, DenyFile: deny, ReloadInterval: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	cconf, err := ClientConfig(Config{CertFile: cc, KeyFile: ck, CAFile: ca, ServerName: "localhost", DenyFile: deny, ReloadInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	benchHandshakes(b, sconf, cconf, func(_, srv *tls.Conn) {
		if len(srv.ConnectionState().PeerCertificates) == 0 {
			b.Fatal("the server saw no client certificate")
		}
	})
}

// benchHandshakes runs one TLS handshake per iteration over net.Pipe, both
// sides, and hands each pair of connections to check.
func benchHandshakes(b *testing.B, sconf, cconf *tls.Config, check func(cli, srv *tls.Conn)) {
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
		check(cli, srv)
		_ = cn.Close()
		_ = sn.Close()
	}
}
