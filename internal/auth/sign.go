package auth

import (
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/record"
)

// Signer signs tokens with one key. Immutable; safe for concurrent use.
type Signer struct {
	alg    string
	kid    string
	method jwt.SigningMethod
	key    any // []byte, *rsa.PrivateKey or ed25519.PrivateKey
}

// NewHMACSigner returns an HS256 signer for secret (at least 32 bytes).
// kid may be empty.
func NewHMACSigner(secret, kid string) (*Signer, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("cannot create signer: secret must be at least %d bytes, got %d", MinSecretBytes, len(secret))
	}
	return &Signer{alg: HS256, kid: kid, method: jwt.SigningMethodHS256, key: []byte(secret)}, nil
}

// NewSigner returns an RS256 or EdDSA signer for a PEM private key
// (PKCS#8, or PKCS#1 for RSA). alg may be empty (taken from the key);
// otherwise it must match the key's type. kid goes into the token header;
// it is needed when the verifiers know several public keys.
func NewSigner(privatePEM []byte, alg, kid string) (*Signer, error) {
	key, keyAlg, err := ParsePrivateKeyPEM(privatePEM)
	if err != nil {
		return nil, fmt.Errorf("cannot create signer: %w", err)
	}
	if alg == "" {
		alg = keyAlg
	}
	if alg != keyAlg {
		return nil, fmt.Errorf("cannot create signer: a %s key cannot sign %s tokens", keyAlg, alg)
	}
	s := &Signer{alg: alg, kid: kid, key: key}
	switch alg {
	case RS256:
		s.method = jwt.SigningMethodRS256
	case EdDSA:
		s.method = jwt.SigningMethodEdDSA
	}
	return s, nil
}

// Alg returns the signer's algorithm (HS256, RS256 or EdDSA).
func (s *Signer) Alg() string { return s.alg }

// KID returns the kid put in token headers ("" for none).
func (s *Signer) KID() string { return s.kid }

// IssueWith signs a token for user (and optionally device) valid for ttl
// from now (a negative ttl makes an expired token, for tests), with cfg's
// issuer and audience. A ttl over cfg.MaxLifetime (default 24h) is an
// error: verifiers with the same configuration would refuse the token.
// Safe for concurrent use.
func IssueWith(s *Signer, cfg Config, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if maxLife := cfg.withDefaults().MaxLifetime; ttl > maxLife {
		return "", fmt.Errorf("cannot issue token: lifetime %s exceeds auth.max_lifetime %s", ttl, maxLife)
	}
	if !record.ValidID(user) {
		return "", fmt.Errorf("cannot issue token: invalid user id %q", user)
	}
	if device != "" && !record.ValidID(device) {
		return "", fmt.Errorf("cannot issue token: invalid device id %q", device)
	}
	tc := tokenClaims{
		Device:    device,
		IssuedAt:  newNumericDate(now),
		ExpiresAt: newNumericDate(now.Add(ttl)),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: user,
			Issuer:  cfg.Issuer,
		},
	}
	if cfg.Audience != "" {
		tc.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	t := jwt.NewWithClaims(s.method, tc)
	if s.kid != "" {
		t.Header["kid"] = s.kid
	}
	tok, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("cannot sign token for %s: %w", user, err)
	}
	return tok, nil
}

// Issue signs an HS256 token with cfg.Secret for user (and optionally
// device) valid for ttl. It is meant for development tokens and tests;
// production deployments issue tokens from their own identity service
// with the same claims (see IssueWith for RS256 and EdDSA).
func Issue(cfg Config, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if cfg.Secret == "" {
		return "", fmt.Errorf("cannot issue token: auth.secret is empty (HS256 tokens need it)")
	}
	s := &Signer{alg: HS256, method: jwt.SigningMethodHS256, key: []byte(cfg.Secret)}
	return IssueWith(s, cfg, user, device, ttl, now)
}
