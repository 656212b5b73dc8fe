package logic

import (
	"sync/atomic"
	"time"
)

// schedLag measures how long this process waits for CPU: a goroutine asks
// to wake every interval and records how late it woke. On a starved machine
// (more runnable threads than cores) every call, to the store or not,
// takes longer by about that lateness, and the store is not to blame for
// it. The breaker subtracts it before it judges a call slow (see
// breaker.done), so a node that is short of CPU does not open its circuit
// and turn its own slowness into failed sends and retry storms.
type schedLag struct {
	interval time.Duration
	now      func() time.Time

	last atomic.Int64 // unix ns of the probe's latest wake-up (0 before the first)
	peak atomic.Int64 // ns: the largest lateness among the recent wake-ups

	// Only the probe goroutine touches these.
	ring [lagSamples]time.Duration
	next int
}

// lagSamples wake-ups make the window the peak is taken over: at the
// default 50 ms interval, about 1.6 s, longer than the breaker's default
// latency bound, so the lateness that slowed a call is still in the window
// when the call ends.
const lagSamples = 32

func newSchedLag(interval time.Duration) *schedLag {
	return &schedLag{interval: interval, now: time.Now}
}

// run wakes every interval until stop is closed.
func (l *schedLag) run(stop <-chan struct{}) {
	t := time.NewTimer(l.interval)
	defer t.Stop()
	want := l.now().Add(l.interval)
	l.last.Store(l.now().UnixNano())
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		woke := l.now()
		l.observe(woke, woke.Sub(want))
		want = woke.Add(l.interval)
		t.Reset(l.interval)
	}
}

// observe records one wake-up at woke, late by late.
func (l *schedLag) observe(woke time.Time, late time.Duration) {
	l.ring[l.next] = max(late, 0)
	l.next = (l.next + 1) % lagSamples
	var peak time.Duration
	for _, d := range l.ring {
		peak = max(peak, d)
	}
	l.peak.Store(int64(peak))
	l.last.Store(woke.UnixNano())
}

// recent returns the process's recent lateness in getting a CPU: the peak
// over the window, or, when the probe itself is overdue (it is starved right
// now and has not woken to say so), how overdue it is.
func (l *schedLag) recent() time.Duration {
	if l == nil {
		return 0
	}
	d := time.Duration(l.peak.Load())
	if last := l.last.Load(); last != 0 {
		overdue := l.now().Sub(time.Unix(0, last)) - l.interval
		d = max(d, overdue)
	}
	return d
}
