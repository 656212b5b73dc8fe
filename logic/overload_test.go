package logic

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

func TestOverloadLog(t *testing.T) {
	var buf bytes.Buffer
	o := overloadLog{log: slog.New(slog.NewTextHandler(&buf, nil))}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at     time.Duration
		reason string
		logged bool
	}{
		{0, "queue_full", true},                // the first one at once
		{time.Second, "queue_deadline", false}, // then counted
		{2 * time.Second, "queue_deadline", false},
		{overloadEvery, "queue_full", true}, // an interval later: the three since
		{overloadEvery + time.Second, "queue_full", false},
		{5 * overloadEvery, "queue_full", true}, // after a quiet spell: at once
	}
	for i, s := range steps {
		if got := o.note(t0.Add(s.at), s.reason, 300*time.Millisecond); got != s.logged {
			t.Fatalf("step %d: logged %v, want %v", i, got, s.logged)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "queue_deadline=2") || !strings.Contains(lines[1], "queue_full=1") {
		t.Fatalf("log lines:\n%s", buf.String())
	}
}

// TestShardQueueDeadline: a request that waited in its shard's queue
// longer than logic.queue_deadline is answered "overloaded" with a
// retry-after, not sequenced; an overdue ack is dropped; a request within
// the bound is served.
func TestShardQueueDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		svc := newBareService(t, st, func(c *Config) { c.QueueDeadline = 100 * time.Millisecond })
		sh := svc.shards[0]
		late, ok := &capture{}, &capture{}
		old := mkSend("r1", "alice", "bob", late)
		old.recv = svc.now().Add(-150 * time.Millisecond)
		fresh := mkSend("r2", "alice", "bob", ok)
		sh.process([]*request{old, fresh})
		if len(late.frames) != 1 || !strings.Contains(late.frames[0], `"code":"overloaded"`) || !strings.Contains(late.frames[0], `"retry_after_ms":100`) {
			t.Fatalf("overdue send: got %v, want overloaded with retry_after_ms", late.frames)
		}
		if len(ok.frames) != 1 || !strings.Contains(ok.frames[0], `"type":"sent"`) || !strings.Contains(ok.frames[0], `"seq":1`) {
			t.Fatalf("send within the bound: got %v, want sent seq 1", ok.frames)
		}
		before := acksOverdue.Get()
		ack := &request{in: proto.Inbound{Type: proto.TypeAck, Chat: "dm:alice:bob", Seq: 1}, user: "bob", device: "d", out: ok,
			chat: "dm:alice:bob", recv: svc.now().Add(-time.Second)}
		sh.process([]*request{ack})
		if got := acksOverdue.Get() - before; got != 1 || len(ok.frames) != 1 {
			t.Fatalf("overdue ack: dropped %d, frames %v; want dropped, no answer", got, ok.frames)
		}
	})
}
