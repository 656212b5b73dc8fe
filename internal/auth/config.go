package auth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The signature algorithms a Verifier can accept (JWS "alg" values).
const (
	HS256 = "HS256" // HMAC-SHA256 with Config.Secret
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of at least 2048 bits
	EdDSA = "EdDSA" // Ed25519
)

// Limits.
const (
	// MaxTokenBytes is the longest token Verify looks at.
	MaxTokenBytes = 4096
	// MinSecretBytes is the shortest HS256 secret accepted.
	MinSecretBytes = 32
	// MinRSABits is the smallest RSA modulus accepted.
	MinRSABits = 2048
	// maxRSABits bounds the cost of one verification.
	maxRSABits = 8192
	// maxJWKSBytes bounds a JWKS document (file or URL).
	maxJWKSBytes = 1 << 20
	// maxJWKSKeys bounds the keys of one JWKS document.
	maxJWKSKeys = 100
	// kidRefreshInterval rate-limits the JWKS re-fetch that a token naming
	// an unknown kid triggers (key rotation).
	kidRefreshInterval = 10 * time.Second
	// minJWKSRefresh is the shortest Config.JWKSRefresh accepted.
	minJWKSRefresh = time.Second
	// DefaultMaxLifetime is the default Config.MaxLifetime: the longest
	// an access token may live (exp - iat).
	DefaultMaxLifetime = 24 * time.Hour
)

