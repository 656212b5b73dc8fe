package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testJWT returns an unsigned JWT for user with the given iat and exp
// (zero: claim absent) and a jti that makes every token distinct. The fake
// server reads sub and exp without checking signatures.
func testJWT(user string, iat, exp time.Time, jti int64) string {
	c := map[string]any{"sub": user, "jti": fmt.Sprint(jti)}
	if !iat.IsZero() {
		c["iat"] = iat.Unix()
	}
	if !exp.IsZero() {
		c["exp"] = exp.Unix()
	}
	b, _ := json.Marshal(c)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." + enc(b) + ".c2ln"
}

func TestTokenTimes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	enc := func(s string) string { return "e30." + base64.RawURLEncoding.EncodeToString([]byte(s)) + ".sig" }
	tests := []struct {
		name     string
		tok      string
		iat, exp time.Time
		ok       bool
	}{
		{"iat_exp", testJWT("a", now, now.Add(time.Hour), 1), now, now.Add(time.Hour), true},
		{"exp_only", testJWT("a", time.Time{}, now.Add(time.Hour), 1), time.Time{}, now.Add(time.Hour), true},
		{"no_exp", testJWT("a", now, time.Time{}, 1), time.Time{}, time.Time{}, false},
		{"fractional", enc(`{"exp":1800000000.5,"iat":1800000000.9}`), now, now, true},
		{"exp_string", enc(`{"exp":"tomorrow"}`), time.Time{}, time.Time{}, false},
		{"exp_negative", enc(`{"exp":-5}`), time.Time{}, time.Time{}, false},
		{"exp_huge", enc(`{"exp":1e300}`), time.Time{}, time.Time{}, false},
		{"iat_bad_ignored", enc(`{"exp":1800000000,"iat":-1}`), time.Time{}, now, true},
		{"padded", "e30." + base64.URLEncoding.EncodeToString([]byte(`{"exp":1800000000}`)) + ".s", time.Time{}, now, true},
		{"not_json", enc(`nope`), time.Time{}, time.Time{}, false},
		{"two_parts", "a.b", time.Time{}, time.Time{}, false},
		{"four_parts", "a.b.c.d", time.Time{}, time.Time{}, false},
		{"opaque", "tok-alice", time.Time{}, time.Time{}, false},
		{"empty", "", time.Time{}, time.Time{}, false},
	}
	for _, tc := range tests {
		iat, exp, ok := tokenTimes(tc.tok)
		if ok != tc.ok || !iat.Equal(tc.iat) || !exp.Equal(tc.exp) {
			t.Errorf("%s: got %v, %v, %v; want %v, %v, %v", tc.name, iat, exp, ok, tc.iat, tc.exp, tc.ok)
		}
	}
}

func FuzzTokenTimes(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	f.Add(testJWT("a", now, now.Add(time.Hour), 1))
	f.Add("e30.eyJleHAiOjF9.x")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		iat, exp, ok := tokenTimes(tok)
		if !ok && (!iat.IsZero() || !exp.IsZero()) {
			t.Fatalf("got %v, %v with ok false", iat, exp)
		}
		if ok {
			at := refreshAt(iat, exp, now)
			if at.After(exp.Add(-refreshMargin)) {
				t.Fatalf("refresh at %v is later than exp %v - margin", at, exp)
			}
		}
	})
}

func TestRefreshAt(t *testing.T) {
	got := time.Unix(1_800_000_000, 0)
	s := func(d time.Duration) time.Time { return got.Add(d) }
	tests := []struct {
		name          string
		iat, exp, got time.Time
		want          time.Time
	}{
		{"hour_from_iat", got, s(time.Hour), got, s(48 * time.Minute)},
		{"no_iat_uses_got", time.Time{}, s(time.Hour), got, s(48 * time.Minute)},
		{"old_iat", s(-50 * time.Minute), s(10 * time.Minute), got, s(-2 * time.Minute)},
		{"iat_after_got_uses_got", s(time.Minute), s(time.Hour), got, s(48 * time.Minute)},
		{"iat_after_exp_uses_got", s(2 * time.Hour), s(time.Hour), got, s(48 * time.Minute)},
		{"short_token_margin", got, s(20 * time.Second), got, s(15 * time.Second)},
		{"tiny_token", got, s(2 * time.Second), got, s(-3 * time.Second)},
		{"expired", s(-time.Hour), s(-time.Minute), got, s(-12*time.Minute - 48*time.Second)},
	}
	for _, tc := range tests {
		if at := refreshAt(tc.iat, tc.exp, tc.got); !at.Equal(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, at.Sub(got), tc.want.Sub(got))
		}
	}
}

