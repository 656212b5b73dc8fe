package auth

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// FuzzVerify checks that Verify never panics on arbitrary tokens and that
// whatever it accepts names a valid user.
func FuzzVerify(f *testing.F) {
	f.Add(token(f, hs256, claims(), secret, sha256.New))
	f.Add(token(f, hs256, claims("exp", 1e300), secret, sha256.New))
	f.Add(token(f, hs256, claims("nbf", -1e300, "aud", []any{1, "x"}), secret, sha256.New))
	f.Add(token(f, map[string]any{"alg": "none"}, claims(), "", nil))
	f.Add("")
	f.Add("a.b.c")
	v, err := NewVerifier(Config{Secret: secret}, func() time.Time { return t0 })
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if c != (Claims{}) {
				t.Fatalf("got claims %+v with error %v", c, err)
			}
			return
		}
		if !record.ValidID(c.User) || (c.Device != "" && !record.ValidID(c.Device)) {
			t.Fatalf("accepted invalid ids %+v", c)
		}
	})
}
