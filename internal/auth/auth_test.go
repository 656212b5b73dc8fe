package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"
	"testing"
	"time"
)

const (
	secret      = "0123456789abcdef0123456789abcdef" // 32 bytes
	otherSecret = "fedcba9876543210fedcba9876543210"
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// token builds a compact JWS by hand: header and claims as given, signed
// with HMAC over the secret using hashFn (nil: empty signature).
func token(t testing.TB, header, claims map[string]any, key string, hashFn func() hash.Hash) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("cannot marshal %v: %v", v, err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	if hashFn == nil {
		return signing + "."
	}
	m := hmac.New(hashFn, []byte(key))
	m.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var hs256 = map[string]any{"alg": "HS256", "typ": "JWT"}

// claims returns valid claims for alice at t0, modified by kv pairs (a nil
// value deletes the claim).
func claims(kv ...any) map[string]any {
	c := map[string]any{
		"sub": "alice",
		"dev": "phone",
		"iat": t0.Unix(),
		"exp": t0.Add(time.Hour).Unix(),
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
			continue
		}
		c[k] = kv[i+1]
	}
	return c
}

func newVerifier(t *testing.T, cfg Config, now time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg, func() time.Time { return now })
	if err != nil {
		t.Fatalf("cannot create verifier: %v", err)
	}
	return v
}

