package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

func runToken(args []string) error { return tokenCmd(args, os.Stdout) }

// tokenCmd prints a token, or with -gen-key writes a signing key pair and
// its JWKS. By default the token is HS256 with auth.secret from the
// configuration; with -key it is signed by that private key (RS256 or
// EdDSA), and the configuration supplies only issuer and audience.
func tokenCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "user id (required unless -gen-key)")
	device := fs.String("device", "", "device id to embed (optional)")
	ttl := fs.Duration("ttl", auth.DefaultMaxLifetime, "token lifetime, at most auth.max_lifetime (default 24h; verifiers refuse longer-lived tokens)")
	keyPath := fs.String("key", "", "PEM private key (RSA or Ed25519) to sign with instead of auth.secret")
	kid := fs.String("kid", "", "key id: put in the token header with -key; names the files with -gen-key (default <kind>-<yyyymmdd>)")
	alg := fs.String("alg", "", "RS256 or EdDSA with -key (default: from the key)")
	genKey := fs.String("gen-key", "", "generate a key pair instead of a token: ed25519 or rsa")
	outDir := fs.String("out", ".", "with -gen-key: directory for <kid>.key (private), <kid>.pem (public) and jwks.json")
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		if *keyPath != "" || *genKey != "" {
			return nil // the secret is not used
		}
		return c.Auth.Validate()
	})
	if err != nil || done {
		return err
	}
	if *genKey != "" {
		if *kid == "" {
			*kid = *genKey + "-" + time.Now().UTC().Format("20060102")
		}
		return writeKeyPair(out, *genKey, *kid, *outDir)
	}
	if *user == "" {
		return errors.New("-user is required")
	}
	maxLife := cfg.Auth.MaxLifetime
	if maxLife == 0 {
		maxLife = auth.DefaultMaxLifetime
	}
	if *ttl > maxLife {
		return fmt.Errorf("-ttl %s exceeds auth.max_lifetime %s: verifiers would refuse the token (raise auth.max_lifetime on every node first)", *ttl, maxLife)
	}
	var tok string
	if *keyPath == "" {
		if *alg != "" && *alg != auth.HS256 {
			return fmt.Errorf("-alg %s needs -key", *alg)
		}
		tok, err = auth.Issue(cfg.Auth, *user, *device, *ttl, time.Now())
	} else {
		var b []byte
		if b, err = os.ReadFile(*keyPath); err != nil {
			return fmt.Errorf("cannot read -key: %w", err)
		}
		var s *auth.Signer
		if s, err = auth.NewSigner(b, *alg, *kid); err != nil {
			return fmt.Errorf("-key %s: %w", *keyPath, err)
		}
		tok, err = auth.IssueWith(s, cfg.Auth, *user, *device, *ttl, time.Now())
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

// writeKeyPair generates a key of kind and writes dir/<kid>.key (mode
// 0600), dir/<kid>.pem and dir/jwks.json, refusing to overwrite.
func writeKeyPair(out io.Writer, kind, kid, dir string) error {
	if kid == "" || filepath.Base(kid) != kid {
		return fmt.Errorf("-kid %q: want a plain name", kid)
	}
	kp, err := auth.GenerateKeyPair(kind, kid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{kid + ".key", kp.PrivatePEM, 0o600},
		{kid + ".pem", kp.PublicPEM, 0o644},
		{"jwks.json", kp.JWKS, 0o644},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return fmt.Errorf("cannot create %s: %w", p, err)
		}
		_, err = fh.Write(f.data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("cannot write %s: %w", p, err)
		}
		fmt.Fprintln(out, "wrote", p)
	}
	fmt.Fprintf(out, "sign with:   parley token -user U -key %s -kid %s\n", filepath.Join(dir, kid+".key"), kid)
	fmt.Fprintf(out, "verify with: auth.jwks_file: %s  (or auth.public_keys: [%s])\n", filepath.Join(dir, "jwks.json"), filepath.Join(dir, kid+".pem"))
	return nil
}
