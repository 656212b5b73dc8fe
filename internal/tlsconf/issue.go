package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// NewCA makes a fleet's certificate authority for the tier links: a
// self-signed ECDSA P-256 certificate that may sign node certificates
// only (path length 0), valid from an hour ago for validity, and its key,
// both PEM.
func NewCA(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" || validity <= 0 {
		return nil, nil, errors.New("cannot make a CA: needs a name and a positive validity")
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	if certPEM, keyPEM, err = newCert(tmpl, nil, nil); err != nil {
		return nil, nil, fmt.Errorf("cannot make a CA: %w", err)
	}
	return certPEM, keyPEM, nil
}

// newCert gives tmpl a random serial and a new P-256 key and signs it with
// parentKey as parent (both nil: self-signed). It returns the certificate
// and key PEM.
func newCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = marshalKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Issue signs a node certificate with the CA (PEM certificate and key, as
// NewCA returns them): ECDSA P-256, usable both to serve and to dial a
// tier link (server and client authentication), with name as its common
// name and hosts (IP addresses or DNS names) as its subject alternative
// names, valid from an hour ago for validity (capped at the CA's end). It
// returns the certificate and key PEM and the serial number in the form a
// deny file lists it (lower-case hex).
func Issue(caCertPEM, caKeyPEM []byte, name string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, serial string, err error) {
	fail := func(err error) ([]byte, []byte, string, error) {
		return nil, nil, "", fmt.Errorf("cannot issue a certificate for %q: %w", name, err)
	}
	if name == "" || validity <= 0 {
		return fail(errors.New("needs a name and a positive validity"))
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return fail(err)
	}
	if !ca.NotAfter.After(time.Now()) {
		return fail(fmt.Errorf("the CA expired %s: make a new one (parley certs init)", ca.NotAfter.UTC().Format(time.RFC3339)))
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case h == "":
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
		return fail(errors.New("needs at least one host (IP address or DNS name) that peers dial it by"))
	}
	if certPEM, keyPEM, err = newCert(tmpl, ca, caKey); err != nil {
		return fail(err)
	}
	return certPEM, keyPEM, SerialHex(tmpl.SerialNumber), nil
}

// SerialHex is a certificate serial number as a deny file lists it:
// lower-case hex without separators or leading zeros.
func SerialHex(n *big.Int) string { return n.Text(16) }

// newSerial returns a random 128-bit positive serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil
}

func marshalKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("the CA certificate is not PEM")
	}
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("the CA certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("the CA key is not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("the CA key: %w", err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || !ek.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, errors.New("the CA key does not match the CA certificate")
	}
	return ca, ek, nil
}