func TestVerify(t *testing.T) {
	base := Config{Secret: secret}
	withIss := Config{Secret: secret, Issuer: "parley-idp", Audience: "parley"}
	tests := []struct {
		name    string
		cfg     Config
		now     time.Time
		token   string
		want    Claims
		wantErr error
	}{
		{name: "valid", cfg: base, now: t0, token: token(t, hs256, claims(), secret, sha256.New),
			want: Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "valid_no_device", cfg: base, now: t0, token: token(t, hs256, claims("dev", nil), secret, sha256.New),
			want: Claims{User: "alice", Expires: t0.Add(time.Hour)}},
		{name: "valid_no_typ", cfg: base, now: t0, token: token(t, map[string]any{"alg": "HS256"}, claims(), secret, sha256.New),
			want: Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "expired_within_leeway", cfg: base, now: t0.Add(time.Hour + 29*time.Second), token: token(t, hs256, claims(), secret, sha256.New),
			want: Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "expired", cfg: base, now: t0.Add(time.Hour + 31*time.Second), token: token(t, hs256, claims(), secret, sha256.New),
			wantErr: ErrExpired},
		{name: "expired_custom_leeway", cfg: Config{Secret: secret, Leeway: time.Second}, now: t0.Add(time.Hour + 2*time.Second),
			token: token(t, hs256, claims(), secret, sha256.New), wantErr: ErrExpired},
		{name: "nbf_future", cfg: base, now: t0, token: token(t, hs256, claims("nbf", t0.Add(time.Minute).Unix()), secret, sha256.New),
			wantErr: ErrInvalid},
		{name: "nbf_within_leeway", cfg: base, now: t0, token: token(t, hs256, claims("nbf", t0.Add(20*time.Second).Unix()), secret, sha256.New),
			want: Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "nbf_past", cfg: base, now: t0, token: token(t, hs256, claims("nbf", t0.Add(-time.Minute).Unix()), secret, sha256.New),
			want: Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "wrong_secret", cfg: base, now: t0, token: token(t, hs256, claims(), otherSecret, sha256.New), wantErr: ErrInvalid},
		{name: "tampered_claims", cfg: base, now: t0, token: swapClaims(t, token(t, hs256, claims(), secret, sha256.New), claims("sub", "mallory")),
			wantErr: ErrInvalid},
		{name: "alg_none", cfg: base, now: t0, token: token(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(), "", nil), wantErr: ErrInvalid},
		{name: "alg_none_upper", cfg: base, now: t0, token: token(t, map[string]any{"alg": "NONE"}, claims(), "", nil), wantErr: ErrInvalid},
		{name: "hs256_empty_signature", cfg: base, now: t0, token: token(t, hs256, claims(), "", nil), wantErr: ErrInvalid},
		{name: "hs384", cfg: base, now: t0, token: token(t, map[string]any{"alg": "HS384"}, claims(), secret, sha512.New384), wantErr: ErrInvalid},
		{name: "hs512", cfg: base, now: t0, token: token(t, map[string]any{"alg": "HS512"}, claims(), secret, sha512.New), wantErr: ErrInvalid},
		// Algorithm confusion: an RS256 header HMAC-signed with the secret.
		{name: "rs256_hmac_signed", cfg: base, now: t0, token: token(t, map[string]any{"alg": "RS256"}, claims(), secret, sha256.New), wantErr: ErrInvalid},
		{name: "es256", cfg: base, now: t0, token: token(t, map[string]any{"alg": "ES256"}, claims(), secret, sha256.New), wantErr: ErrInvalid},
		{name: "missing_exp", cfg: base, now: t0, token: token(t, hs256, claims("exp", nil), secret, sha256.New), wantErr: ErrInvalid},
		{name: "exp_string", cfg: base, now: t0, token: token(t, hs256, claims("exp", "tomorrow"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "missing_sub", cfg: base, now: t0, token: token(t, hs256, claims("sub", nil), secret, sha256.New), wantErr: ErrInvalid},
		{name: "empty_sub", cfg: base, now: t0, token: token(t, hs256, claims("sub", ""), secret, sha256.New), wantErr: ErrInvalid},
		{name: "bad_sub_chars", cfg: base, now: t0, token: token(t, hs256, claims("sub", "al ice"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "bad_sub_colon", cfg: base, now: t0, token: token(t, hs256, claims("sub", "a:b"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "bad_sub_long", cfg: base, now: t0, token: token(t, hs256, claims("sub", strings.Repeat("a", 65)), secret, sha256.New), wantErr: ErrInvalid},
		{name: "bad_dev", cfg: base, now: t0, token: token(t, hs256, claims("dev", "ph/one"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "issuer_audience_ok", cfg: withIss, now: t0,
			token: token(t, hs256, claims("iss", "parley-idp", "aud", []string{"other", "parley"}), secret, sha256.New),
			want:  Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "issuer_mismatch", cfg: withIss, now: t0,
			token: token(t, hs256, claims("iss", "evil", "aud", "parley"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "issuer_missing", cfg: withIss, now: t0,
			token: token(t, hs256, claims("aud", "parley"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "audience_mismatch", cfg: withIss, now: t0,
			token: token(t, hs256, claims("iss", "parley-idp", "aud", "other"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "audience_missing", cfg: withIss, now: t0,
			token: token(t, hs256, claims("iss", "parley-idp"), secret, sha256.New), wantErr: ErrInvalid},
		{name: "issuer_not_configured_any_accepted", cfg: base, now: t0,
			token: token(t, hs256, claims("iss", "whoever", "aud", "whatever"), secret, sha256.New),
			want:  Claims{User: "alice", Device: "phone", Expires: t0.Add(time.Hour)}},
		{name: "too_long", cfg: base, now: t0,
			token: token(t, hs256, claims("pad", strings.Repeat("p", 4096)), secret, sha256.New), wantErr: ErrInvalid},
		{name: "empty", cfg: base, now: t0, token: "", wantErr: ErrMissing},
		{name: "garbage", cfg: base, now: t0, token: "not a token", wantErr: ErrInvalid},
		{name: "three_dots", cfg: base, now: t0, token: "..", wantErr: ErrInvalid},
		{name: "bad_base64", cfg: base, now: t0, token: "@@@.@@@.@@@", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, tc.cfg, tc.now)
			got, err := v.Verify(tc.token)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, error %v; want error %v", got, err, tc.wantErr)
				}
				if got != (Claims{}) {
					t.Errorf("got claims %+v with an error, want zero", got)
				}
				for _, other := range []error{ErrMissing, ErrInvalid, ErrExpired} {
					if other != tc.wantErr && errors.Is(err, other) {
						t.Errorf("got error %v, which is also %v", err, other)
					}
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

// swapClaims replaces the claims part of tok, keeping its signature.
func swapClaims(t *testing.T, tok string, c map[string]any) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; nil for no error
	}{
		{"ok", Config{Secret: secret}, nil},
		{"ok_default_leeway", Config{Secret: secret, Leeway: Default().Leeway}, nil},
		{"ok_defaults_and_secret", withSecret(Default()), nil},
		{"default_has_no_key_source", Default(), []string{"auth.secret: required"}},
		{"short_secret", Config{Secret: secret[:31]}, []string{"auth.secret: must be at least 32 bytes, got 31"}},
		{"negative_leeway", Config{Secret: secret, Leeway: -time.Second}, []string{"auth.leeway: must not be negative, got -1s"}},
		{"both", Config{Secret: "x", Leeway: -time.Second}, []string{"auth.secret", "auth.leeway"}},
		{"alg_none", Config{Secret: secret, Algorithms: []string{"HS256", "none"}}, []string{`auth.algorithms: "none" is never allowed`}},
		{"alg_unknown", Config{Secret: secret, Algorithms: []string{"HS256", "ES256"}}, []string{`auth.algorithms: "ES256" is not supported`}},
		{"secret_without_hs256", Config{Secret: secret, Algorithms: []string{RS256}, PublicKeys: []string{dir + "/a.pem"}},
			[]string{"auth.secret: set, but HS256 is not in auth.algorithms"}},
		{"hs256_without_secret", Config{Algorithms: []string{HS256}}, []string{"auth.secret: must be at least 32 bytes, got 0"}},
		{"rs256_without_keys", Config{Algorithms: []string{RS256}}, []string{"auth.algorithms: [RS256] need public keys"}},
		{"keys_without_asym_alg", Config{Secret: secret, Algorithms: []string{HS256}, JWKSFile: dir + "/k.json"},
			[]string{"auth.algorithms: public keys are configured but neither RS256 nor EdDSA is allowed"}},
		{"ok_public_keys_only", Config{PublicKeys: []string{dir + "/a.pem"}}, nil},
		{"ok_mixed", Config{Secret: secret, PublicKeys: []string{dir + "/a.pem"}}, nil},
		{"ok_explicit_mixed", Config{Secret: secret, Algorithms: []string{HS256, EdDSA}, JWKSURL: "https://idp.example/jwks.json"}, nil},
		{"ok_loopback_http", Config{JWKSURL: "http://127.0.0.1:9/jwks"}, nil},
		{"ok_localhost_http", Config{JWKSURL: "http://localhost:9/jwks"}, nil},
		{"ok_ipv6_loopback_http", Config{JWKSURL: "http://[::1]:9/jwks"}, nil},
		{"remote_http", Config{JWKSURL: "http://idp.example/jwks"}, []string{"auth.jwks_url: \"http://idp.example/jwks\": http is allowed only for loopback hosts"}},
		{"bad_scheme", Config{JWKSURL: "ftp://idp.example/jwks"}, []string{"auth.jwks_url:", "scheme must be https"}},
		{"no_host", Config{JWKSURL: "https:///jwks"}, []string{"auth.jwks_url:", "has no host"}},
		{"dup_kid", Config{PublicKeys: []string{dir + "/a.pem", dir + "/sub/a.pub"}}, []string{`auth.public_keys:`, `same kid "a"`}},
		{"empty_key_path", Config{PublicKeys: []string{""}}, []string{"auth.public_keys: empty path"}},
		{"short_refresh", Config{JWKSFile: "k.json", JWKSRefresh: time.Millisecond}, []string{"auth.jwks_refresh: must be at least 1s, got 1ms"}},
		{"negative_timeout", Config{JWKSFile: "k.json", JWKSTimeout: -time.Second}, []string{"auth.jwks_timeout: must not be negative"}},
		{"every_problem", Config{Secret: "short", Algorithms: []string{"none", HS256, RS256}, JWKSURL: "http://x.example", Leeway: -1},
			[]string{"auth.algorithms", "auth.secret", "auth.jwks_url", "auth.leeway"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Errorf("got error %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if _, err := NewVerifier(tc.cfg, nil); err == nil {
				t.Errorf("NewVerifier: got nil error for an invalid config")
			}
		})
	}
}

func withSecret(c Config) Config { c.Secret = secret; return c }

func TestAllowedAlgorithms(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"secret", Config{Secret: secret}, "[HS256]"},
		{"keys", Config{PublicKeys: []string{"a.pem"}}, "[RS256 EdDSA]"},
		{"nothing", Config{}, "[RS256 EdDSA]"},
		{"both", Config{Secret: secret, JWKSURL: "https://x"}, "[HS256 RS256 EdDSA]"},
		{"explicit", Config{Secret: secret, JWKSURL: "https://x", Algorithms: []string{EdDSA}}, "[EdDSA]"},
	}
	for _, tc := range tests {
		if got := fmt.Sprint(tc.cfg.AllowedAlgorithms()); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDefault(t *testing.T) {
	if got, want := Default().Leeway, 30*time.Second; got != want {
		t.Errorf("got leeway %s, want %s", got, want)
	}
	v := newVerifier(t, Config{Secret: secret}, t0)
	if got, want := v.Config().Leeway, 30*time.Second; got != want {
		t.Errorf("got verifier leeway %s, want %s (zero means the default)", got, want)
	}
}

func TestIssue(t *testing.T) {
	cfg := Config{Secret: secret, Issuer: "parley-idp", Audience: "parley"}
	tests := []struct {
		name    string
		user    string
		device  string
		wantErr bool
	}{
		{"user_and_device", "alice", "phone", false},
		{"user_only", "bob@example.com", "", false},
		{"empty_user", "", "phone", true},
		{"bad_user", "al ice", "", true},
		{"long_user", strings.Repeat("u", 65), "", true},
		{"bad_device", "alice", "ph:one", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Issue(cfg, tc.user, tc.device, time.Hour, t0)
			if tc.wantErr {
				if err == nil || tok != "" {
					t.Fatalf("got %q, %v; want an error", tok, err)
				}
				if !strings.HasPrefix(err.Error(), "cannot issue token") {
					t.Errorf("got error %q, want it to start with %q", err, "cannot issue token")
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			got, err := newVerifier(t, cfg, t0.Add(time.Minute)).Verify(tok)
			if err != nil {
				t.Fatalf("cannot verify issued token: %v", err)
			}
			want := Claims{User: tc.user, Device: tc.device, Expires: t0.Add(time.Hour)}
			if got.User != want.User || got.Device != want.Device || !got.Expires.Equal(want.Expires) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			// The same token fails where the audience differs or it has expired.
			other := cfg
			other.Audience = "elsewhere"
			if _, err := newVerifier(t, other, t0).Verify(tok); !errors.Is(err, ErrInvalid) {
				t.Errorf("other audience: got error %v, want %v", err, ErrInvalid)
			}
			if _, err := newVerifier(t, cfg, t0.Add(2*time.Hour)).Verify(tok); !errors.Is(err, ErrExpired) {
				t.Errorf("later: got error %v, want %v", err, ErrExpired)
			}
		})
	}
}

func TestVerifyConcurrent(t *testing.T) {
	v := newVerifier(t, Config{Secret: secret}, t0)
	tok, err := Issue(v.Config(), "alice", "", time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for range 50 {
				if _, err = v.Verify(tok); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("got error %v, want nil", err)
		}
	}
}
