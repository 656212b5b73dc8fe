package logic

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

func TestBreakerStates(t *testing.T) {
	now := time.Unix(0, 0)
	b := &breaker{cfg: BreakerConfig{Latency: 500 * time.Millisecond, Failures: 3, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, now: func() time.Time { return now }}
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
		{"not found is fine", 0, time.Millisecond, record.ErrNotFound, true, false},
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
		err := b.call(func() error {
			called = true
			now = now.Add(st.took)
			return st.err
		})
		if called != st.wantCall {
			t.Fatalf("%s: called=%v, want %v", st.name, called, st.wantCall)
		}
		if !called && !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("%s: got %v, want ErrStoreUnavailable", st.name, err)
		}
		if b.isOpen() != st.wantOpen {
			t.Fatalf("%s: open=%v, want %v", st.name, b.isOpen(), st.wantOpen)
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
			b := &breaker{cfg: BreakerConfig{Latency: time.Second, Failures: 5, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, now: func() time.Time { return now }}
			for i := 0; i < tc.ok; i++ {
				_ = b.call(func() error { now = now.Add(time.Millisecond); return nil })
			}
			for i := 0; i < tc.bad; i++ {
				_ = b.call(func() error { now = now.Add(time.Millisecond); return boom })
			}
			if b.isOpen() != tc.wantOpen {
				t.Fatalf("open=%v after %d ok and %d failed calls, want %v", b.isOpen(), tc.ok, tc.bad, tc.wantOpen)
			}
		})
	}
	// Calls older than the window no longer dilute the failures.
	now := time.Unix(100, 0)
	b := &breaker{cfg: BreakerConfig{Latency: time.Second, Failures: 5, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, now: func() time.Time { return now }}
	for i := 0; i < 100; i++ {
		_ = b.call(func() error { return nil })
	}
	now = now.Add(11 * time.Second)
	for i := 0; i < 5; i++ {
		_ = b.call(func() error { return boom })
	}
	if !b.isOpen() {
		t.Fatal("closed after 5 failures with the 100 successes outside the window, want open")
	}
}

func TestSlowStoreFailsFastAndRecovers(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st, func(c *Config) {
		// Only appends are slow here; the session's fast reads count as
		// calls too, so a low ratio lets three slow appends open it.
		c.Breaker = BreakerConfig{Latency: 50 * time.Millisecond, Failures: 3, FailureRatio: 0.1, Window: 10 * time.Second, Cooldown: 300 * time.Millisecond}
	})
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	st.mu.Lock()
	st.delay = 100 * time.Millisecond
	st.mu.Unlock()
	for i := 0; i < 3; i++ { // slow but successful: they count against the breaker
		n.send(1, fmt.Sprintf(`{"type":"send","id":"s%d","to":"bob","body":"slow"}`, i))
		n.nextType(1, "sent")
	}
	st.mu.Lock()
	calls := st.appendCalls
	st.mu.Unlock()
	n.send(1, `{"type":"send","id":"fast-fail","to":"bob","body":"x"}`)
	m := n.nextType(1, "error")
	st.mu.Lock()
	called := st.appendCalls - calls
	st.mu.Unlock()
	// Failing fast means not waiting for the slow store at all.
	if m["code"] != proto.CodeUnavailable || m["retryable"] != true || called != 0 {
		t.Fatalf("got %v after %d store appends, want a retryable unavailable without one", m, called)
	}
	st.mu.Lock()
	st.delay = 0
	st.mu.Unlock()
	time.Sleep(350 * time.Millisecond) // cooldown: the next call probes
	n.send(1, `{"type":"send","id":"fast-fail","to":"bob","body":"x"}`)
	if m := n.nextType(1, "sent"); m["seq"] != float64(4) {
		t.Fatalf("got %v, want seq 4 after recovery", m)
	}
}

// TestBreakerProbeIsTheOneCall: while a probe is in flight, a call that
// started before the circuit opened does not decide for it.
func TestBreakerProbeIsTheOneCall(t *testing.T) {
	now := time.Unix(100, 0)
	b := &breaker{cfg: BreakerConfig{Latency: time.Second, Failures: 2, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: time.Second}, now: func() time.Time { return now }}
	boom := errors.New("boom")
	release := make(chan error)
	staleStarted, staleDone := make(chan struct{}), make(chan struct{})
	go func() { // started while closed; ends during the probe
		_ = b.call(func() error { close(staleStarted); return <-release })
		close(staleDone)
	}()
	<-staleStarted
	for range 2 {
		_ = b.call(func() error { return boom })
	}
	if !b.isOpen() {
		t.Fatal("closed after 2 of 2 failed, want open")
	}
	now = now.Add(2 * time.Second)
	probeDone := make(chan struct{})
	probeRelease := make(chan error)
	go func() {
		_ = b.call(func() error { return <-probeRelease })
		close(probeDone)
	}()
	for !b.probingNow() {
		time.Sleep(time.Millisecond)
	}
	release <- nil // the stale call succeeds
	<-staleDone
	if !b.isOpen() {
		t.Fatal("a call from before the opening closed the circuit during the probe")
	}
	if ok, _ := b.allow(); ok {
		t.Fatal("a second probe was let in while the first is in flight")
	}
	probeRelease <- boom
	<-probeDone
	if !b.isOpen() {
		t.Fatal("closed after the probe failed, want open")
	}
}
