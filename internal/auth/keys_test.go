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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testKey is a signing key of the tests with its kid.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func (k testKey) pub() crypto.PublicKey { return k.priv.Public() }

func (k testKey) privatePEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func (k testKey) publicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.pub())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// signer returns a Signer of k that puts kid in the header.
func (k testKey) signer(t testing.TB, kid string) *Signer {
	t.Helper()
	s, err := NewSigner(k.privatePEM(t), k.alg, kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (k testKey) jwk(t testing.TB) JWK {
	t.Helper()
	j, err := NewJWK(k.kid, k.pub())
	if err != nil {
		t.Fatal(err)
	}
	return j
}

var (
	keysOnce sync.Once
	rsaA     testKey // kid rsa-a
	rsaOther testKey // kid rsa-a too: an attacker's key with a known kid
	rsaSmall testKey // 1024 bits
	edB      testKey // kid ed-b
	edC      testKey // kid ed-c
)

// keys generates the test keys once per test binary.
func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func(bits int) *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		}
		ed := func() ed25519.PrivateKey {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				panic(err)
			}
			return k
		}
		rsaA = testKey{"rsa-a", RS256, gen(2048)}
		rsaOther = testKey{"rsa-a", RS256, gen(2048)}
		rsaSmall = testKey{"rsa-small", RS256, gen(1024)}
		edB = testKey{"ed-b", EdDSA, ed()}
		edC = testKey{"ed-c", EdDSA, ed()}
	})
}

