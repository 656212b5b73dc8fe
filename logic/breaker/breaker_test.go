package breaker

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// errNotFound stands for an answer that is not a failure (the logic tier's
// record.ErrNotFound).
var errNotFound = errors.New("not found")

func failed(err error) bool { return err != nil && !errors.Is(err, errNotFound) }

func TestBreakerStates(t *testing.T) {
	now := time.Unix(0, 0)
	b := New(Config{Latency: 500 * time.Millisecond, Failures: 3, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, Options{Now: func() time.Time { return now }, Failed: failed})
	boom := errors.New("boom")
	steps := []struct {
		name     string
		advance  time.Duration
		took     time.Duration
		err      error
		wantCall bool
		wantOpen bool
	}{
		{"ok call", 0, time.Millisecond, nil, true, false},
		{"old failure", 0, time.Millisecond, boom, true, false},
		{"outside the window", 11 * time.Second, time.Millisecond, nil, true, false},
		{"not found is fine", 0, time.Millisecond, errNotFound, true, false},
		{"slow 1", 0, 600 * time.Millisecond, nil, true, false},
		{"success does not reset the count", 0, time.Millisecond, nil, true, false},
		{"error 2", 0, time.Millisecond, boom, true, false},
		{"slow 3 opens: 3 of 6 calls failed", 0, time.Second, nil, true, true},
		{"open rejects", 100 * time.Millisecond, 0, nil, false, true},
		{"probe after cooldown fails", time.Second, 0, boom, true, true},
		{"open again", 0, 0, nil, false, true},
		{"probe succeeds and closes", 2 * time.Second, time.Millisecond, nil, true, false},
		{"closed", 0, time.Millisecond, nil, true, false},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		called := false
		err := b.Call(func() error {
			called = true
			now = now.Add(st.took)
			return st.err
		})
		if called != st.wantCall {
			t.Fatalf("%s: called=%v, want %v", st.name, called, st.wantCall)
		}
		if !called && !errors.Is(err, ErrOpen) {
			t.Fatalf("%s: got %v, want ErrOpen", st.name, err)
		}
		if b.Open() != st.wantOpen {
			t.Fatalf("%s: open=%v, want %v", st.name, b.Open(), st.wantOpen)
		}
	}
}

// TestBreakerRatio: a loaded store with a few slow calls among many keeps
// serving; the same failures with few calls open the circuit.
func TestBreakerRatio(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name     string
		ok, bad  int
		wantOpen bool
	}{
		{"few failures among many calls", 100, 10, false},
		{"failures are half of the calls", 10, 10, true},
		{"fewer failures than Failures", 0, 4, false},
		{"all calls fail", 0, 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(100, 0)
			b := New(Config{Latency: time.Second, Failures: 5, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, Options{Now: func() time.Time { return now }, Failed: failed})
			for i := 0; i < tc.ok; i++ {
				_ = b.Call(func() error { now = now.Add(time.Millisecond); return nil })
			}
			for i := 0; i < tc.bad; i++ {
				_ = b.Call(func() error { now = now.Add(time.Millisecond); return boom })
			}
			if b.Open() != tc.wantOpen {
				t.Fatalf("open=%v after %d ok and %d failed calls, want %v", b.Open(), tc.ok, tc.bad, tc.wantOpen)
			}
		})
	}
	// Calls older than the window no longer dilute the failures.
	now := time.Unix(100, 0)
	b := New(Config{Latency: time.Second, Failures: 5, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, Options{Now: func() time.Time { return now }, Failed: failed})
	for i := 0; i < 100; i++ {
		_ = b.Call(func() error { return nil })
	}
	now = now.Add(11 * time.Second)
	for i := 0; i < 5; i++ {
		_ = b.Call(func() error { return boom })
	}
	if !b.Open() {
		t.Fatal("closed after 5 failures with the 100 successes outside the window, want open")
	}
}

// TestBreakerProbeIsTheOneCall: while a probe is in flight, a call that
// started before the circuit opened does not decide for it.
func TestBreakerProbeIsTheOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := New(Config{Latency: time.Second, Failures: 2, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, Options{Failed: failed})
		boom := errors.New("boom")
		release := make(chan error)
		staleDone := make(chan struct{})
		go func() { // started while closed; ends during the probe
			_ = b.Call(func() error { return <-release })
			close(staleDone)
		}()
		synctest.Wait() // the stale call is in flight
		for range 2 {
			_ = b.Call(func() error { return boom })
		}
		if !b.Open() {
			t.Fatal("closed after 2 of 2 failed, want open")
		}
		time.Sleep(2 * time.Second) // past the cooldown
		probeDone := make(chan struct{})
		probeRelease := make(chan error)
		go func() {
			_ = b.Call(func() error { return <-probeRelease })
			close(probeDone)
		}()
		synctest.Wait() // the probe is in flight
		if b.mu.Lock(); !b.probing {
			b.mu.Unlock()
			t.Fatal("no probe in flight after the cooldown")
		}
		b.mu.Unlock()
		release <- nil // the stale call succeeds
		<-staleDone
		if !b.Open() {
			t.Fatal("a call from before the opening closed the circuit during the probe")
		}
		if err := b.Call(func() error { t.Error("a second probe was let in while the first is in flight"); return nil }); !errors.Is(err, ErrOpen) {
			t.Fatalf("a call during the probe: got %v, want ErrOpen", err)
		}
		probeRelease <- boom
		<-probeDone
		if !b.Open() {
			t.Fatal("closed after the probe failed, want open")
		}
		time.Sleep(time.Second) // another cooldown: the next probe succeeds and closes
		if err := b.Call(func() error { return nil }); err != nil || b.Open() {
			t.Fatalf("probe after the second cooldown: %v, open %v; want closed", err, b.Open())
		}
	})
}
