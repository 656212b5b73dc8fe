package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

func runTokenT(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := tokenCmd(args, &out)
	return strings.TrimSpace(out.String()), err
}

func verifyWith(t *testing.T, cfg auth.Config, tok string) auth.Claims {
	t.Helper()
	v, err := auth.NewVerifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("cannot verify %q: %v", tok, err)
	}
	return c
}

func TestTokenHS256Default(t *testing.T) {
	secret := strings.Repeat("s", 32)
	tok, err := runTokenT(t, "-set", "auth.secret="+secret, "-user", "alice", "-device", "phone", "-ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	c := verifyWith(t, auth.Config{Secret: secret}, tok)
	if c.User != "alice" || c.Device != "phone" || time.Until(c.Expires) > time.Hour {
		t.Errorf("got %+v, want alice/phone within 1h", c)
	}
	if _, err := runTokenT(t, "-user", "alice"); err == nil || !strings.Contains(err.Error(), "auth.secret") {
		t.Errorf("no secret: got %v, want an auth.secret error", err)
	}
	if _, err := runTokenT(t, "-set", "auth.secret="+secret); err == nil || !strings.Contains(err.Error(), "-user is required") {
		t.Errorf("no user: got %v", err)
	}
	if _, err := runTokenT(t, "-set", "auth.secret="+secret, "-user", "a", "-alg", "EdDSA"); err == nil {
		t.Error("-alg without -key: got nil error")
	}
}

func TestTokenGenKeyAndSign(t *testing.T) {
	for _, kind := range []string{"ed25519", "rsa"} {
		t.Run(kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			out, err := runTokenT(t, "-gen-key", kind, "-kid", "k1", "-out", dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"k1.key", "k1.pem", "jwks.json"} {
				if !strings.Contains(out, filepath.Join(dir, f)) {
					t.Errorf("output %q does not name %s", out, f)
				}
			}
			st, err := os.Stat(filepath.Join(dir, "k1.key"))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("private key: got %v, %v; want mode 0600", st, err)
			}
			if _, err := runTokenT(t, "-gen-key", kind, "-kid", "k1", "-out", dir); err == nil {
				t.Error("second run: got nil error, want a refusal to overwrite")
			}
			cfg := auth.Config{Issuer: "idp"}
			tok, err := runTokenT(t, "-set", "auth.issuer=idp", "-user", "bob", "-key", filepath.Join(dir, "k1.key"), "-kid", "k1")
			if err != nil {
				t.Fatal(err)
			}
			withJWKS := cfg
			withJWKS.JWKSFile = filepath.Join(dir, "jwks.json")
			if c := verifyWith(t, withJWKS, tok); c.User != "bob" {
				t.Errorf("jwks_file: got %+v, want bob", c)
			}
			withPEM := cfg
			withPEM.PublicKeys = []string{filepath.Join(dir, "k1.pem")}
			if c := verifyWith(t, withPEM, tok); c.User != "bob" {
				t.Errorf("public_keys: got %+v, want bob", c)
			}
			wrongAlg := map[string]string{"ed25519": "RS256", "rsa": "EdDSA"}[kind]
			if _, err := runTokenT(t, "-user", "bob", "-key", filepath.Join(dir, "k1.key"), "-alg", wrongAlg); err == nil {
				t.Errorf("-alg %s with a %s key: got nil error", wrongAlg, kind)
			}
		})
	}
	if _, err := runTokenT(t, "-gen-key", "dsa", "-out", t.TempDir()); err == nil {
		t.Error("-gen-key dsa: got nil error")
	}
	if _, err := runTokenT(t, "-gen-key", "ed25519", "-kid", "../x", "-out", t.TempDir()); err == nil {
		t.Error("-kid ../x: got nil error")
	}
}