// writeFile writes b to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func jwksOf(t testing.TB, ks ...testKey) []byte {
	t.Helper()
	var set JWKS
	for _, k := range ks {
		set.Keys = append(set.Keys, k.jwk(t))
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseJWKS(t *testing.T) {
	keys(t)
	a, b := rsaA.jwk(t), edB.jwk(t)
	smallPub := rsaSmall.priv.(*rsa.PrivateKey).PublicKey
	small := JWK{Kty: "RSA", Kid: "rsa-small", N: base64.RawURLEncoding.EncodeToString(smallPub.N.Bytes()), E: "AQAB"}
	with := func(j JWK, f func(*JWK)) JWK { f(&j); return j }
	doc := func(ks ...any) string {
		out, err := json.Marshal(map[string]any{"keys": ks})
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	tests := []struct {
		name     string
		doc      string
		wantKids []string // loaded, in order
		skipped  int
		wantErr  string
	}{
		{"rsa_and_ed25519", doc(a, b), []string{"rsa-a", "ed-b"}, 0, ""},
		{"no_use_no_alg", doc(with(a, func(j *JWK) { j.Use, j.Alg = "", "" }), with(b, func(j *JWK) { j.Use, j.Alg = "", "" })), []string{"rsa-a", "ed-b"}, 0, ""},
		{"padded_base64", doc(with(b, func(j *JWK) { j.X += "=" })), []string{"ed-b"}, 0, ""},
		{"use_enc_skipped", doc(with(a, func(j *JWK) { j.Use = "enc" }), b), []string{"ed-b"}, 1, ""},
		{"alg_disagrees_skipped", doc(with(a, func(j *JWK) { j.Alg = "PS256" }), with(b, func(j *JWK) { j.Alg = "RS256" })), nil, 2, ""},
		{"hs256_alg_on_rsa_skipped", doc(with(a, func(j *JWK) { j.Alg = "HS256" })), nil, 1, ""},
		{"oct_skipped", doc(map[string]string{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}), nil, 1, ""},
		{"ec_skipped", doc(map[string]string{"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"}), nil, 1, ""},
		{"ed448_skipped", doc(with(b, func(j *JWK) { j.Crv = "Ed448" })), nil, 1, ""},
		{"short_x_skipped", doc(with(b, func(j *JWK) { j.X = "AAAA" })), nil, 1, ""},
		{"bad_n_skipped", doc(with(a, func(j *JWK) { j.N = "!!" })), nil, 1, ""},
		{"even_e_skipped", doc(with(a, func(j *JWK) { j.E = "AAE" })), nil, 1, ""},
		{"huge_e_skipped", doc(with(a, func(j *JWK) { j.E = "AQABAQAB" })), nil, 1, ""},
		{"rsa_1024_skipped", doc(small, b), []string{"ed-b"}, 1, ""},
		{"member_not_object_skipped", doc("x", 3, b), []string{"ed-b"}, 2, ""},
		{"kid_not_string_skipped", `{"keys":[{"kty":"OKP","kid":5}]}`, nil, 1, ""},
		{"empty_set", `{"keys":[]}`, nil, 0, ""},
		{"unknown_members_ignored", `{"keys":[],"other":1}`, nil, 0, ""},
		{"no_keys_member", `{}`, nil, 0, "no keys member"},
		{"keys_null", `{"keys":null}`, nil, 0, "no keys member"},
		{"not_json", `{"keys":[`, nil, 0, "cannot decode JWKS"},
		{"keys_not_array", `{"keys":{}}`, nil, 0, "cannot decode JWKS"},
		{"too_many", `{"keys":[` + strings.Repeat(`{},`, maxJWKSKeys) + `{}]}`, nil, 0, "more than 100"},
		{"too_big", `{"keys":[],"pad":"` + strings.Repeat("p", maxJWKSBytes) + `"}`, nil, 0, "exceeds"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := parseJWKS([]byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			var kids []string
			for _, k := range got {
				kids = append(kids, k.kid)
			}
			if strings.Join(kids, ",") != strings.Join(tc.wantKids, ",") {
				t.Errorf("got kids %v, want %v", kids, tc.wantKids)
			}
			if len(skipped) != tc.skipped {
				t.Errorf("got %d skipped (%v), want %d", len(skipped), skipped, tc.skipped)
			}
		})
	}
}

func TestParsePEM(t *testing.T) {
	keys(t)
	pkcs1Pub := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaA.priv.(*rsa.PrivateKey).PublicKey)})
	pkcs1Priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaA.priv.(*rsa.PrivateKey))})
	pubTests := []struct {
		name    string
		pem     []byte
		wantAlg string
	}{
		{"rsa_pkix", rsaA.publicPEM(t), RS256},
		{"rsa_pkcs1", pkcs1Pub, RS256},
		{"ed25519", edB.publicPEM(t), EdDSA},
		{"rsa_1024", rsaSmall.publicPEM(t), ""},
		{"private_given", edB.privatePEM(t), ""},
		{"garbage", []byte("hello"), ""},
	}
	for _, tc := range pubTests {
		_, alg, err := ParsePublicKeyPEM(tc.pem)
		if alg != tc.wantAlg || (err == nil) != (tc.wantAlg != "") {
			t.Errorf("public %s: got %q, %v; want %q", tc.name, alg, err, tc.wantAlg)
		}
	}
	privTests := []struct {
		name    string
		pem     []byte
		wantAlg string
	}{
		{"rsa_pkcs8", rsaA.privatePEM(t), RS256},
		{"rsa_pkcs1", pkcs1Priv, RS256},
		{"ed25519", edB.privatePEM(t), EdDSA},
		{"rsa_1024", rsaSmall.privatePEM(t), ""},
		{"public_given", edB.publicPEM(t), ""},
	}
	for _, tc := range privTests {
		_, alg, err := ParsePrivateKeyPEM(tc.pem)
		if alg != tc.wantAlg || (err == nil) != (tc.wantAlg != "") {
			t.Errorf("private %s: got %q, %v; want %q", tc.name, alg, err, tc.wantAlg)
		}
	}
	if _, err := NewSigner(edB.privatePEM(t), RS256, "x"); err == nil {
		t.Error("NewSigner: an Ed25519 key signing RS256: got nil error")
	}
	if _, err := NewHMACSigner("short", ""); err == nil {
		t.Error("NewHMACSigner: short secret: got nil error")
	}
}

func TestGenerateKeyPair(t *testing.T) {
	for _, kind := range []string{"ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			kp, err := GenerateKeyPair(kind, "k1")
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSigner(kp.PrivatePEM, "", "k1")
			if err != nil {
				t.Fatal(err)
			}
			if s.Alg() != kp.Alg || s.KID() != "k1" {
				t.Fatalf("got signer %s/%s, want %s/k1", s.Alg(), s.KID(), kp.Alg)
			}
			tok, err := IssueWith(s, Config{}, "alice", "", time2h, t0)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			for name, cfg := range map[string]Config{
				"jwks_file":   {JWKSFile: writeFile(t, dir, "jwks.json", kp.JWKS)},
				"public_keys": {PublicKeys: []string{writeFile(t, dir, "k1.pem", kp.PublicPEM)}},
			} {
				v := newVerifier(t, cfg, t0)
				if got := v.KeyIDs(); len(got) != 1 || got[0] != "k1" {
					t.Errorf("%s: got kids %v, want [k1]", name, got)
				}
				if c, err := v.Verify(tok); err != nil || c.User != "alice" {
					t.Errorf("%s: got %+v, %v; want alice", name, c, err)
				}
			}
		})
	}
	if _, err := GenerateKeyPair("dsa", "k"); err == nil {
		t.Error("kind dsa: got nil error")
	}
}
