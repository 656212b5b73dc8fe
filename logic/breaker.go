package logic

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/record"
)

// ErrStoreUnavailable is returned without calling the store while the
// circuit breaker is open. Clients see a retryable "unavailable" error.
var ErrStoreUnavailable = errors.New("logic: store unavailable (circuit open)")

var (
	breakerOpens    = metrics.NewCounter(`parley_logic_store_breaker_opens_total`)
	breakerRejected = metrics.NewCounter(`parley_logic_store_breaker_rejected_total`)
	storeCalls      = metrics.NewCounter(`parley_logic_store_calls_total`)
	storeErrors     = metrics.NewCounter(`parley_logic_store_errors_total`)
	storeLatency    = metrics.NewHistogram(`parley_logic_store_call_duration_seconds`)
	slowExcused     = metrics.NewCounter(`parley_logic_store_slow_calls_excused_total`)
)

// BreakerConfig configures the store circuit breaker.
type BreakerConfig struct {
	// Latency: a store call slower than this counts as a failure.
	// Default 500ms. The time the node itself waited for a CPU during the
	// call (measured by a wake-up probe) is subtracted first, so a node
	// that is short of CPU does not take its own slowness for the store's.
	Latency time.Duration `yaml:"latency"`
	// Failures: the circuit opens when at least this many calls failed
	// (errors or slow calls) within Window and they are at least
	// FailureRatio of the calls made in it. Default 5.
	Failures int `yaml:"failures"`
	// FailureRatio is the share of failed calls within Window that opens
	// the circuit (with at least Failures of them), in (0, 1]. Default
	// 0.5: a store that fails most calls is shed; a loaded store with a
	// few slow calls among thousands keeps serving the rest.
	FailureRatio float64 `yaml:"failure_ratio"`
	// Window is the period over which calls and failures are counted.
	// Default 10s.
	Window time.Duration `yaml:"window"`
	// Cooldown: how long the circuit stays open before one probe call is let
	// through (half-open). Default 2s.
	Cooldown time.Duration `yaml:"cooldown"`
}

// breakerBuckets is how many slices of Window the breaker counts calls in.
const breakerBuckets = 10

// callBucket counts the calls and failures of one slice of the window.
type callBucket struct {
	slot         int64 // which slice: (time - epoch) / (Window/breakerBuckets)
	calls, fails int
}

// breaker opens when, within Window, at least Failures calls failed and
// they are at least FailureRatio of all calls; it lets one probe through
// after Cooldown, and a successful probe closes it. Safe for concurrent
// use.
type breaker struct {
	cfg BreakerConfig
	now func() time.Time
	lag *schedLag    // nil: no probe, nothing subtracted
	log *slog.Logger // nil: nothing logged

	mu       sync.Mutex // guards the following
	epoch    time.Time  // the first counted call: bucket 0 starts here
	buckets  [breakerBuckets]callBucket
	open     bool
	openedAt time.Time
	probing  bool // a half-open probe is in flight
}

// allow reports whether a call may go to the store now, and whether it
// is the half-open probe (whose outcome alone closes or re-opens the
// circuit).
func (b *breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false
	}
	if !b.probing && b.now().Sub(b.openedAt) >= b.cfg.Cooldown {
		b.probing = true // half-open: one probe
		return true, true
	}
	return false, false
}

// storeFailed reports whether err is a store failure: not-found and
// conflict are answers, not failures.
func storeFailed(err error) bool {
	return err != nil && !errors.Is(err, record.ErrNotFound) && !errors.Is(err, record.ErrConflict)
}

