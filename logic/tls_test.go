package logic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
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
	withTLS := func(c *Config) {
		c.LinkTLS.CertFile, c.LinkTLS.KeyFile, c.LinkTLS.CAFile, c.LinkTLS.ClientCAFile = pair, pair, ca, ca
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
}