// tokenSource hands out JWTs for user: the first (the one Dial uses) is
// old and expires in firstTTL, later ones live for laterTTL from now.
type tokenSource struct {
	user              string
	firstTTL          time.Duration
	laterTTL          time.Duration
	calls             atomic.Int64
	issued            atomic.Value // last token handed out
	laterLikeTheFirst bool         // later tokens are short and old too
}

func (ts *tokenSource) get(context.Context) (string, error) {
	n := ts.calls.Add(1)
	now := time.Now()
	var tok string
	if n == 1 || ts.laterLikeTheFirst {
		tok = testJWT(ts.user, now.Add(-100*time.Second), now.Add(ts.firstTTL), n)
	} else {
		tok = testJWT(ts.user, now, now.Add(ts.laterTTL), n)
	}
	ts.issued.Store(tok)
	return tok, nil
}

func TestRefreshBeforeExpiry(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s, "alice")
	ts := &tokenSource{user: "alice", firstTTL: 20 * time.Second, laterTTL: time.Hour}
	cfg.Token, cfg.TokenFunc = "", ts.get
	start := time.Now()
	c := dialT(t, cfg)
	firstExp := start.Add(ts.firstTTL).Truncate(time.Second)
	waitFor(t, "a refresh", func() bool { return len(s.Refreshes()) > 0 && c.Stats().TokenRefreshes == 1 })
	r := s.Refreshes()[0]
	if !r.Accepted || r.User != "alice" || r.ID == "" {
		t.Errorf("got refresh %+v, want an accepted one for alice with an id", r)
	}
	if !r.At.Before(firstExp) {
		t.Errorf("refresh arrived at %v, not before the first token's exp %v", r.At, firstExp)
	}
	if want := ts.issued.Load().(string); r.Token != want {
		t.Errorf("refresh carried %q, want the fresh token %q", r.Token, want)
	}
	c.mu.Lock()
	cur := c.token
	c.mu.Unlock()
	if cur != r.Token {
		t.Errorf("client remembers %q, want the refreshed token", cur)
	}
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping after refresh: %v", err)
	}
	if qs, _ := s.Upgrades(); len(qs) != 1 {
		t.Errorf("got %d upgrades, want 1 (refresh is in-band)", len(qs))
	}
	// The fresh token lives an hour: no second refresh follows.
	if n := len(s.Refreshes()); n != 1 {
		t.Errorf("got %d refreshes, want 1", n)
	}
}

func TestRefreshRetriesUntilReconnect(t *testing.T) {
	s := newFakeServer(t)
	s.SetRefuseRefresh(true)
	cfg := testConfig(s, "alice")
	ts := &tokenSource{user: "alice", firstTTL: 10 * time.Second, laterLikeTheFirst: true}
	cfg.Token, cfg.TokenFunc = "", ts.get
	c := dialT(t, cfg)
	waitFor(t, "two refused refreshes", func() bool { return len(s.Refreshes()) >= 2 })
	for _, r := range s.Refreshes() {
		if r.Accepted {
			t.Fatalf("got accepted refresh %+v", r)
		}
	}
	if got := c.Stats().TokenRefreshes; got != 0 {
		t.Errorf("got %d token refreshes, want 0", got)
	}
	// The server gives up at exp: close 4001; the client reconnects with
	// a token from TokenFunc.
	for _, fc := range s.ConnsOf("alice") {
		fc.CloseWith(4001, "token expired")
	}
	waitFor(t, "reconnect", func() bool { return c.Stats().Reconnects == 1 && c.State().Kind == StateConnected })
	_, authz := s.Upgrades()
	if last := authz[len(authz)-1]; last == authz[0] {
		t.Errorf("reconnected with the first token again")
	}
	s.SetRefuseRefresh(false)
	waitFor(t, "a refresh on the new connection", func() bool { return c.Stats().TokenRefreshes >= 1 })
}

