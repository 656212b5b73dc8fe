package loadtest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/wsclient"
)

// Modes.
const (
	ModePairs = "pairs" // N one-on-one pairs, one sender each
	ModeGroup = "group" // G groups of M members, one sender each
	// ModePopulation is a population of users following a daily-message
	// model (see model.go): 1-on-1 chats and groups, bursts and replies,
	// presence churn and an optional reconnect storm.
	ModePopulation = "population"
)

// Config configures a load test run.
type Config struct {
	// URL is the connection node's WebSocket URL, or several separated by
	// commas: connections then go round robin over them (in pairs mode each
	// pair's sender and receiver land on different nodes). Required.
	URL string `yaml:"url"`
	// Mode is "pairs", "group" or "population". Default pairs.
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
	// evenly over the senders (pairs, group), or the expected aggregate
	// rate the population model is compressed to (population, unless
	// Compression is set). Default 2000.
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
	// ReportInterval is the length of one row of the report over time
	// (throughput, latency quantiles, errors per interval), also printed
	// as progress. Default 1s.
	ReportInterval time.Duration `yaml:"report_interval"`
	// WatchPIDs names server processes whose CPU time (user + system, from
	// /proc/PID/stat) the report gives over the measured window, per
	// delivery: "name=pid,name=pid". Empty: none (Linux only).
	WatchPIDs string `yaml:"watch_pids"`

	// Population mode (see model.go for the model).

	// Users is the number of users (one connection each). Default 10000.
	Users int `yaml:"users"`
	// Seed makes the population, its schedule and churn reproducible.
	// Default 1.
	Seed int64 `yaml:"seed"`
	// DailyMean is the mean messages a user sends per day. Default 40.
	DailyMean float64 `yaml:"daily_mean"`
	// DailySigma is the shape of the log-normal messages-per-day
	// distribution: 0 gives every user DailyMean, 1 makes the top 10% of
	// users send about 40% of the messages. Default 1.
	DailySigma float64 `yaml:"daily_sigma"`
	// Compression is how many seconds of the day one second of the run
	// plays (e.g. 1440: a day in a minute). Zero derives it from Rate.
	// Default 0.
	Compression float64 `yaml:"compression"`
	// DayCurve is how active the users are over the 24 hours of their day,
	// hour by hour, relative: hour h's message rate is DayCurve[h] divided
	// by the mean of DayCurve, times the day's average rate (Rate is that
	// average), interpolated linearly between hour midpoints. With a
	// compression that plays a slice of the day, the run's rate follows
	// the curve over that slice. Empty (the default): flat, every hour
	// alike. TypicalDayCurve is one shape to start from.
	DayCurve []float64 `yaml:"day_curve"`
	// DayStart is the time of day the run starts at, for DayCurve (e.g.
	// 18h: the run plays the evening). Default 0: midnight.
	DayStart time.Duration `yaml:"day_start"`
	// Contacts is the average number of 1-on-1 chats per user. Default 8.
	Contacts int `yaml:"contacts"`
	// GroupsPerUser is the average number of groups a user is in; zero
	// means no groups. Default 1.
	GroupsPerUser float64 `yaml:"groups_per_user"`
	// GroupSizeMean is the mean group size (log-normal, at least 3).
	// Default 6.
	GroupSizeMean float64 `yaml:"group_size_mean"`
	// GroupSizeMax caps group sizes, 3..100. Default 50.
	GroupSizeMax int `yaml:"group_size_max"`
	// GroupShare is the share of a group member's conversations that go
	// to one of its groups, 0..1. Default 0.3.
	GroupShare float64 `yaml:"group_share"`
	// BurstMean is the mean messages per burst (geometric, >= 1).
	// Default 3.
	BurstMean float64 `yaml:"burst_mean"`
	// BurstGap is the mean gap between messages of a burst (exponential,
	// run time). Default 1s.
	BurstGap time.Duration `yaml:"burst_gap"`
	// ReplyProb is the chance that another member answers a burst,
	// 0..0.95. Default 0.6.
	ReplyProb float64 `yaml:"reply_prob"`
	// ReplyDelay is the mean delay before that answer (exponential, run
	// time). Default 3s.
	ReplyDelay time.Duration `yaml:"reply_delay"`
	// OfflineShare is the share of users offline at any time, 0..0.9
	// (churn: they disconnect and come back later; messages to them are
	// delivered on their return). Zero means no churn. Default 0.1.
	OfflineShare float64 `yaml:"offline_share"`
	// OfflineMean is the mean length of an offline period (exponential).
	// Default 20s.
	OfflineMean time.Duration `yaml:"offline_mean"`
	// StormAt is when a reconnect storm hits, from the start of sending
	// (warmup included). Zero means no storm. Default 0.
	StormAt time.Duration `yaml:"storm_at"`
	// StormFraction is the share of users whose connection drops at once
	// in the storm, 0..1. Default 0.3.
	StormFraction float64 `yaml:"storm_fraction"`
	// StormJitter spreads the storm's reconnects uniformly over this long.
	// Default 2s.
	StormJitter time.Duration `yaml:"storm_jitter"`
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
		ReportInterval:  time.Second,
		Users:           10000,
		Seed:            1,
		DailyMean:       40,
		DailySigma:      1,
		Contacts:        8,
		GroupsPerUser:   1,
		GroupSizeMean:   6,
		GroupSizeMax:    50,
		GroupShare:      0.3,
		BurstMean:       3,
		BurstGap:        time.Second,
		ReplyProb:       0.6,
		ReplyDelay:      3 * time.Second,
		OfflineShare:    0.1,
		OfflineMean:     20 * time.Second,
		StormFraction:   0.3,
		StormJitter:     2 * time.Second,
	}
}

