package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"
)

// Backoff is a capped exponential backoff with full jitter: before attempt
// n (0-based) the client sleeps a uniformly random duration in
// [0, min(Max, Min*2^n)].
type Backoff struct {
	// Min is the base delay. Default 250ms; zero means the default.
	Min time.Duration `yaml:"min"`
	// Max caps the delay. Default 30s; zero means the default.
	Max time.Duration `yaml:"max"`
}

// Config configures a Client. Start from Default(); Dial fills zero
// durations with their defaults.
type Config struct {
	// URL is the server's WebSocket endpoint, ws://host:port/ws or
	// wss://... (the server accepts any path). Required.
	URL string `yaml:"url"`
	// Fallbacks are other connection nodes' URLs (ws:// or wss://). When a
	// dial fails the client tries the next URL of URL, Fallbacks... in turn.
	// Fleets usually put one address (a load balancer) in URL instead.
	// Default none.
	Fallbacks []string `yaml:"fallbacks"`
	// Token is the JWT sent at every (re)connect. Exactly one of Token and
	// TokenFunc must be set.
	Token string `yaml:"token"`
	// TokenFunc returns the JWT to use for a (re)connect. It is also called
	// after the server refused the session (close 4001 token expired, 4005
	// auth failed, 1008 policy, 4004 replaced, or HTTP 400/401/403 at
	// upgrade): when it
	// returns a token different from the one refused, the client
	// reconnects, otherwise it stops. With TokenFunc set the client also
	// refreshes the session in-band: at about 80% of the current token's
	// lifetime (from its iat and exp claims, read without verification;
	// and at least 5s before exp) it calls TokenFunc and sends the new
	// token in a refresh frame on the live connection, retrying with
	// RetryBackoff until exp (see Client.RefreshToken). A token without an
	// exp claim is never refreshed in-band. TokenFunc should return
	// promptly when ctx is done (Close waits for it). May be called from
	// any goroutine.
	TokenFunc func(ctx context.Context) (string, error) `yaml:"-"`
	// TokenInQuery sends the token as the ?token= query parameter instead
	// of the Authorization: Bearer header. Default false (header).
	TokenInQuery bool `yaml:"token_in_query"`
	// Device is this device's id, sent as the ?device= query parameter.
	// Empty means let the server decide (it usually takes it from the
	// token).
	Device string `yaml:"device"`
	// DialTimeout bounds one connection attempt: TCP connect, WebSocket
	// upgrade and the hello frame. Default 10s; zero means the default.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// RequestTimeout bounds one attempt of a request: waiting for a
	// connection, writing the frame and waiting for the answer. Default
	// 10s; zero means the default.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// WriteTimeout bounds the frame writes: a write fails when the
	// server takes no data for between WriteTimeout/2 and WriteTimeout
	// (internal/wsclient moves the deadline once half of it is used).
	// Default 10s; zero means the default.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Backoff paces reconnects after a dropped connection. Default
	// {250ms, 30s}.
	Backoff Backoff `yaml:"backoff"`
	// SendRetry makes Send, SendTo and SendWithID, and the read-only
	// requests (History, Chats, Members, Presence, Ping), retry on a
	// retryable error, an attempt timeout or a dropped connection, with the
	// same request id (so the server deduplicates sends), until they
	// succeed, fail permanently or ctx is done. Group changes are never
	// retried. Default true in Default(); the zero value is false.
	SendRetry bool `yaml:"send_retry"`
	// RetryBackoff paces those retries; a server's retry_after_ms hint is a
	// lower bound for the next delay. Default {100ms, 5s}.
	RetryBackoff Backoff `yaml:"retry_backoff"`
	// MessageBuffer is the capacity of the Messages channel. When it is
	// full the client stops reading from the server (nothing is dropped).
	// Default 256; zero means the default.
	MessageBuffer int `yaml:"message_buffer"`
	// EventBuffer is the capacity of the Receipts and PresenceEvents
	// channels. When one is full new events for it are dropped and
	// counted in Stats. Default 256; zero means the default.
	EventBuffer int `yaml:"event_buffer"`
	// GapWait is how long a message that arrived after a gap in its chat's
	// seqs waits for the gap to fill before the client fetches the missing
	// messages with a history request. Default 500ms; zero means the
	// default.
	GapWait time.Duration `yaml:"gap_wait"`
	// AckInterval is the longest an ack waits before it is sent: acks are
	// batched per chat (one cumulative ack for the highest seq the app
	// received) and flushed at least this often. Default 50ms; zero means
	// the default. Keep it well under the server's retransmit timeout (5s).
	AckInterval time.Duration `yaml:"ack_interval"`
	// AckBatch sends a chat's ack at once when this many of its messages
	// are received by the app but not acked yet (the server keeps at most
	// 512 unacked messages in flight per chat). Default 64; zero means the
	// default.
	AckBatch int `yaml:"ack_batch"`
	// Resume holds the positions an earlier run handed to the app (from
	// Positions, persisted by the app): chat id -> highest seq such that
	// every message up to it was received. The client continues each chat
	// right after its position, without gaps and without downloading the
	// earlier messages again. Chats not listed start at position 0 (the
	// server pushes their whole history), unless FromNow. Nil means none.
	Resume map[string]uint64 `yaml:"-"`
	// FromNow skips history for chats not in Resume: the messages the
	// server pushes during the first catch-up (before the first synced)
	// for such chats are acknowledged but not delivered, and the first
	// message seen later for a still unknown chat is delivered whatever
	// its seq. Default false (every chat is delivered from seq 1).
	FromNow bool `yaml:"from_now"`
	// MaxFrame is the largest server message accepted, in bytes; a larger
	// one drops the connection (close 1009). Default 4 MiB; zero means the
	// default.
	MaxFrame int `yaml:"max_frame"`
	// Logger receives connection events (Info) and per-frame noise
	// (Debug). Nil means discard.
	Logger *slog.Logger `yaml:"-"`
	// Observe, when set, sees every text frame the client writes (out
	// true) and every complete message it reads (out false), on the
	// connection's goroutines, before the client acts on it. For debugging
	// and contract checks (api/apicheck); it must not block, and must not
	// keep or change frame.
	Observe func(out bool, frame []byte) `yaml:"-"`
}

