package webpush

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// MaxTokenLifetime is the longest a VAPID token may live (RFC 8292
// section 2: exp no more than 24 hours after the request).
const MaxTokenLifetime = 24 * time.Hour

var b64 = base64.RawURLEncoding

// VAPID is an application server's P-256 signing key pair. Safe for
// concurrent use.
type VAPID struct {
	priv *ecdsa.PrivateKey
	pub  string // base64url uncompressed point
}

// GenerateVAPID makes a new key pair.
func GenerateVAPID() (*VAPID, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cannot generate vapid key: %w", err)
	}
	return newVAPID(priv)
}

func newVAPID(priv *ecdsa.PrivateKey) (*VAPID, error) {
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cannot encode vapid public key: %w", err)
	}
	return &VAPID{priv: priv, pub: b64.EncodeToString(pub)}, nil
}

// ParseVAPID decodes a key pair from its base64url forms (padding
// optional): private is the 32-byte raw scalar, public the 65-byte
// uncompressed point. public may be empty (it is derived); if given it
// must belong to private.
func ParseVAPID(public, private string) (*VAPID, error) {
	raw, err := decodeB64(private)
	if err != nil {
		return nil, fmt.Errorf("cannot decode vapid private key: %w", err)
	}
	priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("cannot decode vapid private key: %w", err)
	}
	v, err := newVAPID(priv)
	if err != nil {
		return nil, err
	}
	if public != "" {
		pub, err := decodeB64(public)
		if err != nil {
			return nil, fmt.Errorf("cannot decode vapid public key: %w", err)
		}
		if b64.EncodeToString(pub) != v.pub {
			return nil, errors.New("cannot use vapid keys: the public key does not belong to the private key")
		}
	}
	return v, nil
}

// PublicKey returns the public key as base64url (no padding) of the
// uncompressed point: the browser's applicationServerKey and the k= of the
// Authorization header.
func (v *VAPID) PublicKey() string { return v.pub }

// PrivateKey returns the raw private scalar as base64url (no padding).
func (v *VAPID) PrivateKey() string {
	b, err := v.priv.Bytes()
	if err != nil {
		return "" // cannot happen for a P-256 key
	}
	return b64.EncodeToString(b)
}

// Claims are the JWT claims of a VAPID token.
type Claims struct {
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Sub string `json:"sub,omitempty"`
}

// jwtHeader is the fixed, pre-encoded ES256 JOSE header.
var jwtHeader = b64.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`))

// Token signs a VAPID JWT for aud (the push service origin) with the given
// claims.
func (v *VAPID) Token(c Claims) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("cannot encode vapid claims: %w", err)
	}
	signing := jwtHeader + "." + b64.EncodeToString(body)
	h := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, v.priv, h[:])
	if err != nil {
		return "", fmt.Errorf("cannot sign vapid token: %w", err)
	}
	var sig [64]byte
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64.EncodeToString(sig[:]), nil
}

// Authorization returns the RFC 8292 header value for a token.
func (v *VAPID) Authorization(token string) string {
	return "vapid t=" + token + ", k=" + v.pub
}

// Audience returns the aud claim for a push endpoint: its scheme://host
// (with the port if the URL has one).
func Audience(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("cannot parse endpoint: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("cannot use endpoint %q: not an absolute http(s) URL", endpoint)
	}
	return u.Scheme + "://" + u.Host, nil
}

// CheckSubject validates a VAPID subject: a mailto: or https: URI.
func CheckSubject(sub string) error {
	switch {
	case strings.HasPrefix(sub, "mailto:") && len(sub) > len("mailto:"):
		return nil
	case strings.HasPrefix(sub, "https://") && len(sub) > len("https://"):
		return nil
	}
	return fmt.Errorf("vapid subject %q must be a mailto: or https: URI", sub)
}

// ParseAuthorization splits an RFC 8292 Authorization header value
// ("vapid t=<jwt>, k=<key>") into its token and key. It never panics.
func ParseAuthorization(h string) (token, key string, err error) {
	scheme, params, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "vapid") {
		return "", "", errors.New("authorization scheme is not vapid")
	}
	for p := range strings.SplitSeq(params, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return "", "", fmt.Errorf("authorization parameter %q has no value", p)
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "t":
			token = strings.TrimSpace(val)
		case "k":
			key = strings.TrimSpace(val)
		}
	}
	if token == "" || key == "" {
		return "", "", errors.New("authorization lacks t= or k=")
	}
	return token, key, nil
}

// VerifyToken checks a VAPID JWT as a push service does: an ES256
// signature valid for key (base64url uncompressed point), aud equal to
// aud, exp after now and no more than MaxTokenLifetime ahead. It returns
// the claims. It never panics, whatever the input.
func VerifyToken(token, key, aud string, now time.Time) (Claims, error) {
	var c Claims
	rawKey, err := decodeB64(key)
	if err != nil {
		return c, fmt.Errorf("cannot decode vapid key: %w", err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), rawKey)
	if err != nil {
		return c, fmt.Errorf("cannot decode vapid key: %w", err)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, errors.New("vapid token is not a JWS compact serialization")
	}
	hdr, err := decodeB64(parts[0])
	if err != nil {
		return c, fmt.Errorf("cannot decode vapid token header: %w", err)
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil || h.Alg != "ES256" {
		return c, fmt.Errorf("vapid token header %q: want alg ES256", hdr)
	}
	sig, err := decodeB64(parts[2])
	if err != nil || len(sig) != 64 {
		return c, errors.New("vapid token signature is not 64 bytes of base64url")
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return c, errors.New("vapid token signature does not verify")
	}
	body, err := decodeB64(parts[1])
	if err != nil {
		return c, fmt.Errorf("cannot decode vapid token claims: %w", err)
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return c, fmt.Errorf("cannot decode vapid token claims: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(c.Aud), []byte(aud)) != 1 {
		return c, fmt.Errorf("vapid token aud %q, want %q", c.Aud, aud)
	}
	exp := time.Unix(c.Exp, 0)
	if !exp.After(now) {
		return c, fmt.Errorf("vapid token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if exp.Sub(now) > MaxTokenLifetime {
		return c, fmt.Errorf("vapid token exp %s is more than %s ahead", exp.UTC().Format(time.RFC3339), MaxTokenLifetime)
	}
	return c, nil
}

// decodeB64 decodes base64url with or without padding.
func decodeB64(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}