// Config configures token verification (the `auth:` section of every
// tier's configuration).
type Config struct {
	// Secret is the HS256 key shared with the token issuer, at least 32
	// bytes. Required when HS256 is allowed; must be empty otherwise.
	Secret string `yaml:"secret"`
	// SecretFile names a file holding Secret (surrounding white space
	// trimmed), so the secret never sits on a command line or in the
	// configuration file; set one of the two. Read by the parley command
	// when it loads its configuration (ResolveSecretFile).
	SecretFile string `yaml:"secret_file"`
	// Issuer, when set, must match the token's iss claim. Default none
	// (any issuer).
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be in the token's aud claim (a string or an
	// array). Default none (any audience).
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s;
	// zero means the default.
	Leeway time.Duration `yaml:"leeway"`
	// Algorithms is the allow-list of token algorithms: HS256, RS256,
	// EdDSA. Empty means derived from the key sources: HS256 when Secret
	// is set, plus RS256 and EdDSA when PublicKeys, JWKSFile or JWKSURL is
	// set. "none" is never accepted.
	Algorithms []string `yaml:"algorithms"`
	// PublicKeys are PEM files of RSA (PKIX "PUBLIC KEY" or PKCS#1 "RSA
	// PUBLIC KEY") or Ed25519 (PKIX) public keys. A key's kid is its file's
	// base name without the extension (keys/2026-03.pem has kid
	// "2026-03"), so name the files after the kids your issuer puts in
	// token headers. Read once at start. Default none.
	PublicKeys []string `yaml:"public_keys"`
	// JWKSFile is a local JWKS (RFC 7517) JSON file of public keys. Its
	// modification time is checked every JWKSRefresh and the file re-read
	// when it changed. Default none.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is fetched at start (a failure stops the start) and every
	// JWKSRefresh; https only, except http for loopback hosts
	// (localhost, 127.0.0.0/8, ::1). Default none.
	JWKSURL string `yaml:"jwks_url"`
	// JWKSRefresh is how often JWKSFile and JWKSURL are checked. A token
	// naming an unknown kid also triggers a check, at most once per 10s
	// (key rotation). Checks run in the background, triggered by Verify:
	// Verify never waits for them. Default 5m; zero means the default;
	// at least 1s.
	JWKSRefresh time.Duration `yaml:"jwks_refresh"`
	// JWKSTimeout bounds one JWKS fetch. Default 5s; zero means the
	// default.
	JWKSTimeout time.Duration `yaml:"jwks_timeout"`
	// MaxLifetime is the longest lifetime of an access token: a token
	// whose exp - iat (exp - now when it has no iat) exceeds it by more
	// than Leeway is refused, and Issue/IssueWith refuse a longer ttl.
	// Default 24h; zero means the default (there is no "no limit":
	// set a larger value); negative is a configuration error.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// Default returns the default configuration (with no key source: set a
// secret or public keys).
func Default() Config {
	return Config{Leeway: 30 * time.Second, JWKSRefresh: 5 * time.Minute, JWKSTimeout: 5 * time.Second, MaxLifetime: DefaultMaxLifetime}
}

// withDefaults fills zero durations with their defaults.
func (c Config) withDefaults() Config {
	d := Default()
	if c.Leeway == 0 {
		c.Leeway = d.Leeway
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = d.JWKSRefresh
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = d.JWKSTimeout
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = d.MaxLifetime
	}
	return c
}

// hasPublicKeySource reports whether an asymmetric key source is set.
func (c Config) hasPublicKeySource() bool {
	return len(c.PublicKeys) > 0 || c.JWKSFile != "" || c.JWKSURL != ""
}

// AllowedAlgorithms returns the algorithms tokens may use: Algorithms, or
// the default derived from the key sources when it is empty.
func (c Config) AllowedAlgorithms() []string {
	if len(c.Algorithms) > 0 {
		return slices.Clone(c.Algorithms)
	}
	var out []string
	if c.Secret != "" {
		out = append(out, HS256)
	}
	if c.hasPublicKeySource() || c.Secret == "" {
		out = append(out, RS256, EdDSA)
	}
	return out
}

// Validate reports every problem of c at once. It does not read the key
// files; NewVerifier does.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	algs := c.AllowedAlgorithms()
	for _, a := range c.Algorithms {
		switch a {
		case HS256, RS256, EdDSA:
		default:
			if strings.EqualFold(a, "none") {
				add("auth.algorithms: %q is never allowed", a)
			} else {
				add("auth.algorithms: %q is not supported (want HS256, RS256 or EdDSA)", a)
			}
		}
	}
	hs := slices.Contains(algs, HS256)
	asym := slices.Contains(algs, RS256) || slices.Contains(algs, EdDSA)
	sources := c.hasPublicKeySource()
	switch {
	case hs && len(c.Secret) < MinSecretBytes:
		if c.Secret == "" && len(c.Algorithms) == 0 {
			add("auth.secret: required for HS256 tokens (at least %d bytes), unless auth.public_keys, auth.jwks_file or auth.jwks_url is set", MinSecretBytes)
		} else {
			add("auth.secret: must be at least %d bytes, got %d", MinSecretBytes, len(c.Secret))
		}
	case !hs && c.Secret != "":
		add("auth.secret: set, but HS256 is not in auth.algorithms %v", algs)
	}
	switch {
	case asym && !sources && len(c.Algorithms) == 0:
		add("auth.secret: required (at least %d bytes) for HS256 tokens; or set auth.public_keys, auth.jwks_file or auth.jwks_url for RS256/EdDSA tokens", MinSecretBytes)
	case asym && !sources:
		add("auth.algorithms: %v need public keys: set auth.public_keys, auth.jwks_file or auth.jwks_url", algs)
	case !asym && sources:
		add("auth.algorithms: public keys are configured but neither RS256 nor EdDSA is allowed")
	}
	kids := map[string]string{}
	for _, p := range c.PublicKeys {
		if p == "" {
			add("auth.public_keys: empty path")
			continue
		}
		kid := kidOfPath(p)
		if kid == "" {
			add("auth.public_keys: %q: the file name (the kid) is empty", p)
		} else if other, dup := kids[kid]; dup {
			add("auth.public_keys: %q and %q have the same kid %q", other, p, kid)
		}
		kids[kid] = p
	}
	if c.JWKSURL != "" {
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			add("auth.jwks_url: %v", err)
		}
	}
	if c.JWKSRefresh < 0 || (c.JWKSRefresh > 0 && c.JWKSRefresh < minJWKSRefresh) {
		add("auth.jwks_refresh: must be at least %s, got %s", minJWKSRefresh, c.JWKSRefresh)
	}
	if c.JWKSTimeout < 0 {
		add("auth.jwks_timeout: must not be negative, got %s", c.JWKSTimeout)
	}
	if c.Leeway < 0 {
		add("auth.leeway: must not be negative, got %s", c.Leeway)
	}
	if c.MaxLifetime < 0 {
		add("auth.max_lifetime: must not be negative (0 means the default, %s), got %s", DefaultMaxLifetime, c.MaxLifetime)
	}
	return errors.Join(errs...)
}

// kidOfPath returns the kid of a public key file: its base name without
// the extension.
func kidOfPath(p string) string {
	base := filepath.Base(p)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// checkJWKSURL accepts https URLs, and http URLs of loopback hosts.
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: http is allowed only for loopback hosts; use https", s)
	}
	return fmt.Errorf("%q: scheme must be https", s)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ResolveSecretFile reads SecretFile into Secret. Setting both is an
// error.
func (c *Config) ResolveSecretFile() error {
	if c.SecretFile == "" {
		return nil
	}
	if c.Secret != "" {
		return errors.New("auth.secret and auth.secret_file: set one")
	}
	b, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return fmt.Errorf("auth.secret_file: %w", err)
	}
	c.Secret = strings.TrimSpace(string(b))
	return nil
}
