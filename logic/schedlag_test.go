package logic

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/logic/breaker"
)

func TestSchedLagLateness(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newSchedLag(50 * time.Millisecond)
	l.now = func() time.Time { return now }
	l.epoch = now
	if got := l.Lateness(now); got != 0 {
		t.Fatalf("before the probe runs: lateness %v, want 0", got)
	}
	l.last.Store(l.since(now)) // run's first step
	steps := []struct {
		name        string
		wake        bool          // the probe wakes after the interval plus late
		late        time.Duration //
		advance     time.Duration // then the clock moves on by this
		wantLate    time.Duration // lateness() afterwards
		wantOverdue time.Duration
	}{
		{"on time", true, 0, 0, 0, 0},
		{"late by 300ms", true, 300 * time.Millisecond, 0, 300 * time.Millisecond, 0},
		{"within the interval is not overdue", true, 0, 40 * time.Millisecond, 300 * time.Millisecond, 0},
		{"starved: overdue counts at once", false, 0, 810 * time.Millisecond, 1100 * time.Millisecond, 800 * time.Millisecond},
		{"the wake-up takes over the overdue time", true, 0, 0, 1100 * time.Millisecond, 0},
		{"negative lateness is none", true, -time.Millisecond, 0, 1100 * time.Millisecond, 0},
	}
	due := now.Add(50 * time.Millisecond)
	for _, st := range steps {
		if st.wake {
			if st.name == "the wake-up takes over the overdue time" {
				// The starved probe finally wakes: late by everything
				// past its due time.
				st.late = now.Sub(due)
			} else {
				now = due.Add(st.late)
			}
			l.observe(now, st.late)
			due = now.Add(50 * time.Millisecond)
		}
		now = now.Add(st.advance)
		if got := l.Lateness(now); got != st.wantLate {
			t.Fatalf("%s: lateness %v, want %v", st.name, got, st.wantLate)
		}
		if got := l.overdue(now); got != st.wantOverdue {
			t.Fatalf("%s: overdue %v, want %v", st.name, got, st.wantOverdue)
		}
	}
	if got := l.recent(); got != 800*time.Millisecond {
		t.Fatalf("recent peak %v, want 800ms", got)
	}
}

func TestSchedLagNil(t *testing.T) {
	var l *schedLag
	if got := l.Lateness(time.Now()); got != 0 {
		t.Errorf("nil probe: lateness %v, want 0", got)
	}
	if got := l.recent(); got != 0 {
		t.Errorf("nil probe: recent %v, want 0", got)
	}
}

// The probe wakes on time on an idle machine, accrues no lateness, and is
// not overdue once stopped.
func TestSchedLagRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newSchedLag(lagInterval)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { defer close(done); l.run(stop) }()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := l.Lateness(time.Now()); got != 0 {
			t.Errorf("lateness after 1s on time: %v, want 0", got)
		}
		if l.last.Load() == 0 {
			t.Error("the running probe recorded no wake-up")
		}
		close(stop)
		<-done
		time.Sleep(time.Second)
		if got, last := l.overdue(time.Now()), l.last.Load(); got != 0 || last != 0 {
			t.Errorf("stopped probe: overdue %v, last %d; want 0, 0", got, last)
		}
	})
}

// Only the CPU wait that falls inside a call is subtracted from it: a call
// slowed by a starved node is excused, a slow call on a node that is not
// starved counts even if the node was starved a moment before.
func TestBreakerExcusesSchedulingLag(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	lag := newSchedLag(50 * time.Millisecond)
	lag.now, lag.epoch = clock, now
	lag.last.Store(lag.since(now))
	b := breaker.New(BreakerConfig{Latency: 500 * time.Millisecond, Failures: 2, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, breaker.Options{Now: clock, Lag: lag})
	// slow runs a call of d; the probe either wakes on time every 50 ms
	// during it or sleeps through it (a starved node).
	slow := func(d time.Duration, starved bool) {
		_ = b.Call(func() error {
			if starved {
				now = now.Add(d)
				return nil
			}
			for end := now.Add(d); now.Before(end); {
				now = now.Add(50 * time.Millisecond)
				lag.observe(now, 0)
			}
			return nil
		})
	}
	slow(800*time.Millisecond, true)
	// The probe wakes at last, 750 ms late, and the next call starts.
	now = now.Add(10 * time.Millisecond)
	lag.observe(now, 760*time.Millisecond)
	slow(800*time.Millisecond, true)
	if b.Open() {
		t.Fatal("calls slowed by a CPU-starved node opened the breaker")
	}
	// The node is not starved any more: a slow call counts although a
	// wake-up 750 ms late was moments ago.
	slow(600*time.Millisecond, false)
	if b.Open() {
		t.Fatal("opened after one failure, want two")
	}
	slow(600*time.Millisecond, false)
	if !b.Open() {
		t.Fatal("slow calls on a node that is not starved did not open the breaker")
	}
}
