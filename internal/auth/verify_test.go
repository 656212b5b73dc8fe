package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const time2h = 2 * time.Hour

// signed builds a token with header fields hdr (alg and kid) and claims c,
// signed by k (whose alg picks the method unless hdr names another).
func signed(t testing.TB, k testKey, hdr map[string]any, c map[string]any) string {
	t.Helper()
	method := jwt.GetSigningMethod(k.alg)
	tok := jwt.NewWithClaims(method, jwt.MapClaims(c))
	for key, val := range hdr {
		tok.Header[key] = val
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("cannot sign: %v", err)
	}
	return s
}

func kid(k string) map[string]any { return map[string]any{"kid": k} }

// asymConfig writes rsaA and edB as PEM files named after their kids.
func asymConfig(t *testing.T) Config {
	t.Helper()
	keys(t)
	dir := t.TempDir()
	return Config{PublicKeys: []string{
		writeFile(t, dir, "rsa-a.pem", rsaA.publicPEM(t)),
		writeFile(t, dir, "ed-b.pub", edB.publicPEM(t)),
	}}
}

func TestVerifyAsymmetric(t *testing.T) {
	keys(t)
	asym := asymConfig(t)
	mixed := asym
	mixed.Secret = secret
	withIss := asym
	withIss.Issuer, withIss.Audience = "parley-idp", "parley"
	rsaOnly := asym
	rsaOnly.Algorithms = []string{RS256}
	single := Config{PublicKeys: asym.PublicKeys[1:]} // ed-b only
	pemSecret := string(rsaA.publicPEM(t))
	alice := Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}
	tests := []struct {
		name    string
		cfg     Config
		now     time.Time
		token   string
		want    Claims
		wantErr error
	}{
		{name: "rs256", cfg: asym, token: signed(t, rsaA, kid("rsa-a"), claims()), want: alice},
		{name: "eddsa", cfg: asym, token: signed(t, edB, kid("ed-b"), claims()), want: alice},
		{name: "mixed_rs256", cfg: mixed, token: signed(t, rsaA, kid("rsa-a"), claims()), want: alice},
		{name: "mixed_hs256", cfg: mixed, token: token(t, hs256, claims(), secret, sha256.New), want: alice},
		{name: "single_key_no_kid", cfg: single, token: signed(t, edB, nil, claims()), want: alice},
		{name: "single_key_other_kid", cfg: single, token: signed(t, edB, kid("ed-x"), claims()), wantErr: ErrInvalid},
		{name: "no_kid_two_keys", cfg: asym, token: signed(t, rsaA, nil, claims()), wantErr: ErrInvalid},
		{name: "unknown_kid", cfg: asym, token: signed(t, rsaA, kid("rsa-z"), claims()), wantErr: ErrInvalid},
		{name: "kid_not_string", cfg: asym, token: signed(t, rsaA, map[string]any{"kid": 7}, claims()), wantErr: ErrInvalid},
		{name: "kid_of_other_key_type", cfg: asym, token: signed(t, rsaA, kid("ed-b"), claims()), wantErr: ErrInvalid},
		{name: "eddsa_with_rsa_kid", cfg: asym, token: signed(t, edB, kid("rsa-a"), claims()), wantErr: ErrInvalid},
		{name: "forged_rsa_key_known_kid", cfg: asym, token: signed(t, rsaOther, kid("rsa-a"), claims()), wantErr: ErrInvalid},
		{name: "forged_ed_key_known_kid", cfg: asym, token: signed(t, edC, kid("ed-b"), claims()), wantErr: ErrInvalid},
		{name: "alg_not_allowed", cfg: rsaOnly, token: signed(t, edB, kid("ed-b"), claims()), wantErr: ErrInvalid},
		// The classic confusion attack: HS256 "signed" with the public key's PEM.
		{name: "confusion_hs256_pem_asym", cfg: asym,
			token: token(t, map[string]any{"alg": "HS256", "kid": "rsa-a"}, claims(), pemSecret, sha256.New), wantErr: ErrInvalid},
		{name: "confusion_hs256_pem_mixed", cfg: mixed,
			token: token(t, map[string]any{"alg": "HS256", "kid": "rsa-a"}, claims(), pemSecret, sha256.New), wantErr: ErrInvalid},
		{name: "confusion_rs256_hmac_secret", cfg: mixed,
			token: token(t, map[string]any{"alg": "RS256", "kid": "rsa-a"}, claims(), secret, sha256.New), wantErr: ErrInvalid},
		{name: "confusion_eddsa_hmac_secret", cfg: mixed,
			token: token(t, map[string]any{"alg": "EdDSA", "kid": "ed-b"}, claims(), secret, sha256.New), wantErr: ErrInvalid},
		{name: "alg_none", cfg: asym, token: token(t, map[string]any{"alg": "none", "kid": "rsa-a"}, claims(), "", nil), wantErr: ErrInvalid},
		{name: "alg_none_mixed", cfg: mixed, token: token(t, map[string]any{"alg": "none"}, claims(), "", nil), wantErr: ErrInvalid},
		{name: "rs256_empty_signature", cfg: asym, token: token(t, map[string]any{"alg": "RS256", "kid": "rsa-a"}, claims(), "", nil), wantErr: ErrInvalid},
		{name: "tampered_payload_rs256", cfg: asym, token: swapClaims(t, signed(t, rsaA, kid("rsa-a"), claims()), claims("sub", "mallory")), wantErr: ErrInvalid},
		{name: "tampered_payload_eddsa", cfg: asym, token: swapClaims(t, signed(t, edB, kid("ed-b"), claims()), claims("exp", t0.Add(1000*time.Hour).Unix())), wantErr: ErrInvalid},
		{name: "tampered_header_kid", cfg: asym, token: swapHeader(t, signed(t, edB, kid("ed-b"), claims()), map[string]any{"alg": "EdDSA", "kid": "rsa-a"}), wantErr: ErrInvalid},
		{name: "expired", cfg: asym, now: t0.Add(time.Hour + time.Minute), token: signed(t, edB, kid("ed-b"), claims()), wantErr: ErrExpired},
		{name: "missing_exp", cfg: asym, token: signed(t, edB, kid("ed-b"), claims("exp", nil)), wantErr: ErrInvalid},
		{name: "not_yet_valid", cfg: asym, token: signed(t, edB, kid("ed-b"), claims("nbf", t0.Add(time.Minute).Unix())), wantErr: ErrInvalid},
		{name: "iat_future", cfg: asym, token: signed(t, edB, kid("ed-b"), claims("iat", t0.Add(time.Minute).Unix())), wantErr: ErrInvalid},
		{name: "iat_within_leeway", cfg: asym, token: signed(t, edB, kid("ed-b"), claims("iat", t0.Add(10*time.Second).Unix())), want: alice},
		{name: "iat_future_hs256", cfg: Config{Secret: secret}, token: token(t, hs256, claims("iat", t0.Add(time.Minute).Unix()), secret, sha256.New), wantErr: ErrInvalid},
		{name: "iss_aud_ok", cfg: withIss, token: signed(t, edB, kid("ed-b"), claims("iss", "parley-idp", "aud", "parley")), want: alice},
		{name: "aud_array_ok", cfg: withIss, token: signed(t, edB, kid("ed-b"), claims("iss", "parley-idp", "aud", []string{"x", "parley"})), want: alice},
		{name: "wrong_iss", cfg: withIss, token: signed(t, edB, kid("ed-b"), claims("iss", "evil", "aud", "parley")), wantErr: ErrInvalid},
		{name: "wrong_aud", cfg: withIss, token: signed(t, edB, kid("ed-b"), claims("iss", "parley-idp", "aud", "other")), wantErr: ErrInvalid},
		{name: "wrong_aud_array", cfg: withIss, token: signed(t, edB, kid("ed-b"), claims("iss", "parley-idp", "aud", []string{"a", "b"})), wantErr: ErrInvalid},
		{name: "bad_sub", cfg: asym, token: signed(t, edB, kid("ed-b"), claims("sub", "a b")), wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			v := newVerifier(t, tc.cfg, now)
			got, err := v.Verify(tc.token)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, error %v; want error %v", got, err, tc.wantErr)
				}
				if got != (Claims{}) {
					t.Errorf("got claims %+v with an error, want zero", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if got.User != tc.want.User || got.Device != tc.want.Device || !got.Expires.Equal(tc.want.Expires) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// swapHeader replaces the header part of tok, keeping its signature.
func swapHeader(t *testing.T, tok string, h map[string]any) string {
	t.Helper()
	parts := strings.Split(swapClaims(t, tok, h), ".")
	orig := strings.Split(tok, ".")
	return parts[1] + "." + orig[1] + "." + orig[2]
}

func TestVerifyUnknownKidIsMarked(t *testing.T) {
	keys(t)
	v := newVerifier(t, asymConfig(t), t0)
	_, err := v.Verify(signed(t, rsaA, kid("nope"), claims()))
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrInvalid and ErrUnknownKey", err)
	}
}

func TestNewVerifierKeyErrors(t *testing.T) {
	keys(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"missing_pem", Config{PublicKeys: []string{dir + "/none.pem"}}, "auth.public_keys: cannot read"},
		{"rsa_1024_pem", Config{PublicKeys: []string{writeFile(t, dir, "small.pem", rsaSmall.publicPEM(t))}}, "RSA key of 1024 bits"},
		{"private_pem", Config{PublicKeys: []string{writeFile(t, dir, "priv.pem", edB.privatePEM(t))}}, "want PUBLIC KEY"},
		{"missing_jwks_file", Config{JWKSFile: dir + "/none.json"}, "auth.jwks_file"},
		{"bad_jwks_file", Config{JWKSFile: writeFile(t, dir, "bad.json", []byte("{"))}, "cannot decode JWKS"},
		{"no_usable_key", Config{JWKSFile: writeFile(t, dir, "oct.json", []byte(`{"keys":[{"kty":"oct","k":"AA"}]}`))}, "no usable"},
		{"jwks_url_down", Config{JWKSURL: "http://127.0.0.1:1/jwks", JWKSTimeout: time.Second}, "cannot fetch auth.jwks_url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(tc.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// pollVerify calls Verify until ok (want nil) or !ok (want an error)
// holds, failing after a deadline.
func pollVerify(t *testing.T, v *Verifier, tok string, wantOK bool) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(tok)
		if (err == nil) == wantOK {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatalf("Verify still returns %v after 10s (want ok=%v)", err, wantOK)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastRefresh shortens v's refresh pacing for tests.
func fastRefresh(v *Verifier, interval time.Duration) {
	v.mu.Lock()
	v.interval, v.kidInterval = interval, interval
	v.mu.Unlock()
}

func TestRotationJWKSFile(t *testing.T) {
	keys(t)
	dir := t.TempDir()
	path := writeFile(t, dir, "jwks.json", jwksOf(t, edB))
	v := newVerifier(t, Config{JWKSFile: path, Issuer: "idp"}, t0)
	t.Cleanup(v.wg.Wait)
	fastRefresh(v, time.Millisecond)
	tokA := signed(t, edB, kid("ed-b"), claims("iss", "idp"))
	tokB := signed(t, edC, kid("ed-c"), claims("iss", "idp"))
	mtime := time.Now()
	rewrite := func(ks ...testKey) {
		t.Helper()
		writeFile(t, dir, "jwks.json", jwksOf(t, ks...))
		mtime = mtime.Add(time.Second) // distinct even on coarse file systems
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify(tokA); err != nil {
		t.Fatalf("key A: got %v, want ok", err)
	}
	if _, err := v.Verify(tokB); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key B before rotation: got %v, want ErrUnknownKey", err)
	}
	rewrite(edB, edC)
	pollVerify(t, v, tokB, true)
	if _, err := v.Verify(tokA); err != nil {
		t.Fatalf("key A during rotation: got %v, want ok", err)
	}
	rewrite(edC)
	err := pollVerify(t, v, tokA, false)
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key A after removal: got %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(tokB); err != nil {
		t.Errorf("key B after rotation: got %v, want ok", err)
	}
	// A broken file keeps the last good keys.
	writeFile(t, dir, "jwks.json", []byte("{broken"))
	mtime = mtime.Add(time.Second)
	_ = os.Chtimes(path, mtime, mtime)
	if err := v.Refresh(context.Background()); err == nil {
		t.Error("Refresh of a broken file: got nil error")
	}
	if _, err := v.Verify(tokB); err != nil {
		t.Errorf("key B after a broken file: got %v, want ok", err)
	}
}

// jwksServer serves a JWKS document that tests replace.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	doc     []byte
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		doc := s.doc
		s.mu.Unlock()
		if doc == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte) {
	s.mu.Lock()
	s.doc = doc
	s.mu.Unlock()
}

func TestRotationJWKSURL(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	v := newVerifier(t, Config{JWKSURL: srv.URL + "/jwks.json"}, t0)
	t.Cleanup(v.wg.Wait)
	fastRefresh(v, time.Millisecond)
	tokA := signed(t, rsaA, kid("rsa-a"), claims())
	tokB := signed(t, edB, kid("ed-b"), claims())
	if _, err := v.Verify(tokA); err != nil {
		t.Fatalf("key A: got %v, want ok", err)
	}
	if _, err := v.Verify(tokB); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key B before rotation: got %v, want ErrUnknownKey", err)
	}
	srv.set(jwksOf(t, rsaA, edB))
	pollVerify(t, v, tokB, true)
	srv.set(jwksOf(t, edB))
	if err := pollVerify(t, v, tokA, false); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key A after removal: got %v, want ErrUnknownKey", err)
	}
	// The IdP going down keeps the last good keys.
	srv.set(nil)
	if err := v.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "HTTP 503") {
		t.Errorf("Refresh while down: got %v, want HTTP 503", err)
	}
	if _, err := v.Verify(tokB); err != nil {
		t.Errorf("key B while the IdP is down: got %v, want ok", err)
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	keys(t)
	srv := newJWKSServer(t, jwksOf(t, rsaA))
	v := newVerifier(t, Config{JWKSURL: srv.URL}, t0)
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("got %d fetches at start, want 1", got)
	}
	tok := signed(t, edB, kid("ed-b"), claims())
	for range 20 {
		if _, err := v.Verify(tok); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("got %v, want ErrUnknownKey", err)
		}
		v.wg.Wait()
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("got %d fetches after 20 unknown-kid tokens within 10s, want 2 (start + one re-fetch)", got)
	}
	// Known kids never trigger a fetch before jwks_refresh.
	for range 20 {
		if _, err := v.Verify(signed(t, rsaA, kid("rsa-a"), claims())); err != nil {
			t.Fatal(err)
		}
	}
	v.wg.Wait()
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("got %d fetches, want still 2", got)
	}
}

