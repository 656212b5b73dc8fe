package logic

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

var rateLimited = metrics.NewCounter(`parley_logic_requests_rejected_total{reason="rate_limited"}`)

// rateLimiter is a per-key token bucket (rate per second, burst tokens),
// sharded to keep lock contention low. Idle buckets are dropped by sweep.
// Safe for concurrent use.
type rateLimiter struct {
	rate   float64 // tokens per second; <= 0 disables the limiter
	burst  float64
	shards [64]rateShard
}

type rateShard struct {
	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	l := &rateLimiter{rate: rate, burst: float64(max(burst, 1))}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// allow takes one token for key at now. When the bucket is empty it
// returns false and how long until a token is available.
func (l *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	sh := &l.shards[h.Sum32()%uint32(len(l.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		sh.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, max(wait, time.Millisecond)
}

// sweep drops buckets that have been full (idle) for a while.
func (l *rateLimiter) sweep(now time.Time) {
	if l.rate <= 0 {
		return
	}
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.buckets {
			if now.Sub(b.last) > full {
				delete(sh.buckets, k)
			}
		}
		sh.mu.Unlock()
	}
}
