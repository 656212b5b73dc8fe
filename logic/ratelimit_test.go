package logic

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

func TestRateLimiterBucket(t *testing.T) {
	l := newRateLimiter(20, 20)
	t0 := time.Unix(100, 0)
	for i := 0; i < 20; i++ {
		if ok, _ := l.allow("alice", t0); !ok {
			t.Fatalf("send %d refused, want the burst of 20 allowed", i+1)
		}
	}
	ok, wait := l.allow("alice", t0)
	if ok || wait != 50*time.Millisecond {
		t.Fatalf("21st send: got allowed=%v wait=%v, want refused with 50ms", ok, wait)
	}
	if ok, _ := l.allow("bob", t0); !ok {
		t.Fatal("another user must not be limited")
	}
	if ok, _ := l.allow("alice", t0.Add(50*time.Millisecond)); !ok {
		t.Fatal("a token must be back after 50ms")
	}
	l.sweep(t0.Add(10 * time.Second))
	for i := range l.shards {
		if n := len(l.shards[i].buckets); n != 0 {
			t.Fatalf("shard %d keeps %d idle buckets after sweep", i, n)
		}
	}
	if ok, _ := newRateLimiter(0, 0).allow("x", t0); !ok {
		t.Fatal("rate 0 must disable the limiter")
	}
}

func TestTwentyFirstSendIsRateLimited(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) { c.SendRate, c.SendBurst = 20, 20 })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for i := 0; i < 21; i++ { // back to back: well within one second
		n.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"bob","body":"m%d"}`, i, i))
	}
	sent, limited := 0, 0
	for i := 0; i < 21; i++ {
		m := n.next(1)
		switch m["type"] {
		case "sent":
			sent++
		case "error":
			if m["code"] != proto.CodeRateLimited || m["retryable"] != true || m["retry_after_ms"] == nil {
				t.Fatalf("got %v, want a retryable rate_limited error with retry_after_ms", m)
			}
			limited++
		default:
			i--
		}
	}
	if sent != 20 || limited != 1 {
		t.Fatalf("got %d sent and %d rate-limited, want 20 and 1", sent, limited)
	}
}
