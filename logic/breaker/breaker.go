package breaker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// ErrOpen is returned without calling the store while the circuit is open.
var ErrOpen = errors.New("logic: store unavailable (circuit open)")

// Config configures a breaker. The yaml names are logic.breaker's.
type Config struct {
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

// Validate checks c; errors name the settings under prefix (for example
// "logic.breaker.").
func (c Config) Validate(prefix string) []error {
	var errs []error
	if c.Latency <= 0 {
		errs = append(errs, fmt.Errorf("%slatency must be positive, got %s", prefix, c.Latency))
	}
	if c.Failures < 1 {
		errs = append(errs, fmt.Errorf("%sfailures must be positive, got %d", prefix, c.Failures))
	}
	if !(c.FailureRatio > 0 && c.FailureRatio <= 1) {
		errs = append(errs, fmt.Errorf("%sfailure_ratio must be in (0, 1], got %v", prefix, c.FailureRatio))
	}
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("%swindow must be positive, got %s", prefix, c.Window))
	}
	if c.Cooldown <= 0 {
		errs = append(errs, fmt.Errorf("%scooldown must be positive, got %s", prefix, c.Cooldown))
	}
	return errs
}

// Lag is what the breaker asks of the node's scheduling-lag probe: how
// late the process has been waking, accrued up to t. The breaker owns
// no probe; a nil Lag subtracts nothing.
type Lag interface {
	Lateness(t time.Time) time.Duration
}

// Metrics are the counters a breaker updates: every call through it is a
// store call. The zero value counts nothing.
type Metrics struct {
	Opens, Rejected, Calls, Errors, SlowExcused *metrics.Counter
	Latency                                     *metrics.Histogram
}

// Options are a breaker's collaborators; all optional.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Failed says whether a call's error is a failure of the store
	// (answers such as not-found are not); any non-nil error when nil.
	Failed func(error) bool
	// Lag excuses the node's own slowness (see Lag).
	Lag Lag
	// Metrics are updated when set.
	Metrics Metrics
	// Log gets the openings and closings when set.
	Log *slog.Logger
}

// buckets is how many slices of Window the breaker counts calls in.
const buckets = 10

// callBucket counts the calls and failures of one slice of the window.
type callBucket struct {
	slot         int64 // which slice: (time - epoch) / (Window/buckets)
	calls, fails int
}

// Breaker is a circuit breaker. Safe for concurrent use.
type Breaker struct {
	cfg Config
	opt Options

	mu       sync.Mutex // guards the following
	epoch    time.Time  // the first counted call: bucket 0 starts here
	buckets  [buckets]callBucket
	open     bool
	openedAt time.Time
	probing  bool // a half-open probe is in flight
}

// New returns a closed breaker.
func New(cfg Config, opt Options) *Breaker {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Failed == nil {
		opt.Failed = func(err error) bool { return err != nil }
	}
	return &Breaker{cfg: cfg, opt: opt}
}

// Call runs fn through the breaker: ErrOpen without running it while the
// circuit is open; fn's error otherwise. Its error and its latency count.
func (b *Breaker) Call(fn func() error) error { return b.run(fn, true) }

// CallBulk runs fn, a call whose duration grows with its size (a batch
// writer's calls, up to eight an interval), through the breaker: its errors count,
// its latency does not.
func (b *Breaker) CallBulk(fn func() error) error { return b.run(fn, false) }

// Open reports whether the circuit is open (for readiness).
func (b *Breaker) Open() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

func (b *Breaker) run(fn func() error, timed bool) error {
	ok, probe := b.allow()
	if !ok {
		inc(b.opt.Metrics.Rejected)
		return ErrOpen
	}
	start := b.opt.Now()
	lag0 := b.lateness(start)
	err := fn()
	end := b.opt.Now()
	took := end.Sub(start)
	var waited time.Duration
	if timed && took > b.cfg.Latency { // only a slow call needs its CPU wait
		waited = b.lateness(end) - lag0
	}
	m := &b.opt.Metrics
	inc(m.Calls)
	if m.Latency != nil {
		m.Latency.Update(took.Seconds())
	}
	if b.opt.Failed(err) {
		inc(m.Errors)
	}
	judged := took
	if !timed {
		judged = 0 // not judged by its latency
	}
	b.done(judged, waited, err, probe)
	return err
}

func inc(c *metrics.Counter) {
	if c != nil {
		c.Inc()
	}
}

func (b *Breaker) lateness(t time.Time) time.Duration {
	if b.opt.Lag == nil {
		return 0
	}
	return b.opt.Lag.Lateness(t)
}

// allow reports whether a call may go to the store now, and whether it
// is the half-open probe (whose outcome alone closes or re-opens the
// circuit).
func (b *Breaker) allow() (ok, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return true, false
	}
	if !b.probing && b.opt.Now().Sub(b.openedAt) >= b.cfg.Cooldown {
		b.probing = true // half-open: one probe
		return true, true
	}
	return false, false
}

// done records a call's outcome: it took took, of which the node spent
// waited waiting for a CPU; probe says it was the half-open probe.
func (b *Breaker) done(took, waited time.Duration, err error, probe bool) {
	bad := b.opt.Failed(err)
	if took > b.cfg.Latency {
		if took-waited > b.cfg.Latency {
			bad = true
		} else {
			inc(b.opt.Metrics.SlowExcused) // slow because the node waited for CPU
		}
	}
	b.mu.Lock()
	now := b.opt.Now()
	if probe {
		b.probing = false
		if bad {
			b.openedAt = now // stays open for another cooldown
			b.mu.Unlock()
			return
		}
		b.open = false
		b.buckets = [buckets]callBucket{}
		b.mu.Unlock()
		if b.opt.Log != nil {
			b.opt.Log.Info("store circuit closed: a probe call succeeded")
		}
		return
	}
	calls, fails := b.countLocked(now, bad)
	if b.open || fails < b.cfg.Failures || float64(fails) < b.cfg.FailureRatio*float64(calls) {
		b.mu.Unlock()
		return // a call that started before the circuit opened changes nothing
	}
	inc(b.opt.Metrics.Opens)
	b.open, b.openedAt = true, now
	b.mu.Unlock()
	if b.opt.Log != nil {
		b.opt.Log.Warn("store circuit opened: calls fail fast until a probe succeeds",
			"failed", fails, "calls", calls, "window", b.cfg.Window, "cooldown", b.cfg.Cooldown, "last_error", err)
	}
}

// countLocked adds one call at now to its bucket and returns the calls
// and failures within the window (the current bucket and the nine before
// it: between 9/10 of Window and Window). Buckets count from the first
// call (monotonic clock). b.mu held.
func (b *Breaker) countLocked(now time.Time, bad bool) (calls, fails int) {
	if b.epoch.IsZero() {
		b.epoch = now
	}
	width := b.cfg.Window / buckets
	if width <= 0 {
		width = 1
	}
	slot := int64(max(now.Sub(b.epoch), 0) / width)
	bk := &b.buckets[slot%buckets]
	if bk.slot != slot {
		*bk = callBucket{slot: slot}
	}
	bk.calls++
	if bad {
		bk.fails++
	}
	for _, c := range b.buckets {
		if c.slot > slot-buckets && c.slot <= slot {
			calls += c.calls
			fails += c.fails
		}
	}
	return calls, fails
}