// done records a call's outcome: it took took, of which the node spent
// waited waiting for a CPU; probe says it was the half-open probe.
func (b *breaker) done(took, waited time.Duration, err error, probe bool) {
	bad := storeFailed(err)
	if took > b.cfg.Latency {
		if took-waited > b.cfg.Latency {
			bad = true
		} else {
			slowExcused.Inc() // slow because the node waited for CPU
		}
	}
	b.mu.Lock()
	now := b.now()
	if probe {
		b.probing = false
		if bad {
			b.openedAt = now // stays open for another cooldown
			b.mu.Unlock()
			return
		}
		b.open = false
		b.buckets = [breakerBuckets]callBucket{}
		b.mu.Unlock()
		if b.log != nil {
			b.log.Info("store circuit closed: a probe call succeeded")
		}
		return
	}
	calls, fails := b.countLocked(now, bad)
	if b.open || fails < b.cfg.Failures || float64(fails) < b.cfg.FailureRatio*float64(calls) {
		b.mu.Unlock()
		return // a call that started before the circuit opened changes nothing
	}
	breakerOpens.Inc()
	b.open, b.openedAt = true, now
	b.mu.Unlock()
	if b.log != nil {
		b.log.Warn("store circuit opened: calls fail fast until a probe succeeds",
			"failed", fails, "calls", calls, "window", b.cfg.Window, "cooldown", b.cfg.Cooldown, "last_error", err)
	}
}

// countLocked adds one call at now to its bucket and returns the calls
// and failures within the window (the current bucket and the nine before
// it: between 9/10 of Window and Window). Buckets count from the first
// call (monotonic clock). b.mu held.
func (b *breaker) countLocked(now time.Time, bad bool) (calls, fails int) {
	if b.epoch.IsZero() {
		b.epoch = now
	}
	width := b.cfg.Window / breakerBuckets
	if width <= 0 {
		width = 1
	}
	slot := int64(max(now.Sub(b.epoch), 0) / width)
	bk := &b.buckets[slot%breakerBuckets]
	if bk.slot != slot {
		*bk = callBucket{slot: slot}
	}
	bk.calls++
	if bad {
		bk.fails++
	}
	for _, c := range b.buckets {
		if c.slot > slot-breakerBuckets && c.slot <= slot {
			calls += c.calls
			fails += c.fails
		}
	}
	return calls, fails
}

// isOpen reports whether the circuit is open (for readiness).
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// call runs fn through the breaker.
func (b *breaker) call(fn func() error) error { return b.run(fn, true) }

// callBulk runs fn, a call whose duration grows with its size (the marks
// writer's one call per interval), through the breaker: its errors count,
// its latency does not.
func (b *breaker) callBulk(fn func() error) error { return b.run(fn, false) }

func (b *breaker) run(fn func() error, timed bool) error {
	ok, probe := b.allow()
	if !ok {
		breakerRejected.Inc()
		return ErrStoreUnavailable
	}
	start := b.now()
	lag0 := b.lag.lateness(start)
	err := fn()
	end := b.now()
	took := end.Sub(start)
	var waited time.Duration
	if timed && took > b.cfg.Latency { // only a slow call needs its CPU wait
		waited = b.lag.lateness(end) - lag0
	}
	storeCalls.Inc()
	storeLatency.Update(took.Seconds())
	if storeFailed(err) {
		storeErrors.Inc()
	}
	judged := took
	if !timed {
		judged = 0 // not judged by its latency
	}
	b.done(judged, waited, err, probe)
	return err
}

func (c BreakerConfig) validate() []error {
	var errs []error
	if c.Latency <= 0 {
		errs = append(errs, fmt.Errorf("logic.breaker.latency must be positive, got %s", c.Latency))
	}
	if c.Failures < 1 {
		errs = append(errs, fmt.Errorf("logic.breaker.failures must be positive, got %d", c.Failures))
	}
	if !(c.FailureRatio > 0 && c.FailureRatio <= 1) {
		errs = append(errs, fmt.Errorf("logic.breaker.failure_ratio must be in (0, 1], got %v", c.FailureRatio))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("logic.breaker.window must be positive, got %s", c.Window))
	}
	if c.Cooldown <= 0 {
		errs = append(errs, fmt.Errorf("logic.breaker.cooldown must be positive, got %s", c.Cooldown))
	}
	return errs
}

// probingNow reports whether a probe is in flight (tests).
func (b *breaker) probingNow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.probing
}
