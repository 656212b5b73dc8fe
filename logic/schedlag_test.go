package logic

import (
	"testing"
	"time"
)

func TestSchedLagRecent(t *testing.T) {
	base := time.Unix(1000, 0)
	now := base
	l := newSchedLag(50 * time.Millisecond)
	l.now = func() time.Time { return now }
	if got := l.recent(); got != 0 {
		t.Fatalf("before the first wake-up: %v, want 0", got)
	}
	steps := []struct {
		name    string
		wake    time.Duration // the probe wakes after this, late by late (0: no wake-up)
		late    time.Duration
		advance time.Duration // then the clock moves on by this
		want    time.Duration
	}{
		{"on time", 50 * time.Millisecond, 0, 0, 0},
		{"a late wake-up is the peak", 50 * time.Millisecond, 300 * time.Millisecond, 0, 300 * time.Millisecond},
		{"later wake-ups on time keep the peak", 50 * time.Millisecond, 0, 10 * time.Millisecond, 300 * time.Millisecond},
		{"an overdue probe counts its overdue time", 0, 0, 900 * time.Millisecond, 860 * time.Millisecond},
		{"negative lateness is none", 50 * time.Millisecond, -time.Millisecond, 0, 300 * time.Millisecond},
	}
	for _, st := range steps {
		if st.wake > 0 {
			now = now.Add(st.wake + st.late)
			l.observe(now, st.late)
		}
		now = now.Add(st.advance)
		if got := l.recent(); got != st.want {
			t.Fatalf("%s: recent=%v, want %v", st.name, got, st.want)
		}
	}
	for range lagSamples { // the 300 ms sample leaves the window
		now = now.Add(50 * time.Millisecond)
		l.observe(now, 0)
	}
	if got := l.recent(); got != 0 {
		t.Fatalf("after the window: %v, want 0", got)
	}
}

func TestSchedLagNilIsZero(t *testing.T) {
	var l *schedLag
	if got := l.recent(); got != 0 {
		t.Fatalf("nil probe: %v", got)
	}
}

func TestSchedLagRunWakes(t *testing.T) {
	l := newSchedLag(5 * time.Millisecond)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); l.run(stop) }()
	deadline := time.Now().Add(5 * time.Second)
	first := int64(0)
	for time.Now().Before(deadline) {
		if v := l.last.Load(); first == 0 {
			first = v
		} else if v != first {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if l.last.Load() == first {
		t.Fatal("the probe did not wake within 5s")
	}
	close(stop)
	<-done
}

// A call slowed by the node's own wait for CPU does not count against the
// store; one slower than that wait plus the bound does.
func TestBreakerExcusesSchedulingLag(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	lag := newSchedLag(50 * time.Millisecond)
	lag.now = clock
	b := &breaker{cfg: BreakerConfig{Latency: 500 * time.Millisecond, Failures: 2, Window: 10 * time.Second, Cooldown: time.Second}, now: clock, lag: lag}
	lag.last.Store(now.UnixNano())
	slow := func(d time.Duration, probeOnTime bool) {
		_ = b.call(func() error {
			if !probeOnTime {
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
	// The probe slept through the calls: it is overdue by about as long as
	// they took, so they are excused.
	slow(800*time.Millisecond, false)
	slow(800*time.Millisecond, false)
	if b.isOpen() {
		t.Fatal("calls slowed by a CPU-starved node opened the breaker")
	}
	// The probe wakes on time again: slow calls count.
	for range lagSamples {
		now = now.Add(50 * time.Millisecond)
		lag.observe(now, 0)
	}
	slow(600*time.Millisecond, true)
	slow(600*time.Millisecond, true)
	if !b.isOpen() {
		t.Fatal("slow calls on an unstarved node did not open the breaker")
	}
}