// Default returns a Config with every default filled in and SendRetry on.
// URL and Token (or TokenFunc) still need to be set.
func Default() Config {
	return Config{
		DialTimeout:    10 * time.Second,
		RequestTimeout: 10 * time.Second,
		WriteTimeout:   10 * time.Second,
		Backoff:        Backoff{Min: 250 * time.Millisecond, Max: 30 * time.Second},
		SendRetry:      true,
		RetryBackoff:   Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second},
		MessageBuffer:  256,
		EventBuffer:    256,
		GapWait:        500 * time.Millisecond,
		AckInterval:    50 * time.Millisecond,
		AckBatch:       64,
		MaxFrame:       4 << 20,
	}
}

// withDefaults fills zero fields with the defaults.
func (c Config) withDefaults() Config {
	d := Default()
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.DialTimeout, d.DialTimeout)
	setDur(&c.RequestTimeout, d.RequestTimeout)
	setDur(&c.WriteTimeout, d.WriteTimeout)
	setDur(&c.Backoff.Min, d.Backoff.Min)
	setDur(&c.Backoff.Max, d.Backoff.Max)
	setDur(&c.RetryBackoff.Min, d.RetryBackoff.Min)
	setDur(&c.RetryBackoff.Max, d.RetryBackoff.Max)
	setDur(&c.GapWait, d.GapWait)
	setDur(&c.AckInterval, d.AckInterval)
	if c.AckBatch == 0 {
		c.AckBatch = d.AckBatch
	}
	if c.MessageBuffer == 0 {
		c.MessageBuffer = d.MessageBuffer
	}
	if c.EventBuffer == 0 {
		c.EventBuffer = d.EventBuffer
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	for _, f := range c.Fallbacks {
		if u, err := url.Parse(f); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("fallbacks: %q is not a ws:// or wss:// URL", f))
		}
	}
	if c.URL == "" {
		errs = append(errs, errors.New("url is required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url %q is invalid: %w", c.URL, err))
	} else if u.Scheme != "ws" && u.Scheme != "wss" {
		errs = append(errs, fmt.Errorf("url %q: scheme must be ws or wss", c.URL))
	}
	switch {
	case c.Token == "" && c.TokenFunc == nil:
		errs = append(errs, errors.New("token or token_func is required"))
	case c.Token != "" && c.TokenFunc != nil:
		errs = append(errs, errors.New("set only one of token and token_func"))
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"dial_timeout", c.DialTimeout}, {"request_timeout", c.RequestTimeout},
		{"write_timeout", c.WriteTimeout}, {"backoff.min", c.Backoff.Min},
		{"backoff.max", c.Backoff.Max}, {"retry_backoff.min", c.RetryBackoff.Min},
		{"retry_backoff.max", c.RetryBackoff.Max}, {"gap_wait", c.GapWait},
		{"ack_interval", c.AckInterval},
	}
	for _, d := range durs {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", d.name, d.v))
		}
	}
	if c.Backoff.Max > 0 && c.Backoff.Min > c.Backoff.Max {
		errs = append(errs, fmt.Errorf("backoff.min %v exceeds backoff.max %v", c.Backoff.Min, c.Backoff.Max))
	}
	if c.RetryBackoff.Max > 0 && c.RetryBackoff.Min > c.RetryBackoff.Max {
		errs = append(errs, fmt.Errorf("retry_backoff.min %v exceeds retry_backoff.max %v", c.RetryBackoff.Min, c.RetryBackoff.Max))
	}
	if c.MessageBuffer < 0 {
		errs = append(errs, fmt.Errorf("message_buffer must not be negative, got %d", c.MessageBuffer))
	}
	if c.EventBuffer < 0 {
		errs = append(errs, fmt.Errorf("event_buffer must not be negative, got %d", c.EventBuffer))
	}
	if c.AckBatch < 0 {
		errs = append(errs, fmt.Errorf("ack_batch must not be negative, got %d", c.AckBatch))
	}
	for chat := range c.Resume {
		if chat == "" {
			errs = append(errs, errors.New("resume: empty chat id"))
		}
	}
	if c.MaxFrame < 0 {
		errs = append(errs, fmt.Errorf("max_frame must not be negative, got %d", c.MaxFrame))
	}
	if len(c.Device) > 64 {
		errs = append(errs, fmt.Errorf("device must be at most 64 bytes, got %d", len(c.Device)))
	}
	return errors.Join(errs...)
}
