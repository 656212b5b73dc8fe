package logic

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// TestShardRetriesAppendInDoubt: an append whose outcome is unknown is
// tried again by the shard's own timer, unchanged, without any new
// request; the client's retry then gets the original seq, and the message
// is stored once.
func TestShardRetriesAppendInDoubt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		svc := newBareService(t, st, func(*Config) {})
		sh := svc.shards[0]
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			sh.run(stop)
		}()
		st.mu.Lock()
		st.failAppends = 1
		st.mu.Unlock()
		c := &capture{}
		sh.q <- mkSend("r1", "alice", "bob", c)
		synctest.Wait()
		if len(c.frames) != 1 || !strings.Contains(c.frames[0], `"code":"unavailable"`) {
			t.Fatalf("first attempt: got %v, want a retryable error", c.frames)
		}
		// Nothing was stored yet; the shard's retry timer fires within the
		// core's minimum backoff.
		if n, _ := st.LastSeq(context.Background(), "dm:alice:bob"); n != 0 {
			t.Fatalf("stored before the retry: got last seq %d, want 0", n)
		}
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		if n, _ := st.LastSeq(context.Background(), "dm:alice:bob"); n != 1 {
			t.Fatalf("after the retry timer: got last seq %d, want 1", n)
		}
		sh.q <- mkSend("r1", "alice", "bob", c)
		synctest.Wait()
		if len(c.frames) != 2 || !strings.Contains(c.frames[1], `"type":"sent"`) || !strings.Contains(c.frames[1], `"seq":1`) {
			t.Fatalf("client retry: got %v, want sent seq 1", c.frames)
		}
		msgs, _ := st.Messages(context.Background(), "dm:alice:bob", record.Page{Limit: 10})
		if len(msgs) != 1 {
			t.Fatalf("stored %d messages, want 1", len(msgs))
		}
		close(stop)
		<-done
	})
}
