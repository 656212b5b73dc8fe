package auth

import (
	"crypto/sha256"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerifyNumericDates: exp, nbf and iat must be JSON numbers (RFC 7519
// section 2). jwt.NumericDate alone takes a numeric string.
func TestVerifyNumericDates(t *testing.T) {
	base := Config{Secret: secret}
	str := func(tm time.Time) string { return strconv.FormatInt(tm.Unix(), 10) }
	tests := []struct {
		name    string
		claims  map[string]any
		wantErr error
	}{
		{"exp_number", claims(), nil},
		{"exp_fraction", claims("exp", float64(t0.Add(time.Hour).Unix())+0.5), nil},
		{"exp_numeric_string", claims("exp", str(t0.Add(time.Hour))), ErrInvalid},
		{"exp_far_numeric_string", claims("exp", "1999999999"), ErrInvalid},
		{"exp_bool", claims("exp", true), ErrInvalid},
		{"exp_object", claims("exp", map[string]any{"n": 1}), ErrInvalid},
		{"nbf_numeric_string", claims("nbf", str(t0.Add(-time.Minute))), ErrInvalid},
		{"iat_numeric_string", claims("iat", str(t0)), ErrInvalid},
		{"iat_absent", claims("iat", nil), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t, base, t0).Verify(token(t, hs256, tc.claims, secret, sha256.New))
			if tc.wantErr == nil && err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestVerifyMaxLifetime: a token living longer than auth.max_lifetime
// (exp - iat, or exp - now without iat) plus the leeway is refused.
func TestVerifyMaxLifetime(t *testing.T) {
	base := Config{Secret: secret} // max_lifetime: the default, 24h
	long := Config{Secret: secret, MaxLifetime: 720 * time.Hour}
	short := Config{Secret: secret, MaxLifetime: time.Hour, Leeway: time.Second}
	at := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	tests := []struct {
		name    string
		cfg     Config
		claims  map[string]any
		wantErr error
	}{
		{"default_24h", base, claims("exp", at(24*time.Hour)), nil},
		{"default_24h_plus_leeway", base, claims("exp", at(24*time.Hour+30*time.Second)), nil},
		{"default_over_leeway", base, claims("exp", at(24*time.Hour+31*time.Second)), ErrInvalid},
		{"default_1000h", base, claims("exp", at(1000*time.Hour)), ErrInvalid},
		{"old_iat", base, claims("iat", at(-30*time.Hour), "exp", at(time.Hour)), ErrInvalid},
		{"no_iat_within", base, claims("iat", nil, "exp", at(23*time.Hour)), nil},
		{"no_iat_over", base, claims("iat", nil, "exp", at(25*time.Hour)), ErrInvalid},
		{"configured_720h", long, claims("exp", at(700*time.Hour)), nil},
		{"configured_720h_over", long, claims("exp", at(721*time.Hour)), ErrInvalid},
		{"configured_1h", short, claims("exp", at(time.Hour)), nil},
		{"configured_1h_over", short, claims("exp", at(2*time.Hour)), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newVerifier(t, tc.cfg, t0).Verify(token(t, hs256, tc.claims, secret, sha256.New))
			if tc.wantErr == nil && err != nil {
				t.Fatalf("got %v, want nil", err)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), "auth.max_lifetime") {
					t.Errorf("got %q, want the error to name auth.max_lifetime", err)
				}
			}
		})
	}
}

func TestMaxLifetimeConfig(t *testing.T) {
	if got := Default().MaxLifetime; got != 24*time.Hour {
		t.Errorf("Default().MaxLifetime: got %s, want 24h", got)
	}
	v := newVerifier(t, Config{Secret: secret}, t0)
	if got := v.Config().MaxLifetime; got != DefaultMaxLifetime {
		t.Errorf("zero max_lifetime: got %s, want the default %s", got, DefaultMaxLifetime)
	}
	err := Config{Secret: secret, MaxLifetime: -time.Second}.Validate()
	if err == nil || !strings.Contains(err.Error(), "auth.max_lifetime") {
		t.Errorf("negative max_lifetime: got %v, want an auth.max_lifetime error", err)
	}
}

// TestIssueMaxLifetime: Issue refuses a ttl that verifiers with the same
// configuration would refuse.
func TestIssueMaxLifetime(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		ttl     time.Duration
		wantErr bool
	}{
		{"default_24h", Config{Secret: secret}, 24 * time.Hour, false},
		{"default_25h", Config{Secret: secret}, 25 * time.Hour, true},
		{"default_1000h", Config{Secret: secret}, 1000 * time.Hour, true},
		{"expired_for_tests", Config{Secret: secret}, -time.Hour, false},
		{"configured_48h", Config{Secret: secret, MaxLifetime: 48 * time.Hour}, 48 * time.Hour, false},
		{"configured_1h_2h", Config{Secret: secret, MaxLifetime: time.Hour}, 2 * time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := Issue(tc.cfg, "alice", "", tc.ttl, t0)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "auth.max_lifetime") {
					t.Fatalf("got %v, want an auth.max_lifetime error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.ttl < 0 {
				return
			}
			if _, err := newVerifier(t, tc.cfg, t0).Verify(tok); err != nil {
				t.Errorf("Verify: got %v, want nil", err)
			}
		})
	}
}
