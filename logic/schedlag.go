package logic

import (
	"sync/atomic"
	"time"
)

// lagInterval is how often the scheduling-lag probe asks to wake.
const lagInterval = 50 * time.Millisecond

// schedLag measures how long this process waits for CPU: a goroutine asks
// to wake every interval and adds up how late it woke. On a starved machine
// (more runnable threads than cores) every call, to the store or not, takes
// longer by the waits that fall inside it, and the store is not to blame
// for them. The breaker subtracts the lateness accrued during a call before
// it judges the call slow (logic/breaker), so a node that is short of
// CPU does not open its circuit and turn its own slowness into failed sends
// and retry storms.
type schedLag struct {
	interval time.Duration
	now      func() time.Time
	epoch    time.Time // offsets below are from here (monotonic clock)

	total atomic.Int64 // ns of lateness of all wake-ups so far
	last  atomic.Int64 // ns from epoch to the latest wake-up; 0: the probe is not running
	peak  atomic.Int64 // ns: the largest lateness among the recent wake-ups (for the gauge)

	// Only the probe goroutine touches these.
	ring [lagSamples]time.Duration
	next int
}

// lagSamples wake-ups make the window of the peak that the gauge
// parley_logic_sched_lag_seconds shows: about 1.6 s at lagInterval.
const lagSamples = 32

func newSchedLag(interval time.Duration) *schedLag {
	return &schedLag{interval: interval, now: time.Now, epoch: time.Now()}
}

// since returns the offset of t from the epoch, at least 1 ns (0 means
// "not running" in last).
func (l *schedLag) since(t time.Time) int64 { return max(int64(t.Sub(l.epoch)), 1) }

// run wakes every interval until stop is closed.
func (l *schedLag) run(stop <-chan struct{}) {
	t := time.NewTimer(l.interval)
	defer t.Stop()
	defer l.last.Store(0) // a stopped probe is not overdue
	want := l.now().Add(l.interval)
	l.last.Store(l.since(l.now()))
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
	late = max(late, 0)
	l.total.Add(int64(late))
	l.ring[l.next] = late
	l.next = (l.next + 1) % lagSamples
	var peak time.Duration
	for _, d := range l.ring {
		peak = max(peak, d)
	}
	l.peak.Store(int64(peak))
	l.last.Store(l.since(woke))
}

// overdue returns how much later than due the running probe is at t.
func (l *schedLag) overdue(t time.Time) time.Duration {
	last := l.last.Load()
	if last == 0 {
		return 0
	}
	return max(time.Duration(l.since(t)-last)-l.interval, 0)
}

// Lateness returns the process's lateness in getting a CPU accrued up to
// t (the caller's own reading of the clock, usually now): that of every
// wake-up, plus how overdue the probe is at t (it is starved and has not
// woken to say so). The difference of two readings is the lateness
// accrued between them. A nil probe reads 0.
func (l *schedLag) Lateness(t time.Time) time.Duration {
	if l == nil {
		return 0
	}
	return time.Duration(l.total.Load()) + l.overdue(t)
}

// recent returns the recent peak lateness (or the current overdue time, if
// larger), for the gauge.
func (l *schedLag) recent() time.Duration {
	if l == nil {
		return 0
	}
	return max(time.Duration(l.peak.Load()), l.overdue(l.now()))
}
