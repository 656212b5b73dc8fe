package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
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
	// ErrUnknownKey is wrapped (beside ErrInvalid) when the token's kid
	// names no configured key; Verify then schedules a JWKS refresh.
	ErrUnknownKey = errors.New("auth: unknown key id")
)

// Claims is what a verified token says.
type Claims struct {
	User    string    // sub
	Device  string    // dev claim; "" when absent
	Expires time.Time // exp (always present on a verified token)
}

// tokenClaims is a token's payload. Its exp, nbf and iat shadow those of
// the embedded RegisteredClaims (the shallower JSON field wins) so they
// decode strictly: jwt.NumericDate also takes a numeric string such as
// "1999999999", which RFC 7519 does not allow.
type tokenClaims struct {
	Device    string       `json:"dev,omitempty"`
	ExpiresAt *numericDate `json:"exp,omitempty"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	IssuedAt  *numericDate `json:"iat,omitempty"`
	jwt.RegisteredClaims
}

// GetExpirationTime implements jwt.Claims with the strict exp.
func (c tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }

// GetNotBefore implements jwt.Claims with the strict nbf.
func (c tokenClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.date(), nil }

// GetIssuedAt implements jwt.Claims with the strict iat.
func (c tokenClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.date(), nil }

// numericDate is a JWT NumericDate that must be a JSON number (RFC 7519
// section 2); a string, even a numeric one, is refused.
type numericDate struct{ jwt.NumericDate }

func newNumericDate(t time.Time) *numericDate { return &numericDate{*jwt.NewNumericDate(t)} }

// UnmarshalJSON refuses anything but a JSON number.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errors.New("a NumericDate must be a JSON number")
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *numericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// Options are the optional dependencies of a Verifier.
type Options struct {
	// Now is the clock for exp, nbf and iat. Nil means time.Now.
	Now func() time.Time
	// Logger receives key refresh events. Nil means discard.
	Logger *slog.Logger
	// HTTPClient fetches Config.JWKSURL. Nil means a client bounded by
	// Config.JWKSTimeout that follows redirects only to URLs the config
	// would accept.
	HTTPClient *http.Client
}

// Verifier checks tokens. Verify is safe for concurrent use and never
// blocks on I/O: when the JWKS file or URL is due for a check (every
// Config.JWKSRefresh, or at most every 10s when a token names an unknown
// kid) it starts one background refresh, which ends within
// Config.JWKSTimeout, and goes on with the keys it has.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
	secret []byte // nil unless HS256 is allowed
	now    func() time.Time
	log    *slog.Logger
	static []publicKey // from Config.PublicKeys
	file   *jwksFile   // nil without Config.JWKSFile; used under refreshMu
	url    *jwksURL    // nil without Config.JWKSURL
	keys   atomic.Pointer[keySet]

	// Refresh pacing on the real clock (tests shorten them).
	interval    time.Duration
	kidInterval time.Duration

	refreshMu sync.Mutex     // held for a whole refresh (I/O); serializes refreshes
	wg        sync.WaitGroup // background refreshes

	mu         sync.Mutex // guards the following
	refreshing bool
	lastCheck  time.Time
	lastKid    time.Time
	fileKeys   []publicKey
	urlKeys    []publicKey
}

// NewVerifier returns a Verifier for cfg. now may be nil (time.Now).
func NewVerifier(cfg Config, now func() time.Time) (*Verifier, error) {
	return NewVerifierWith(cfg, Options{Now: now})
}

// NewVerifierWith returns a Verifier for cfg. It reads Config.PublicKeys
// and Config.JWKSFile and fetches Config.JWKSURL (within
// Config.JWKSTimeout); any failure there is an error, and so is a
// configuration that allows only RS256/EdDSA but yields no usable key.
func NewVerifierWith(cfg Config, opts Options) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	algs := cfg.AllowedAlgorithms()
	parserOpts := []jwt.ParserOption{
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(opts.Now),
	}
	if cfg.Issuer != "" {
		parserOpts = append(parserOpts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		parserOpts = append(parserOpts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{
		cfg:         cfg,
		parser:      jwt.NewParser(parserOpts...),
		now:         opts.Now,
		log:         opts.Logger,
		interval:    cfg.JWKSRefresh,
		kidInterval: kidRefreshInterval,
	}
	if slices.Contains(algs, HS256) {
		v.secret = []byte(cfg.Secret)
	}
	static, err := loadPublicKeyFiles(cfg.PublicKeys)
	if err != nil {
		return nil, err
	}
	v.static = static
	if cfg.JWKSFile != "" {
		v.file = &jwksFile{path: cfg.JWKSFile}
	}
	if cfg.JWKSURL != "" {
		client := opts.HTTPClient
		if client == nil {
			client = newJWKSClient(cfg.JWKSTimeout)
		}
		v.url = &jwksURL{url: cfg.JWKSURL, client: client}
	}
	v.publish()
	if v.file != nil || v.url != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.JWKSTimeout)
		err := v.Refresh(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cannot load JWT keys: %w", err)
		}
		v.mu.Lock()
		v.lastCheck = time.Now()
		v.mu.Unlock()
	}
	if v.secret == nil && len(v.keys.Load().all) == 0 {
		return nil, errors.New("cannot load JWT keys: the configured key sources hold no usable RSA or Ed25519 key")
	}
	return v, nil
}

// Verify checks a compact JWS and returns its claims: the header's alg is
// in the allow-list and matches the key's type (the secret for HS256, an
// RSA key for RS256, an Ed25519 key for EdDSA); the kid selects the key
// (required when several public keys are configured); exp is present and
// valid at now, nbf honoured, iat not in the future (all within the
// leeway), each a JSON number; the lifetime (exp - iat, or exp - now
// without iat) is at most Config.MaxLifetime plus the leeway; iss and aud
// match when configured; sub is a valid user id.
// Safe for concurrent use; never blocks on I/O.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissing
	}
	if len(token) > MaxTokenBytes {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrInvalid, MaxTokenBytes)
	}
	v.maybeRefresh(false)
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.keyFor)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Claims{}, fmt.Errorf("%w: %v", ErrExpired, err)
		}
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !record.ValidID(tc.Subject) {
		return Claims{}, fmt.Errorf("%w: sub %q is not a valid user id", ErrInvalid, tc.Subject)
	}
	if tc.Device != "" && !record.ValidID(tc.Device) {
		return Claims{}, fmt.Errorf("%w: dev %q is not a valid device id", ErrInvalid, tc.Device)
	}
	c := Claims{User: tc.Subject, Device: tc.Device}
	if tc.ExpiresAt != nil { // always true: the parser requires exp
		c.Expires = tc.ExpiresAt.Time
	}
	if err := v.checkLifetime(c.Expires, tc.IssuedAt.date()); err != nil {
		return Claims{}, err
	}
	return c, nil
}

// checkLifetime refuses a token that lives longer than
// Config.MaxLifetime (plus the leeway): exp - iat, or exp - now when the
// token has no iat.
func (v *Verifier) checkLifetime(exp time.Time, iat *jwt.NumericDate) error {
	from, what := v.now(), "exp - now"
	if iat != nil {
		from, what = iat.Time, "exp - iat"
	}
	if life := exp.Sub(from); life > v.cfg.MaxLifetime+v.cfg.Leeway {
		return fmt.Errorf("%w: token lifetime %s (%s) exceeds auth.max_lifetime %s", ErrInvalid, life, what, v.cfg.MaxLifetime)
	}
	return nil
}

// keyFor is the jwt.Keyfunc: it returns the key matching the token's alg
// (already checked against the allow-list) and kid. The key's Go type is
// what the alg's verifier requires, so a token can never be checked with
// a key of another kind (algorithm confusion).
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	switch alg {
	case HS256:
		if v.secret == nil {
			return nil, errors.New("HS256 is not allowed")
		}
		return v.secret, nil
	case RS256, EdDSA:
		kid, hasKid := "", false
		if raw, ok := t.Header["kid"]; ok {
			s, ok := raw.(string)
			if !ok {
				return nil, errors.New("kid is not a string")
			}
			kid, hasKid = s, true
		}
		key, unknown, err := v.keys.Load().lookup(alg, kid, hasKid)
		if unknown {
			v.maybeRefresh(true)
		}
		return key, err
	}
	return nil, fmt.Errorf("algorithm %q is not supported", alg)
}

// maybeRefresh starts a background refresh of the JWKS sources when one
// is due: JWKSRefresh passed since the last check, or unknownKid and the
// last kid-triggered check is older than 10s. At most one runs at a time.
func (v *Verifier) maybeRefresh(unknownKid bool) {
	if v.file == nil && v.url == nil {
		return
	}
	now := time.Now()
	v.mu.Lock()
	due := now.Sub(v.lastCheck) >= v.interval
	kidDue := unknownKid && now.Sub(v.lastKid) >= v.kidInterval
	if v.refreshing || (!due && !kidDue) {
		v.mu.Unlock()
		return
	}
	if kidDue {
		v.lastKid = now
	}
	v.lastCheck = now
	v.refreshing = true
	v.wg.Add(1)
	v.mu.Unlock()
	go func() {
		defer v.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), v.cfg.JWKSTimeout)
		defer cancel()
		if err := v.Refresh(ctx); err != nil {
			v.log.Warn("cannot refresh JWT keys; keeping the previous ones", "err", err)
		}
		v.mu.Lock()
		v.refreshing = false
		v.mu.Unlock()
	}()
}

// Refresh checks the JWKS file (re-read when its modification time or
// size changed) and fetches the JWKS URL now. A source that fails keeps
// its previous keys; the error names it. Safe for concurrent use
// (refreshes are serialized); blocks on I/O bounded by ctx.
func (v *Verifier) Refresh(ctx context.Context) error {
	v.refreshMu.Lock()
	defer v.refreshMu.Unlock()
	var errs []error
	if v.file != nil {
		keys, skipped, changed, err := v.file.load()
		switch {
		case err != nil:
			errs = append(errs, err)
		case changed:
			v.logSkipped("jwks_file", skipped)
			v.mu.Lock()
			v.fileKeys = keys
			v.mu.Unlock()
			v.log.Info("loaded JWT keys", "source", "jwks_file", "keys", len(keys))
		}
	}
	if v.url != nil {
		keys, skipped, err := v.url.load(ctx)
		if err != nil {
			errs = append(errs, err)
		} else {
			v.logSkipped("jwks_url", skipped)
			v.mu.Lock()
			v.urlKeys = keys
			v.mu.Unlock()
			v.log.Debug("fetched JWT keys", "source", "jwks_url", "keys", len(keys))
		}
	}
	v.publish()
	return errors.Join(errs...)
}

func (v *Verifier) logSkipped(source string, skipped []error) {
	for _, err := range skipped {
		v.log.Warn("skipping JWK", "source", source, "err", err)
	}
}

// publish makes a new snapshot of every source's keys (public_keys
// first, so a static key wins over a JWKS key with the same kid and alg).
func (v *Verifier) publish() {
	v.mu.Lock()
	ks := newKeySet(v.static, v.fileKeys, v.urlKeys)
	v.mu.Unlock()
	v.keys.Store(ks)
}

// KeyIDs returns the kids of the loaded public keys, in source order
// (public_keys, jwks_file, jwks_url). Safe for concurrent use.
func (v *Verifier) KeyIDs() []string {
	ks := v.keys.Load()
	out := make([]string, 0, len(ks.all))
	for _, k := range ks.all {
		out = append(out, k.kid)
	}
	return out
}

// Config returns the verifier's configuration, defaults filled in (used
// to sign dev tokens with the same secret). Safe for concurrent use.
func (v *Verifier) Config() Config { return v.cfg }
