package auth

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// FuzzVerify checks that Verify never panics on arbitrary tokens and that
// whatever it accepts names a valid user.
func FuzzVerify(f *testing.F) {
	f.Add(token(f, hs256, claims(), secret, sha256.New))
	f.Add(token(f, hs256, claims("exp", 1e300), secret, sha256.New))
	f.Add(token(f, hs256, claims("nbf", -1e300, "aud", []any{1, "x"}), secret, sha256.New))
	f.Add(token(f, map[string]any{"alg": "none"}, claims(), "", nil))
	f.Add("")
	f.Add("a.b.c")
	v, err := NewVerifier(Config{Secret: secret}, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if c != (Claims{}) {
				t.Fatalf("got claims %+v with error %v", c, err)
			}
			return
		}
		if !record.ValidID(c.User) || (c.Device != "" && !record.ValidID(c.Device)) {
			t.Fatalf("accepted invalid ids %+v", c)
		}
	})
}

// FuzzParseJWKS checks that the JWKS decoder never panics and that every
// key it returns is usable for exactly the alg it claims.
func FuzzParseJWKS(f *testing.F) {
	keys(f)
	f.Add(string(jwksOf(f, rsaA, edB)))
	f.Add(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA","use":"enc"}]}`)
	f.Add(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`)
	f.Add(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)
	f.Add(`{"keys":null}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		got, _, err := parseJWKS([]byte(doc))
		if err != nil && got != nil {
			t.Fatalf("got keys %v with error %v", got, err)
		}
		for _, k := range got {
			alg, err := algOfKey(k.key)
			if err != nil || alg != k.alg {
				t.Fatalf("key %q: alg %q, key says %q (%v)", k.kid, k.alg, alg, err)
			}
		}
	})
}

// FuzzVerifyAsymmetric feeds arbitrary tokens to a verifier that knows an
// RSA key, an Ed25519 key and a secret: nothing panics, and whatever is
// accepted names a valid user.
func FuzzVerifyAsymmetric(f *testing.F) {
	keys(f)
	dir := f.TempDir()
	cfg := Config{Secret: secret, PublicKeys: []string{
		writeFile(f, dir, "rsa-a.pem", rsaA.publicPEM(f)),
		writeFile(f, dir, "ed-b.pem", edB.publicPEM(f)),
	}}
	f.Add(signed(f, rsaA, map[string]any{"kid": "rsa-a"}, claims()))
	f.Add(signed(f, edB, map[string]any{"kid": "ed-b"}, claims()))
	f.Add(signed(f, edB, map[string]any{"kid": 1}, claims("aud", []any{1})))
	f.Add(token(f, map[string]any{"alg": "HS256", "kid": "rsa-a"}, claims(), string(rsaA.publicPEM(f)), sha256.New))
	f.Add(token(f, hs256, claims(), secret, sha256.New))
	v, err := NewVerifier(cfg, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if c != (Claims{}) {
				t.Fatalf("got claims %+v with error %v", c, err)
			}
			return
		}
		if !record.ValidID(c.User) || c.Expires.IsZero() {
			t.Fatalf("accepted %+v", c)
		}
	})
}
