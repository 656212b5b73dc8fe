package connsrv

import (
	"encoding/binary"
	"math"
	"net/netip"
	"sync"
	"time"
)

const (
	ipShards = 64
	// maxIPBuckets bounds the buckets of one shard (256 Ki addresses in
	// all, about 16 MiB at most). When a shard is full, addresses without a bucket
	// are let through uncounted until the sweeper frees room (counted in
	// parley_connsrv_ip_buckets_full_total).
	maxIPBuckets = 1 << 12
)

// ipLimiter is a token bucket per client IP: rate tokens per second up to
// burst, one token per new connection. Idle buckets (full again) are
// dropped by sweep, so memory follows the number of recently active
// addresses. Safe for concurrent use.
type ipLimiter struct {
	rate   float64 // tokens per second
	burst  float64
	refill int64 // nanoseconds for an empty bucket to fill up
	exempt []netip.Prefix
	shards [ipShards]ipShard
}

type ipShard struct {
	mu sync.Mutex // guards m
	m  map[netip.Addr]ipBucket
}

type ipBucket struct {
	tokens float64
	last   int64 // unix nanos of the last update
}

// newIPLimiter returns a limiter, or nil when rate is 0 (no limit).
func newIPLimiter(rate float64, burst int, exempt []netip.Prefix) *ipLimiter {
	if rate <= 0 {
		return nil
	}
	l := &ipLimiter{rate: rate, burst: float64(burst), exempt: exempt}
	l.refill = int64(l.burst / rate * float64(time.Second))
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]ipBucket)
	}
	return l
}

func (l *ipLimiter) shard(a netip.Addr) *ipShard {
	b := a.As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(b[8:])
	h *= 0xbf58476d1ce4e5b9
	return &l.shards[h>>58]
}

// Limiter outcomes.
const (
	ipAllowed = iota
	ipLimited
	ipTableFull // allowed, but not tracked
)

// allow takes one token for a, at unix nanos now. When the bucket is empty
// it returns ipLimited and how long until a token is available.
func (l *ipLimiter) allow(a netip.Addr, now int64) (int, time.Duration) {
	a = a.Unmap()
	for _, p := range l.exempt {
		if p.Contains(a) {
			return ipAllowed, 0
		}
	}
	sh := l.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.m[a]
	if !ok {
		if len(sh.m) >= maxIPBuckets {
			return ipTableFull, 0
		}
		b = ipBucket{tokens: l.burst, last: now}
	} else if now > b.last {
		b.tokens = min(l.burst, b.tokens+float64(now-b.last)*l.rate/float64(time.Second))
		b.last = now
	}
	if b.tokens < 1 {
		sh.m[a] = b
		wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
		return ipLimited, wait
	}
	b.tokens--
	sh.m[a] = b
	return ipAllowed, 0
}

// sweep drops the buckets that have filled up again (idle addresses) and
// returns how many are left.
func (l *ipLimiter) sweep(now int64) int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for a, b := range sh.m {
			if now-b.last >= l.refill {
				delete(sh.m, a)
			}
		}
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// retryAfterSeconds rounds a wait up to whole seconds for Retry-After.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
