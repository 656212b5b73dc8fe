package logic

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 (its own
// CA) and its key; it returns the cert+key file and the CA file.
func writeTestCert(t *testing.T) (pair, ca string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "logic test"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, ca = filepath.Join(dir, "pair.pem"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(pair, append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return pair, ca
}

// TestClusterPeersOverTLS: with logic.link_tls the tier-link port speaks
// only TLS 1.3 (mutual, here) and peers dial each other over it.
func TestClusterPeersOverTLS(t *testing.T) {
	pair, ca := writeTestCert(t)
	// Mutual TLS alone authenticates the links (no link secret).
	withTLS := func(c *Config) {
		c.LinkTLS.CertFile, c.LinkTLS.KeyFile, c.LinkTLS.CAFile, c.LinkTLS.ClientCAFile = pair, pair, ca, ca
		c.LinkSecret = ""
	}
	st := newMemStore()
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true }, withTLS)
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()} }, withTLS)
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	// A plaintext peer is not let in.
	c := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n3", []string{a.LinkAddr()} })
	time.Sleep(500 * time.Millisecond)
	waitRing(t, a, 2)
	waitRing(t, c, 1)

	// With a secret too, the proofs are bound to the TLS session.
	withBoth := func(c *Config) {
		c.LinkTLS.CertFile, c.LinkTLS.KeyFile, c.LinkTLS.CAFile, c.LinkTLS.ClientCAFile = pair, pair, ca, ca
	}
	st2 := newMemStore()
	d := startService(t, st2, func(c *Config) { c.NodeID, c.Cluster.Enabled = "d1", true }, withBoth)
	e := startService(t, st2, func(c *Config) { c.NodeID, c.Cluster.Peers = "d2", []string{d.LinkAddr()} }, withBoth)
	waitRing(t, d, 2)
	waitRing(t, e, 2)
}

// TestPeerHelloRelayedToItself: a node that dials a relay leading back to
// its own listener proves nothing to it and gets no peer link: the relay
// cannot inject requests in the node's name.
func TestPeerHelloRelayedToItself(t *testing.T) {
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	st := newMemStore()
	svc := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n1", []string{relay.Addr().String()} })
	in, err := relay.Accept() // the node dials its "peer"
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := net.Dial("tcp", svc.LinkAddr()) // and the relay dials the node
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	go func() { _, _ = io.Copy(out, in) }()
	go func() { _, _ = io.Copy(in, out) }()
	time.Sleep(300 * time.Millisecond) // let the handshake run through the relay
	// The relay injects a request on the acceptor's side.
	_, _ = out.Write(tierlink.AppendForward(nil, 1, "alice", "d", []byte(`{"type":"send","id":"x","to":"bob","body":"forged"}`)))
	time.Sleep(300 * time.Millisecond)
	if msgs, _ := st.Messages(context.Background(), record.DirectChatID("alice", "bob"), record.Page{Limit: 10}); len(msgs) != 0 {
		t.Fatalf("a relayed self-link stored %v", msgs)
	}
	waitRing(t, svc, 1)
}

// TestRevokedPeerLinkCut: links made before a certificate was revoked are
// cut once the deny list lists it, and the redial is refused: the ring
// shrinks back to one on each node. With the list on both nodes the
// dialer's recheck or the acceptor's sweep cuts it; with the list on the
// accepting node only, its sweep must (while a raw TCP client holds a
// handshake open: the sweep does not wait for it). (Before, established
// links outlived the revocation.)
func TestRevokedPeerLinkCut(t *testing.T) {
	for _, dialerHasList := range []bool{true, false} {
		t.Run(fmt.Sprintf("dialer_has_list=%v", dialerHasList), func(t *testing.T) { testRevokedPeerLinkCut(t, dialerHasList) })
	}
}

func testRevokedPeerLinkCut(t *testing.T, dialerHasList bool) {
	pair, ca := writeTestCert(t)
	deny := filepath.Join(t.TempDir(), "deny.txt")
	if err := os.WriteFile(deny, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	withTLS := func(list bool) func(c *Config) {
		return func(c *Config) {
			c.LinkTLS.CertFile, c.LinkTLS.KeyFile, c.LinkTLS.CAFile, c.LinkTLS.ClientCAFile = pair, pair, ca, ca
			if list {
				c.LinkTLS.DenyFile, c.LinkTLS.ReloadInterval = deny, 50*time.Millisecond
			}
			c.Cluster.PeerPingInterval = 100 * time.Millisecond
			c.LinkSecret = ""
		}
	}
	st := newMemStore()
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true }, withTLS(true))
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()} }, withTLS(dialerHasList))
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	idle, err := net.Dial("tcp", a.LinkAddr()) // never sends a ClientHello
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// Revoke the (shared) certificate: a file replaced whole, as parley
	// certs revoke leaves it.
	tmp := deny + ".new"
	if err := os.WriteFile(tmp, []byte(tlsconf.SerialHex(big.NewInt(1))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, deny); err != nil {
		t.Fatal(err)
	}
	// Within 5 s (it takes about 100 ms): an idle handshake holds for 10 s,
	// and a sweep that waited for it would be late.
	waitRingIn(t, a, 1, 5*time.Second)
	waitRingIn(t, b, 1, 5*time.Second)
}
