package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/record"
)

// Errors returned by Verify, wrapped with detail. Callers map them to an
// HTTP 401 (or a close code for a live session).
var (
	ErrMissing = errors.New("auth: no token")
	ErrInvalid = errors.New("auth: invalid token")
	ErrExpired = errors.New("auth: token expired")
)

// Config configures token verification.
type Config struct {
	// Secret is the HS256 key. Required; at least 32 bytes.
	Secret string `yaml:"secret"`
	// Issuer, when set, must match the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be in the token's aud claim.
	Audience string `yaml:"audience"`
	// Leeway is the clock skew allowed on exp and nbf. Default 30s; zero means the default.
	Leeway time.Duration `yaml:"leeway"`
}

// Default returns the default configuration (with an empty secret).
func Default() Config { return Config{Leeway: 30 * time.Second} }

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Secret) < 32 {
		errs = append(errs, fmt.Errorf("auth.secret must be at least 32 bytes, got %d", len(c.Secret)))
	}
	if c.Leeway < 0 {
		errs = append(errs, fmt.Errorf("auth.leeway must not be negative, got %s", c.Leeway))
	}
	return errors.Join(errs...)
}

// Claims is what a verified token says.
type Claims struct {
	User    string    // sub
	Device  string    // dev claim; "" when absent
	Expires time.Time // exp; zero when the token has none
}

type tokenClaims struct {
	Device string `json:"dev,omitempty"`
	jwt.RegisteredClaims
}

// Verifier checks tokens. Safe for concurrent use.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
	key    []byte
	now    func() time.Time
}

// NewVerifier returns a Verifier for cfg. now may be nil (time.Now).
func NewVerifier(cfg Config, now func() time.Time) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = Default().Leeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Verifier{cfg: cfg, parser: jwt.NewParser(opts...), key: []byte(cfg.Secret), now: now}, nil
}

// Verify checks a compact JWS and returns its claims. The token must be
// HS256-signed with the configured secret, carry exp (and nbf if present)
// valid at now, and a sub that is a valid user id.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissing
	}
	if len(token) > 4096 {
		return Claims{}, fmt.Errorf("%w: token longer than 4096 bytes", ErrInvalid)
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.key, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !record.ValidID(tc.Subject) {
		return Claims{}, fmt.Errorf("%w: sub %q is not a valid user id", ErrInvalid, tc.Subject)
	}
	if tc.Device != "" && !record.ValidID(tc.Device) {
		return Claims{}, fmt.Errorf("%w: dev %q is not a valid device id", ErrInvalid, tc.Device)
	}
	c := Claims{User: tc.Subject, Device: tc.Device}
	if tc.ExpiresAt != nil {
		c.Expires = tc.ExpiresAt.Time
	}
	return c, nil
}

// Issue signs a token for user (and optionally device) valid for ttl. It is
// meant for development tokens and tests; production deployments issue
// tokens from their own identity service with the same secret and claims.
func Issue(cfg Config, user, device string, ttl time.Duration, now time.Time) (string, error) {
	if !record.ValidID(user) {
		return "", fmt.Errorf("cannot issue token: invalid user id %q", user)
	}
	if device != "" && !record.ValidID(device) {
		return "", fmt.Errorf("cannot issue token: invalid device id %q", device)
	}
	tc := tokenClaims{
		Device: device,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			Issuer:    cfg.Issuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	if cfg.Audience != "" {
		tc.Audience = jwt.ClaimStrings{cfg.Audience}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString([]byte(cfg.Secret))
	if err != nil {
		return "", fmt.Errorf("cannot sign token for %s: %w", user, err)
	}
	return s, nil
}

// Config returns the verifier's configuration (used to sign dev tokens
// with the same secret).
func (v *Verifier) Config() Config { return v.cfg }
