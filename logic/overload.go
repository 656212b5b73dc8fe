package logic

import (
	"log/slog"
	"sync"
	"time"
)

// overloadEvery is the most often overloadLog writes a line.
const overloadEvery = 10 * time.Second

// overloadLog counts requests refused for overload (a full shard queue, a
// wait over logic.queue_deadline) and logs them at most once per
// overloadEvery: the first refusal after a quiet interval at once, the
// rest with the next line. An operator sees overload in the log as well
// as in parley_logic_requests_rejected_total, without a line per request.
// Safe for concurrent use.
type overloadLog struct {
	log     *slog.Logger
	mu      sync.Mutex // guards the following
	last    time.Time  // when the last line was written; zero: never
	counts  map[string]int
	maxWait time.Duration
}

// note counts one refusal for reason (waited: how long the request had
// queued, 0 when unknown), and logs what it counted when the last line is
// overloadEvery old. It reports whether it logged.
func (o *overloadLog) note(now time.Time, reason string, waited time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[reason]++
	o.maxWait = max(o.maxWait, waited)
	if !o.last.IsZero() && now.Sub(o.last) < overloadEvery {
		return false
	}
	if o.log != nil {
		attrs := []any{"max_wait", o.maxWait}
		for r, n := range o.counts {
			attrs = append(attrs, r, n)
		}
		o.log.Warn("overloaded: requests refused (retryable) since the last such line; see parley_logic_requests_rejected_total", attrs...)
	}
	clear(o.counts)
	o.last, o.maxWait = now, 0
	return true
}
