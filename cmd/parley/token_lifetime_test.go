package main

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

// TestTokenMaxLifetime: parley token refuses a -ttl over auth.max_lifetime
// (default 24h) instead of minting a token every verifier refuses.
func TestTokenMaxLifetime(t *testing.T) {
	secret := strings.Repeat("s", 32)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"default_ttl", nil, ""},
		{"at_default_max", []string{"-ttl", "24h"}, ""},
		{"over_default_max", []string{"-ttl", "25h"}, "auth.max_lifetime 24h0m0s"},
		{"far_over_default_max", []string{"-ttl", "1000h"}, "auth.max_lifetime 24h0m0s"},
		{"configured_max", []string{"-set", "auth.max_lifetime=48h", "-ttl", "48h"}, ""},
		{"over_configured_max", []string{"-set", "auth.max_lifetime=1h", "-ttl", "2h"}, "auth.max_lifetime 1h0m0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-set", "auth.secret=" + secret, "-user", "alice"}, tc.args...)
			tok, err := runTokenT(t, args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg := auth.Config{Secret: secret, MaxLifetime: 48 * time.Hour}
			if c := verifyWith(t, cfg, tok); time.Until(c.Expires) > 48*time.Hour {
				t.Errorf("got exp %s, want within 48h", c.Expires)
			}
		})
	}
}
