package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// In-band token refresh. With Config.TokenFunc set, a goroutine reads the
// exp (and iat) claims of the token in use, decoded without verification,
// and at 80% of its lifetime, and at least refreshMargin before exp, gets
// a new token from TokenFunc and sends it on the live connection:
//
//	{"type":"refresh","id":"<request id>","token":"<jwt>"}
//
// The server answers {"type":"ok","id":...} (the session now runs on the
// new token) or an error frame with code auth_failed. Failures are retried
// with Config.RetryBackoff until exp; after that the server closes with
// 4001 and the reconnect path gets a token from TokenFunc.
const (
	typeRefresh = "refresh"
	// refreshFraction of a token's lifetime passes before it is refreshed.
	refreshFraction = 0.8
	// refreshMargin is the least time before exp a refresh is sent.
	refreshMargin = 5 * time.Second
	// minRefreshGap spaces automatic refresh attempts, so short-lived
	// tokens or a failing TokenFunc never make the client spin.
	minRefreshGap = time.Second
	// maxTokenClaims bounds the token payload decoded for exp.
	maxTokenClaims = 8 << 10
)

// CodeAuthFailed is the error code of a refused refresh frame (the token
// is invalid, expired or names another user).
const CodeAuthFailed = "auth_failed"

// errNoTokenFunc is RefreshToken's error without Config.TokenFunc.
var errNoTokenFunc = errors.New("client: token refresh needs Config.TokenFunc")

type refreshFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Token string `json:"token"`
}

// tokenTimes decodes the iat and exp claims of a compact JWT without
// verifying it. ok is false when tok is not a JWT or has no usable exp;
// iat is zero when absent.
func tokenTimes(tok string) (iat, exp time.Time, ok bool) {
	parts := strings.SplitN(tok, ".", 4)
	if len(parts) != 3 || len(parts[1]) > maxTokenClaims {
		return time.Time{}, time.Time{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var c struct {
		Iat *float64 `json:"iat"`
		Exp *float64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Exp == nil {
		return time.Time{}, time.Time{}, false
	}
	sec := func(f float64) (time.Time, bool) {
		if math.IsNaN(f) || f <= 0 || f > 1<<40 {
			return time.Time{}, false
		}
		return time.Unix(int64(f), 0), true
	}
	exp, ok = sec(*c.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	if c.Iat != nil {
		iat, _ = sec(*c.Iat)
	}
	return iat, exp, true
}

// refreshAt returns when to refresh a token with claims iat and exp that
// the client obtained at got: 80% into its lifetime, counted from iat
// (from got when iat is absent, later than got or not before exp), and no
// later than refreshMargin before exp.
func refreshAt(iat, exp, got time.Time) time.Time {
	start := got
	if !iat.IsZero() && !iat.After(got) && iat.Before(exp) {
		start = iat
	}
	at := start
	if life := exp.Sub(start); life > 0 {
		at = start.Add(time.Duration(float64(life) * refreshFraction))
	}
	if latest := exp.Add(-refreshMargin); at.After(latest) {
		at = latest
	}
	return at
}

// kickRefresh tells the refresh loop that the token or the connection
// changed.
func (c *Client) kickRefresh() {
	select {
	case c.refreshKick <- struct{}{}:
	default:
	}
}

// refreshLoop refreshes the token in use before it expires, until the
// client stops. It runs only with Config.TokenFunc.
func (c *Client) refreshLoop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	failures := 0     // consecutive failed attempts for the current token
	unsupported := "" // the token the server refused refresh for (unknown_type)
	var last time.Time
	for {
		c.mu.Lock()
		tok, got, live := c.token, c.tokenAt, c.conn != nil
		c.mu.Unlock()
		var fire <-chan time.Time
		if iat, exp, ok := tokenTimes(tok); ok && live && tok != unsupported {
			now := time.Now()
			at := refreshAt(iat, exp, got)
			if failures > 0 {
				at = now.Add(jitter(c.cfg.RetryBackoff, failures-1))
			}
			at = latest(at, last.Add(minRefreshGap))
			if at.Before(exp) {
				t.Reset(at.Sub(now))
				fire = t.C
			}
			// else: too late; the server closes with 4001 and the
			// reconnect gets a new token.
		}
		select {
		case <-c.refreshKick:
			t.Stop()
			failures = 0
			continue
		case <-fire:
		case <-c.ctx.Done():
			return
		}
		last = time.Now()
		err := c.refresh(c.ctx, true)
		switch {
		case err == nil:
			failures = 0
		case c.ctx.Err() != nil:
			return
		default:
			failures++
			var se *Error
			if errors.As(err, &se) && se.Code == CodeUnknownType {
				c.log.Info("server does not support token refresh; the session ends at token expiry", "err", err)
				unsupported = tok
				continue
			}
			c.log.Warn("cannot refresh token; retrying until it expires", "attempt", failures, "err", err)
		}
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// RefreshToken gets a token from Config.TokenFunc and sends it to the
// server on the live connection (a refresh frame), waiting for the
// answer within ctx and Config.RequestTimeout. On success the session
// runs on the new token and the automatic refresh is rescheduled from its
// exp. The client refreshes by itself at 80% of a token's lifetime; this
// forces one now. Errors: an *Error with Code CodeAuthFailed when the
// server refused the token (CodeUnknownType from a server without
// refresh), ErrDisconnected, ErrTimeout, ErrClosed, ctx's error, a
// TokenFunc error, or an error at once without TokenFunc or when TokenFunc
// returned the token already in use. Not retried. Safe for concurrent use.
func (c *Client) RefreshToken(ctx context.Context) error {
	return c.refresh(ctx, false)
}

// refresh runs one refresh; auto marks the refresh loop's attempts, which
// need a live connection (a reconnect gets its own token).
func (c *Client) refresh(ctx context.Context, auto bool) error {
	if c.cfg.TokenFunc == nil {
		return errNoTokenFunc
	}
	if c.ctx.Err() != nil {
		return c.closedErr()
	}
	c.mu.Lock()
	cur, live := c.token, c.conn != nil
	c.mu.Unlock()
	if auto && !live {
		return fmt.Errorf("cannot refresh token: %w", ErrDisconnected)
	}
	tctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	tok, err := c.cfg.TokenFunc(tctx)
	cancel()
	if err != nil {
		return fmt.Errorf("cannot refresh token: cannot get token: %w", err)
	}
	if tok == cur {
		return errors.New("cannot refresh token: TokenFunc returned the token in use")
	}
	id := NewRequestID()
	frame, err := json.Marshal(refreshFrame{Type: typeRefresh, ID: id, Token: tok})
	if err != nil {
		return fmt.Errorf("cannot encode refresh frame: %w", err)
	}
	f, err := c.roundTrip(ctx, id, frame)
	if err != nil {
		return fmt.Errorf("cannot refresh token: %w", err)
	}
	if f.Type != proto.TypeOK {
		return fmt.Errorf("cannot refresh token: %w: answer %q", ErrProtocol, f.Type)
	}
	c.mu.Lock()
	// A reconnect may have fetched an even newer token meanwhile.
	if c.token == cur {
		c.token, c.tokenAt = tok, time.Now()
	}
	c.stats.TokenRefreshes++
	c.mu.Unlock()
	c.log.Debug("token refreshed", "request_id", id)
	c.kickRefresh()
	return nil
}
