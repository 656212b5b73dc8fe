package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// keySet is an immutable snapshot of the verification keys.
type keySet struct {
	byKid map[string][]publicKey
	all   []publicKey
}

func newKeySet(groups ...[]publicKey) *keySet {
	ks := &keySet{byKid: map[string][]publicKey{}}
	for _, g := range groups {
		for _, k := range g {
			ks.byKid[k.kid] = append(ks.byKid[k.kid], k)
			ks.all = append(ks.all, k)
		}
	}
	return ks
}

// lookup returns the key for a token's alg and kid (hasKid false when the
// header has none). unknown reports a kid that names no key at all.
func (ks *keySet) lookup(alg, kid string, hasKid bool) (key any, unknown bool, err error) {
	if !hasKid {
		switch len(ks.all) {
		case 0:
			return nil, false, errors.New("no public keys loaded")
		case 1:
			k := ks.all[0]
			if k.alg != alg {
				return nil, false, fmt.Errorf("the only key is for %s, token says %s", k.alg, alg)
			}
			return k.key, false, nil
		}
		return nil, false, fmt.Errorf("token has no kid and %d keys are configured", len(ks.all))
	}
	cands := ks.byKid[kid]
	if len(cands) == 0 {
		return nil, true, fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	for _, k := range cands {
		if k.alg == alg {
			return k.key, false, nil
		}
	}
	return nil, false, fmt.Errorf("key %q is for %s, token says %s", kid, cands[0].alg, alg)
}

// loadPublicKeyFiles reads Config.PublicKeys.
func loadPublicKeyFiles(paths []string) ([]publicKey, error) {
	var keys []publicKey
	var errs []error
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("auth.public_keys: cannot read %s: %w", p, err))
			continue
		}
		key, alg, err := ParsePublicKeyPEM(b)
		if err != nil {
			errs = append(errs, fmt.Errorf("auth.public_keys: cannot parse %s: %w", p, err))
			continue
		}
		keys = append(keys, publicKey{kid: kidOfPath(p), alg: alg, key: key})
	}
	return keys, errors.Join(errs...)
}

// jwksFile is the state of Config.JWKSFile. Used by one refresh at a time.
type jwksFile struct {
	path    string
	modTime time.Time
	size    int64
}

// load re-reads the file when its modification time or size changed;
// changed is false (and keys nil) when it did not.
func (f *jwksFile) load() (keys []publicKey, skipped []error, changed bool, err error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot stat auth.jwks_file %s: %w", f.path, err)
	}
	if !f.modTime.IsZero() && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return nil, nil, false, nil
	}
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot open auth.jwks_file %s: %w", f.path, err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot read auth.jwks_file %s: %w", f.path, err)
	}
	keys, skipped, err = parseJWKS(b)
	if err != nil {
		return nil, nil, false, fmt.Errorf("cannot load auth.jwks_file %s: %w", f.path, err)
	}
	f.modTime, f.size = st.ModTime(), st.Size()
	return keys, skipped, true, nil
}

// jwksURL fetches Config.JWKSURL.
type jwksURL struct {
	url    string
	client *http.Client
}

func (u *jwksURL) load(ctx context.Context) ([]publicKey, []error, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot fetch auth.jwks_url %s: %w", u.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot fetch auth.jwks_url %s: %w", u.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, nil, fmt.Errorf("cannot fetch auth.jwks_url %s: HTTP %d", u.url, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read auth.jwks_url %s: %w", u.url, err)
	}
	keys, skipped, err := parseJWKS(b)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot load auth.jwks_url %s: %w", u.url, err)
	}
	return keys, skipped, nil
}

// newJWKSClient returns the HTTP client for JWKS fetches: bounded by
// timeout, and following redirects only to URLs the config would accept.
func newJWKSClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return checkJWKSURL(req.URL.String())
		},
	}
}
