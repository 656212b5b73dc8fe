package logic

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

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
