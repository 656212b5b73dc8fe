package loadtest

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/parley-chat/parley/loadtest/wsc"
)

// Modes.
const (
	ModePairs = "pairs" // N one-on-one pairs, one sender each
	ModeGroup = "group" // G groups of M members, one sender each
)

// Config configures a load test run.
type Config struct {
	// URL is the connection node's WebSocket URL, or several separated by
	// commas: connections then go round robin over them (in pairs mode each
	// pair's sender and receiver land on different nodes). Required.
	URL string `yaml:"url"`
	// Mode is "pairs" or "group". Default pairs.
	Mode string `yaml:"mode"`
	// Pairs is the number of one-on-one pairs (2 connections each) in
	// pairs mode. Default 1000.
	Pairs int `yaml:"pairs"`
	// Groups is the number of groups in group mode. Default 100.
	Groups int `yaml:"groups"`
	// GroupSize is the members per group (sender included), 2..100, in
	// group mode. Default 10.
	GroupSize int `yaml:"group_size"`
	// Rate is the total offered send rate in messages per second, spread
	// evenly over the senders. Default 2000.
	Rate float64 `yaml:"rate"`
	// Warmup is sent at the full rate before measuring starts. Default 3s;
	// zero means no warmup.
	Warmup time.Duration `yaml:"warmup"`
	// Duration is the measured window, at most 10m. Default 20s.
	Duration time.Duration `yaml:"duration"`
	// Grace is how long to wait after the last send for outstanding sent
	// acks and deliveries before counting them lost. Default 5s.
	Grace time.Duration `yaml:"grace"`
	// BodySize pads message bodies to this many bytes (the minimum is the
	// ~30-byte timestamp header). Default 0: no padding.
	BodySize int `yaml:"body_size"`
	// DialConcurrency is how many connections are set up at once.
	// Default 64.
	DialConcurrency int `yaml:"dial_concurrency"`
	// DialTimeout bounds one connection setup (TCP, upgrade, hello, sync
	// until synced). Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// AckInterval is the longest a received message waits for its
	// (cumulative, per chat) ack. Default 50ms, as the Go SDK.
	AckInterval time.Duration `yaml:"ack_interval"`
	// AckBatch acks a chat at once when this many of its messages are
	// received but unacked. Default 64, as the Go SDK; it must stay below
	// the server's delivery window (512).
	AckBatch int `yaml:"ack_batch"`
	// SourceIPs spreads connections over local addresses, e.g.
	// "127.0.0.2-127.0.0.50". Empty: the kernel picks.
	SourceIPs string `yaml:"source_ips"`
	// UserPrefix starts every generated user id. Empty: "lt" plus a
	// per-run random suffix, so runs never share chats (request ids
	// repeat across runs and would be deduplicated).
	UserPrefix string `yaml:"user_prefix"`
}

// Default returns the default configuration (without a URL).
func Default() Config {
	return Config{
		Mode:            ModePairs,
		Pairs:           1000,
		Groups:          100,
		GroupSize:       10,
		Rate:            2000,
		Warmup:          3 * time.Second,
		Duration:        20 * time.Second,
		Grace:           5 * time.Second,
		DialConcurrency: 64,
		DialTimeout:     10 * time.Second,
		AckInterval:     50 * time.Millisecond,
		AckBatch:        64,
	}
}

// MaxDuration bounds Config.Duration.
const MaxDuration = 10 * time.Minute

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.URL == "" {
		bad("loadtest.url is required")
	}
	for _, u := range strings.Split(c.URL, ",") {
		if u = strings.TrimSpace(u); c.URL != "" && !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			bad("loadtest.url: %q is not a ws:// or wss:// URL", u)
		}
	}
	switch c.Mode {
	case ModePairs:
		if c.Pairs < 1 {
			bad("loadtest.pairs must be at least 1, got %d", c.Pairs)
		}
	case ModeGroup:
		if c.Groups < 1 {
			bad("loadtest.groups must be at least 1, got %d", c.Groups)
		}
		if c.GroupSize < 2 || c.GroupSize > 100 {
			bad("loadtest.group_size must be in 2..100, got %d", c.GroupSize)
		}
	default:
		bad("loadtest.mode must be %q or %q, got %q", ModePairs, ModeGroup, c.Mode)
	}
	if c.Rate <= 0 {
		bad("loadtest.rate must be positive, got %v", c.Rate)
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		bad("loadtest.duration must be in (0, %s], got %s", MaxDuration, c.Duration)
	}
	if c.Warmup < 0 || c.Grace < 0 {
		bad("loadtest.warmup and loadtest.grace must not be negative, got %s and %s", c.Warmup, c.Grace)
	}
	if c.BodySize < 0 || c.BodySize > 16384 {
		bad("loadtest.body_size must be in 0..16384, got %d", c.BodySize)
	}
	if c.DialConcurrency < 1 {
		bad("loadtest.dial_concurrency must be at least 1, got %d", c.DialConcurrency)
	}
	if c.DialTimeout <= 0 {
		bad("loadtest.dial_timeout must be positive, got %s", c.DialTimeout)
	}
	if c.AckInterval <= 0 || c.AckInterval > time.Second {
		bad("loadtest.ack_interval must be in (0, 1s], got %s", c.AckInterval)
	}
	if c.AckBatch < 1 || c.AckBatch > 4096 {
		bad("loadtest.ack_batch must be in 1..4096, got %d", c.AckBatch)
	}
	if _, err := wsc.ParseIPRange(c.SourceIPs); err != nil {
		bad("loadtest.source_ips: %v", err)
	}
	if len(c.UserPrefix) > 32 {
		bad("loadtest.user_prefix must be at most 32 bytes, got %d", len(c.UserPrefix))
	}
	return errors.Join(errs...)
}