// TypicalDayCurve is an illustrative shape of a messaging day, hour by
// hour from midnight, relative: quiet nights (about a fifth of the mean at
// 3-5 am), a working-day plateau, and an evening peak about 1.6 times the
// mean at 8-10 pm. It is a shape to start from, not data measured from a
// real service; use your own traffic's curve where you have it.
var TypicalDayCurve = []float64{
	0.55, 0.35, 0.22, 0.15, 0.12, 0.15, 0.30, 0.60, 0.90, 1.05, 1.10, 1.15,
	1.20, 1.15, 1.10, 1.10, 1.15, 1.20, 1.30, 1.45, 1.60, 1.65, 1.40, 0.95,
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
	case ModePopulation:
		c.validatePopulation(bad)
	default:
		bad("loadtest.mode must be %q, %q or %q, got %q", ModePairs, ModeGroup, ModePopulation, c.Mode)
	}
	if _, err := parseWatch(c.WatchPIDs); err != nil {
		bad("loadtest.watch_pids: %v", err)
	}
	if c.ReportInterval < 100*time.Millisecond {
		bad("loadtest.report_interval must be at least 100ms, got %s", c.ReportInterval)
	}
	if c.Rate <= 0 && (c.Mode != ModePopulation || c.Compression <= 0) {
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
	if _, err := wsclient.ParseIPRange(c.SourceIPs); err != nil {
		bad("loadtest.source_ips: %v", err)
	}
	if len(c.UserPrefix) > 32 {
		bad("loadtest.user_prefix must be at most 32 bytes, got %d", len(c.UserPrefix))
	}
	return errors.Join(errs...)
}

func (c Config) validatePopulation(bad func(string, ...any)) {
	if c.Users < 2 || c.Users > 1_000_000 {
		bad("loadtest.users must be in 2..1000000, got %d", c.Users)
	}
	if c.DailyMean <= 0 {
		bad("loadtest.daily_mean must be positive, got %v", c.DailyMean)
	}
	if c.DailySigma < 0 || c.DailySigma > 3 {
		bad("loadtest.daily_sigma must be in 0..3, got %v", c.DailySigma)
	}
	if c.Compression < 0 {
		bad("loadtest.compression must not be negative, got %v", c.Compression)
	}
	if len(c.DayCurve) != 0 {
		var sum float64
		for _, w := range c.DayCurve {
			if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
				bad("loadtest.day_curve: weights must be finite and not negative, got %v", w)
			}
			sum += w
		}
		if len(c.DayCurve) != 24 || sum <= 0 {
			bad("loadtest.day_curve: want 24 hourly weights with a positive sum, got %d weights summing to %v", len(c.DayCurve), sum)
		}
	}
	if c.DayStart < 0 || c.DayStart >= 24*time.Hour {
		bad("loadtest.day_start must be in 0..24h, got %s", c.DayStart)
	}
	if c.Contacts < 0 || c.Contacts > 1000 {
		bad("loadtest.contacts must be in 0..1000, got %d", c.Contacts)
	}
	if c.Contacts == 0 && c.GroupsPerUser <= 0 {
		bad("loadtest.contacts and loadtest.groups_per_user: at least one must be positive")
	}
	if c.GroupsPerUser < 0 || c.GroupsPerUser > 100 {
		bad("loadtest.groups_per_user must be in 0..100, got %v", c.GroupsPerUser)
	}
	if c.GroupSizeMax < 3 || c.GroupSizeMax > 100 {
		bad("loadtest.group_size_max must be in 3..100, got %d", c.GroupSizeMax)
	}
	if c.GroupSizeMean < 3 || c.GroupSizeMean > float64(max(c.GroupSizeMax, 3)) {
		bad("loadtest.group_size_mean must be in 3..group_size_max, got %v", c.GroupSizeMean)
	}
	if c.GroupShare < 0 || c.GroupShare > 1 {
		bad("loadtest.group_share must be in 0..1, got %v", c.GroupShare)
	}
	if c.BurstMean < 1 || c.BurstMean > 100 {
		bad("loadtest.burst_mean must be in 1..100, got %v", c.BurstMean)
	}
	if c.BurstGap <= 0 || c.ReplyDelay <= 0 {
		bad("loadtest.burst_gap and loadtest.reply_delay must be positive, got %s and %s", c.BurstGap, c.ReplyDelay)
	}
	if c.ReplyProb < 0 || c.ReplyProb > 0.95 {
		bad("loadtest.reply_prob must be in 0..0.95, got %v", c.ReplyProb)
	}
	if c.OfflineShare < 0 || c.OfflineShare > 0.9 {
		bad("loadtest.offline_share must be in 0..0.9, got %v", c.OfflineShare)
	}
	if c.OfflineShare > 0 && c.OfflineMean <= 0 {
		bad("loadtest.offline_mean must be positive with churn, got %s", c.OfflineMean)
	}
	if c.StormAt < 0 {
		bad("loadtest.storm_at must not be negative, got %s", c.StormAt)
	}
	if c.StormFraction < 0 || c.StormFraction > 1 {
		bad("loadtest.storm_fraction must be in 0..1, got %v", c.StormFraction)
	}
	if c.StormJitter < 0 {
		bad("loadtest.storm_jitter must not be negative, got %s", c.StormJitter)
	}
}
