package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// publicKey is one verification key.
type publicKey struct {
	kid string
	alg string           // RS256 or EdDSA: the only alg this key verifies
	key crypto.PublicKey // *rsa.PublicKey or ed25519.PublicKey
}

// algOfKey returns the token algorithm a public or private key is used
// with, checking RSA sizes.
func algOfKey(k any) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits || n > maxRSABits {
			return "", fmt.Errorf("RSA key of %d bits: want %d to %d", n, MinRSABits, maxRSABits)
		}
		return RS256, nil
	case *rsa.PrivateKey:
		return algOfKey(&k.PublicKey)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("Ed25519 public key of %d bytes", len(k))
		}
		return EdDSA, nil
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return "", fmt.Errorf("Ed25519 private key of %d bytes", len(k))
		}
		return EdDSA, nil
	}
	return "", fmt.Errorf("unsupported key type %T (want RSA or Ed25519)", k)
}

// ParsePublicKeyPEM decodes an RSA (PKIX or PKCS#1) or Ed25519 (PKIX)
// public key and returns it with the algorithm it verifies.
func ParsePublicKeyPEM(b []byte) (crypto.PublicKey, string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, "", errors.New("no PEM block")
	}
	var key any
	var err error
	switch blk.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	default:
		return nil, "", fmt.Errorf("PEM block %q: want PUBLIC KEY or RSA PUBLIC KEY", blk.Type)
	}
	if err != nil {
		return nil, "", err
	}
	alg, err := algOfKey(key)
	if err != nil {
		return nil, "", err
	}
	return key, alg, nil
}

// ParsePrivateKeyPEM decodes an RSA (PKCS#8 or PKCS#1) or Ed25519
// (PKCS#8) private key and returns it with the algorithm it signs.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, string, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, "", errors.New("no PEM block")
	}
	var key any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, "", fmt.Errorf("PEM block %q: want PRIVATE KEY or RSA PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, "", err
	}
	alg, err := algOfKey(key)
	if err != nil {
		return nil, "", err
	}
	return key.(crypto.Signer), alg, nil
}

// JWK is one JSON Web Key (RFC 7517) of the kinds Parley uses: RSA
// (kty RSA, n, e) and Ed25519 (kty OKP, crv Ed25519, x).
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
}

// JWKS is a JSON Web Key Set.
type JWKS struct {
	Keys []JWK `json:"keys"`
}

// NewJWK returns the JWK of an RSA or Ed25519 public key with use "sig"
// and the algorithm set.
func NewJWK(kid string, pub crypto.PublicKey) (JWK, error) {
	alg, err := algOfKey(pub)
	if err != nil {
		return JWK{}, fmt.Errorf("cannot encode key %q: %w", kid, err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: alg, N: b64(k.N.Bytes()), E: b64(big.NewInt(int64(k.E)).Bytes())}, nil
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Kid: kid, Use: "sig", Alg: alg, Crv: "Ed25519", X: b64(k)}, nil
	}
	return JWK{}, fmt.Errorf("cannot encode key %q: unsupported key type %T", kid, pub)
}

// parseJWKS decodes a JWKS document. Keys Parley cannot use (other key
// types or curves, use other than sig, an alg that disagrees with the key,
// RSA under 2048 bits, malformed members) are skipped and reported in
// skipped; err is set only when the document itself is unusable.
func parseJWKS(b []byte) (keys []publicKey, skipped []error, err error) {
	if len(b) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("JWKS of %d bytes exceeds %d", len(b), maxJWKSBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("cannot decode JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, nil, errors.New("cannot decode JWKS: no keys member")
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("JWKS has %d keys, more than %d", len(doc.Keys), maxJWKSKeys)
	}
	for i, raw := range doc.Keys {
		var j JWK
		if err := json.Unmarshal(raw, &j); err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		k, err := j.publicKey()
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err))
			continue
		}
		keys = append(keys, k)
	}
	return keys, skipped, nil
}

// publicKey converts j, applying the use and alg rules.
func (j JWK) publicKey() (publicKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return publicKey{}, fmt.Errorf("use %q is not sig", j.Use)
	}
	var key crypto.PublicKey
	switch j.Kty {
	case "RSA":
		n, err := b64Decode(j.N)
		if err != nil || len(n) == 0 || n[0] == 0 {
			return publicKey{}, errors.New("invalid n")
		}
		e, err := b64Decode(j.E)
		if err != nil || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return publicKey{}, errors.New("invalid e")
		}
		ei := int(new(big.Int).SetBytes(e).Int64())
		if ei < 3 || ei%2 == 0 {
			return publicKey{}, fmt.Errorf("invalid e %d", ei)
		}
		key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ei}
	case "OKP":
		if j.Crv != "Ed25519" {
			return publicKey{}, fmt.Errorf("curve %q is not supported", j.Crv)
		}
		x, err := b64Decode(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return publicKey{}, errors.New("invalid x")
		}
		key = ed25519.PublicKey(x)
	default:
		return publicKey{}, fmt.Errorf("key type %q is not supported", j.Kty)
	}
	alg, err := algOfKey(key)
	if err != nil {
		return publicKey{}, err
	}
	if j.Alg != "" && j.Alg != alg {
		return publicKey{}, fmt.Errorf("alg %q disagrees with the %s key", j.Alg, j.Kty)
	}
	return publicKey{kid: j.Kid, alg: alg, key: key}, nil
}

// b64Decode decodes base64url, with or without padding.
func b64Decode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// KeyPair is a freshly generated signing key.
type KeyPair struct {
	Alg        string // RS256 or EdDSA
	PrivatePEM []byte // PKCS#8 "PRIVATE KEY"
	PublicPEM  []byte // PKIX "PUBLIC KEY"
	JWKS       []byte // a JWKS document holding the public key, indented JSON
}

// GenerateKeyPair makes a signing key: kind is "ed25519" (EdDSA) or "rsa"
// (RS256, 3072 bits). kid goes into the JWKS.
func GenerateKeyPair(kind, kid string) (KeyPair, error) {
	var priv crypto.Signer
	var err error
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "rsa":
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return KeyPair{}, fmt.Errorf("cannot generate key: kind %q: want ed25519 or rsa", kind)
	}
	if err != nil {
		return KeyPair{}, fmt.Errorf("cannot generate %s key: %w", kind, err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return KeyPair{}, fmt.Errorf("cannot encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return KeyPair{}, fmt.Errorf("cannot encode public key: %w", err)
	}
	j, err := NewJWK(kid, priv.Public())
	if err != nil {
		return KeyPair{}, err
	}
	set, err := json.MarshalIndent(JWKS{Keys: []JWK{j}}, "", "  ")
	if err != nil {
		return KeyPair{}, fmt.Errorf("cannot encode JWKS: %w", err)
	}
	return KeyPair{
		Alg:        j.Alg,
		PrivatePEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		PublicPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		JWKS:       append(set, '\n'),
	}, nil
}