func TestRefreshToken(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s, "alice")
	var calls atomic.Int64
	type tokenFn = func(context.Context) (string, error)
	var fn atomic.Pointer[tokenFn]
	set := func(f tokenFn) { fn.Store(&f) }
	set(func(ctx context.Context) (string, error) {
		n := calls.Add(1)
		return testJWT("alice", time.Now(), time.Now().Add(time.Hour), n), nil
	})
	cfg.Token, cfg.TokenFunc = "", func(ctx context.Context) (string, error) { return (*fn.Load())(ctx) }
	c := dialT(t, cfg)
	ctx := context.Background()
	if err := c.RefreshToken(ctx); err != nil {
		t.Fatalf("RefreshToken: %v", err)
	}
	rs := s.Refreshes()
	if len(rs) != 1 || !rs[0].Accepted {
		t.Fatalf("got refreshes %+v, want one accepted", rs)
	}
	s.SetRefuseRefresh(true)
	err := c.RefreshToken(ctx)
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeAuthFailed || se.Retryable {
		t.Fatalf("refused: got %v, want a non-retryable *Error %s", err, CodeAuthFailed)
	}
	// A token of another user is refused too.
	s.SetRefuseRefresh(false)
	set(func(context.Context) (string, error) {
		return testJWT("mallory", time.Now(), time.Now().Add(time.Hour), 99), nil
	})
	if err := c.RefreshToken(ctx); !errors.As(err, &se) || se.Code != CodeAuthFailed {
		t.Fatalf("other user: got %v, want %s", err, CodeAuthFailed)
	}
	c.mu.Lock()
	cur := c.token
	c.mu.Unlock()
	set(func(context.Context) (string, error) { return cur, nil })
	if err := c.RefreshToken(ctx); err == nil {
		t.Fatal("same token: got nil error")
	}
	set(func(context.Context) (string, error) { return "", errors.New("idp down") })
	if err := c.RefreshToken(ctx); err == nil || !strings.Contains(err.Error(), "idp down") {
		t.Fatalf("TokenFunc error: got %v", err)
	}
	if got := c.Stats().TokenRefreshes; got != 1 {
		t.Errorf("got %d token refreshes, want 1", got)
	}
	_ = c.Close()
	if err := c.RefreshToken(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}

	static := dialT(t, testConfig(s, "bob"))
	if err := static.RefreshToken(ctx); !errors.Is(err, errNoTokenFunc) {
		t.Errorf("without TokenFunc: got %v, want %v", err, errNoTokenFunc)
	}
}

// TestRefreshStopsOnClose closes a client whose refresh loop is retrying
// (the server refuses every refresh): Close returns, TokenFunc is not
// called again and the client's goroutines are gone.
func TestRefreshStopsOnClose(t *testing.T) {
	s := newFakeServer(t)
	s.SetRefuseRefresh(true)
	before := runtime.NumGoroutine()
	cfg := testConfig(s, "alice")
	ts := &tokenSource{user: "alice", firstTTL: 10 * time.Second, laterLikeTheFirst: true}
	cfg.Token, cfg.TokenFunc = "", ts.get
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a refused refresh", func() bool { return len(s.Refreshes()) >= 1 })
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	calls := ts.calls.Load()
	time.Sleep(2 * minRefreshGap) // any refresh still scheduled would run now
	if got := ts.calls.Load(); got != calls {
		t.Errorf("TokenFunc called %d times after Close", got-calls)
	}
	waitFor(t, "the client's goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}