func TestJWKSURLRedirectToRemoteHTTPRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://idp.example/jwks", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	_, err := NewVerifier(Config{JWKSURL: srv.URL, JWKSTimeout: 2 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "http is allowed only for loopback hosts") {
		t.Fatalf("got %v, want the redirect refused", err)
	}
}

func TestIssueWithVerifies(t *testing.T) {
	keys(t)
	cfg := asymConfig(t)
	cfg.Issuer, cfg.Audience = "idp", "parley"
	v := newVerifier(t, cfg, t0.Add(time.Minute))
	for _, k := range []testKey{rsaA, edB} {
		tok, err := IssueWith(k.signer(t, k.kid), cfg, "alice", "phone", time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		c, err := v.Verify(tok)
		if err != nil || c.User != "alice" || c.Device != "phone" || !c.Expires.Equal(t0.Add(time.Hour)) {
			t.Errorf("%s: got %+v, %v", k.alg, c, err)
		}
		// Without a kid, two keys are ambiguous.
		tok, _ = IssueWith(k.signer(t, ""), cfg, "alice", "", time.Hour, t0)
		if _, err := v.Verify(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s without kid: got %v, want ErrInvalid", k.alg, err)
		}
	}
	if _, err := Issue(Config{}, "alice", "", time.Hour, t0); err == nil {
		t.Error("Issue without a secret: got nil error")
	}
}
