package client

import (
	"context"
	"errors"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/client/internal/fakeserver"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// put stores n messages from eve in chat, seqs following the stored ones.
func put(s *fakeserver.Server, chat string, n int) []record.Message {
	var out []record.Message
	for range n {
		seq := uint64(len(s.Messages(chat)) + 1)
		m := record.Message{ChatID: chat, Seq: seq, Sender: "eve", Device: "d-eve", RequestID: "r" + chat + string(rune('a'+seq%26)),
			Kind: record.MsgText, Body: "m", TS: 1}
		s.Put(m)
		out = append(out, m)
	}
	return out
}

func recvSeqs(t *testing.T, c *Client, chat string, from, to uint64) {
	t.Helper()
	for want := from; want <= to; want++ {
		m := recvMsg(t, c)
		if m.Chat != chat || m.Seq != want {
			t.Fatalf("got %s #%d, want %s #%d", m.Chat, m.Seq, chat, want)
		}
	}
}

func TestSyncNewDeviceGetsHistory(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:a", 3)
	put(s, "g:b", 2)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	// Everything was handed to Messages before WaitSynced returned.
	if got, want := len(c.Messages()), 5; got != want {
		t.Fatalf("buffered after WaitSynced: got %d, want %d", got, want)
	}
	recvSeqs(t, c, "g:a", 1, 3)
	recvSeqs(t, c, "g:b", 1, 2)
	syncs := s.Syncs()
	if len(syncs) != 1 || syncs[0].Device != "d-bob" || len(syncs[0].Chats) != 0 {
		t.Fatalf("got syncs %+v, want one without positions", syncs)
	}
	if got := s.Frames(proto.TypeSync); len(got) != 1 {
		t.Fatalf("got %d sync frames, want 1", len(got))
	}
	waitFor(t, "acks", func() bool {
		return s.Cursor("bob", "d-bob", "g:a") == 3 && s.Cursor("bob", "d-bob", "g:b") == 2
	})
	if got, want := c.Positions(), map[string]uint64{"g:a": 3, "g:b": 2}; !maps.Equal(got, want) {
		t.Fatalf("positions: got %v, want %v", got, want)
	}
	if st := c.Stats(); st.Syncs != 1 || st.Duplicates != 0 || st.Gaps != 0 {
		t.Fatalf("got stats %+v", st)
	}
}

func TestReconnectResumesWithoutDuplicates(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:r", 3)
	c := dialT(t, testConfig(s, "bob"))
	recvSeqs(t, c, "g:r", 1, 3)
	waitFor(t, "ack of 3", func() bool { return s.Cursor("bob", "d-bob", "g:r") == 3 })
	for _, fc := range s.ConnsOf("bob") {
		fc.CloseWith(proto.CloseServiceRestart, "restart")
	}
	put(s, "g:r", 2) // stored while bob is away
	waitFor(t, "second sync", func() bool { return len(s.Syncs()) == 2 })
	waitSynced(t, c)
	recvSeqs(t, c, "g:r", 4, 5)
	noMsg(t, c, 100*time.Millisecond)
	if got := s.Syncs()[1].Chats; !maps.Equal(got, map[string]uint64{"g:r": 3}) {
		t.Fatalf("second sync positions: got %v, want g:r=3", got)
	}
	if st := c.Stats(); st.Reconnects != 1 || st.Syncs != 2 || st.Duplicates != 0 {
		t.Fatalf("got stats %+v, want 1 reconnect, 2 syncs, no duplicates", st)
	}
}

func TestRetransmitsDropped(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:t", 3)
	cfg := testConfig(s, "bob")
	cfg.AckInterval = time.Hour // no timed acks: the server retransmits
	cfg.AckBatch = 1000
	c := dialT(t, cfg)
	recvSeqs(t, c, "g:t", 1, 3)
	if got := s.Retransmit("bob"); got != 3 {
		t.Fatalf("retransmitted %d, want 3", got)
	}
	noMsg(t, c, 100*time.Millisecond)
	// A retransmit means our ack was lost: the client re-acks at once.
	waitFor(t, "re-ack", func() bool { return s.Cursor("bob", "d-bob", "g:t") == 3 })
	if st := c.Stats(); st.Retransmits != 3 || st.Duplicates != 3 || st.AcksSent == 0 {
		t.Fatalf("got stats %+v, want 3 retransmits dropped and an ack", st)
	}
	put(s, "g:t", 1)
	s.Retransmit("bob")
	recvSeqs(t, c, "g:t", 4, 4)
}

func TestGoaway(t *testing.T) {
	s1, s2 := newFakeServer(t), newFakeServer(t)
	cfg := testConfig(s1, "bob")
	cfg.Backoff.Max = time.Second // the goaway delay is capped by it
	c := dialT(t, cfg)
	waitSynced(t, c)
	start := time.Now()
	for _, fc := range s1.ConnsOf("bob") {
		fc.Goaway(60, s2.URL)
	}
	waitFor(t, "reconnect to s2", func() bool { return len(s2.ConnsOf("bob")) == 1 })
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Fatalf("reconnected after %v, want at least retry_after_ms 60ms", d)
	}
	waitSynced(t, c)
	if got := c.URL(); got != s2.URL {
		t.Fatalf("URL: got %q, want %q", got, s2.URL)
	}
	// The new URL sticks for later reconnects.
	for _, fc := range s2.ConnsOf("bob") {
		fc.Close()
	}
	waitFor(t, "second reconnect", func() bool {
		qs, _ := s2.Upgrades()
		return len(qs) == 2 && len(s2.ConnsOf("bob")) == 1
	})
	if qs, _ := s1.Upgrades(); len(qs) != 1 {
		t.Fatalf("s1 upgrades: got %d, want 1", len(qs))
	}
	// A goaway without url reconnects to the same server.
	for _, fc := range s2.ConnsOf("bob") {
		fc.Goaway(0, "")
	}
	waitFor(t, "third reconnect", func() bool {
		qs, _ := s2.Upgrades()
		return len(qs) == 3 && len(s2.ConnsOf("bob")) == 1
	})
	// The server sees the upgrade before the client counts the reconnect
	// (after its sync is written): wait for the count, then check it.
	waitFor(t, "the third reconnect counted", func() bool { return c.Stats().Reconnects >= 3 })
	if st := c.Stats(); st.Goaways != 2 || st.Reconnects != 3 {
		t.Fatalf("got stats %+v, want 2 goaways, 3 reconnects", st)
	}
}

func TestGoawayDelay(t *testing.T) {
	tests := []struct {
		b        Backoff
		after    time.Duration
		lo, hi   time.Duration
		describe string
	}{
		{Backoff{Min: 10 * time.Millisecond, Max: time.Second}, 100 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, "hint plus half"},
		{Backoff{Min: 10 * time.Millisecond, Max: time.Second}, 0, 0, 10 * time.Millisecond, "no hint: up to min"},
		{Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, time.Minute, 50 * time.Millisecond, 50 * time.Millisecond, "capped"},
	}
	for _, tt := range tests {
		for range 100 {
			if d := goawayDelay(tt.b, tt.after); d < tt.lo || d > tt.hi {
				t.Fatalf("%s: got %v, want within [%v, %v]", tt.describe, d, tt.lo, tt.hi)
			}
		}
	}
}

func TestPositionsResumeRoundTrip(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:p", 5)
	put(s, "g:q", 2)
	c1 := dialT(t, testConfig(s, "bob"))
	recvSeqs(t, c1, "g:p", 1, 5)
	recvSeqs(t, c1, "g:q", 1, 2)
	pos := c1.Positions()
	if want := map[string]uint64{"g:p": 5, "g:q": 2}; !maps.Equal(pos, want) {
		t.Fatalf("positions: got %v, want %v", pos, want)
	}
	_ = c1.Close()
	put(s, "g:p", 3)

	// A new process on a device the server has no cursors for: only the
	// resume positions keep it from downloading everything again.
	cfg := testConfig(s, "bob")
	cfg.Device = "d-bob-2"
	cfg.Resume = pos
	c2 := dialT(t, cfg)
	waitSynced(t, c2)
	recvSeqs(t, c2, "g:p", 6, 8)
	noMsg(t, c2, 100*time.Millisecond)
	syncs := s.Syncs()
	if got := syncs[len(syncs)-1]; got.Device != "d-bob-2" || !maps.Equal(got.Chats, pos) {
		t.Fatalf("got sync %+v, want positions %v", got, pos)
	}
	if got, want := c2.Positions(), map[string]uint64{"g:p": 8, "g:q": 2}; !maps.Equal(got, want) {
		t.Fatalf("positions after resume: got %v, want %v", got, want)
	}
	pos["g:p"] = 99 // the snapshot is a copy
	if c2.Positions()["g:p"] != 8 {
		t.Fatal("Positions returned a shared map")
	}
}

func TestResumeBehindServerFillsFromHistory(t *testing.T) {
	// The server's cursor is ahead of the app's persisted position (the
	// app crashed after the ack): the gap is filled from history.
	s := newFakeServer(t)
	put(s, "g:h", 6)
	c1 := dialT(t, testConfig(s, "bob"))
	recvSeqs(t, c1, "g:h", 1, 6)
	waitFor(t, "ack of 6", func() bool { return s.Cursor("bob", "d-bob", "g:h") == 6 })
	_ = c1.Close()
	put(s, "g:h", 2)
	cfg := testConfig(s, "bob")
	cfg.Resume = map[string]uint64{"g:h": 4}
	c2 := dialT(t, cfg)
	recvSeqs(t, c2, "g:h", 5, 8)
	if st := c2.Stats(); st.Gaps != 1 || st.GapsFilled != 1 || st.GapsSkipped != 0 {
		t.Fatalf("got stats %+v, want one gap filled", st)
	}
}

func TestAcksBatchedAndCumulative(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:k", 300)
	cfg := testConfig(s, "bob")
	cfg.AckInterval = 20 * time.Millisecond
	c := dialT(t, cfg)
	recvSeqs(t, c, "g:k", 1, 300)
	waitFor(t, "ack of 300", func() bool { return s.Cursor("bob", "d-bob", "g:k") == 300 })
	acks := acksOf(s, "g:k")
	if len(acks) > 30 {
		t.Fatalf("got %d ack frames for 300 messages, want batching", len(acks))
	}
	for i := 1; i < len(acks); i++ {
		if acks[i] <= acks[i-1] {
			t.Fatalf("acks not increasing: %v", acks)
		}
	}
	// Messages the app has not taken from the channel are not acked.
	put(s, "g:k", 5)
	s.Retransmit("bob")
	waitFor(t, "buffered", func() bool { return len(c.Messages()) == 5 })
	time.Sleep(5 * cfg.AckInterval)
	if got := s.Cursor("bob", "d-bob", "g:k"); got != 300 {
		t.Fatalf("cursor with unread buffer: got %d, want 300", got)
	}
	if got := c.Positions()["g:k"]; got != 300 {
		t.Fatalf("position with unread buffer: got %d, want 300", got)
	}
	recvSeqs(t, c, "g:k", 301, 303)
	waitFor(t, "ack of 303", func() bool { return s.Cursor("bob", "d-bob", "g:k") == 303 })
	if got := c.Positions()["g:k"]; got != 303 {
		t.Fatalf("position: got %d, want 303", got)
	}
	recvSeqs(t, c, "g:k", 304, 305)
	waitFor(t, "ack of 305", func() bool { return s.Cursor("bob", "d-bob", "g:k") == 305 })
}

func TestInterruptedSendStoredOnce(t *testing.T) {
	s := newFakeServer(t)
	var sends, syncs atomic.Int32
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		switch {
		case in.Type == proto.TypeSend && sends.Add(1) == 1:
			// Persist, then lose the connection before sent.
			s.Store(fc.User, fc.Device, in)
			fc.Close()
			return true
		case in.Type == proto.TypeSync && syncs.Add(1) == 2:
			// A server that does not skip the device's own messages on
			// catch-up: the client must not hand its own send to the app.
			for _, m := range s.Messages("g:s") {
				fc.Write(proto.AppendMsg(nil, &m))
			}
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	waitSynced(t, c)
	sent, err := c.SendWithID(context.Background(), "req-s", "g:s", "once")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if sent.Seq != 1 {
		t.Fatalf("got seq %d, want the original 1", sent.Seq)
	}
	if n := len(s.Messages("g:s")); n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
	if n := len(s.Frames(proto.TypeSend)); n != 2 {
		t.Fatalf("got %d send attempts, want 2", n)
	}
	noMsg(t, c, 100*time.Millisecond)
	if got := c.Positions()["g:s"]; got != 1 {
		t.Fatalf("position: got %d, want 1", got)
	}
	// The next message of the chat follows without a gap.
	put(s, "g:s", 1)
	s.Retransmit("alice")
	recvSeqs(t, c, "g:s", 2, 2)
	if st := c.Stats(); st.Gaps != 0 {
		t.Fatalf("got stats %+v, want no gap", st)
	}
}

func TestFromNow(t *testing.T) {
	s := newFakeServer(t)
	put(s, "g:n", 3)
	put(s, "g:m", 2)
	cfg := testConfig(s, "bob")
	cfg.FromNow = true
	cfg.Resume = map[string]uint64{"g:m": 1}
	c := dialT(t, cfg)
	waitSynced(t, c)
	recvSeqs(t, c, "g:m", 2, 2) // resumed chats continue
	noMsg(t, c, 50*time.Millisecond)
	waitFor(t, "history acked", func() bool { return s.Cursor("bob", "d-bob", "g:n") == 3 })
	put(s, "g:n", 1)
	s.Retransmit("bob")
	recvSeqs(t, c, "g:n", 4, 4)
	// A chat first seen after the catch-up starts where it is seen.
	s.Broadcast("bob", proto.AppendMsg(nil, &record.Message{ChatID: "g:new", Seq: 7, Sender: "eve", Kind: record.MsgText}))
	recvSeqs(t, c, "g:new", 7, 7)
}

func TestWaitSynced(t *testing.T) {
	s := newFakeServer(t)
	hold := make(chan struct{})
	var held atomic.Bool
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSync && held.CompareAndSwap(false, true) {
			go func() {
				<-hold
				fc.Write(proto.AppendOK(nil, in.ID, "", 0))
				fc.Write(proto.AppendSynced(nil, "not-"+in.ID)) // another sync's: ignored
				fc.Write(proto.AppendSynced(nil, in.ID))
			}()
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "bob"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitSynced(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("before synced: got %v, want deadline exceeded", err)
	}
	close(hold)
	waitSynced(t, c)
	var synced bool
	for !synced {
		select {
		case st := <-c.States():
			synced = st.Kind == StateConnected && st.Synced
		case <-time.After(5 * time.Second):
			t.Fatal("no synced state")
		}
	}
	// After a drop WaitSynced waits for the next connection's catch-up.
	for _, fc := range s.ConnsOf("bob") {
		fc.Close()
	}
	waitFor(t, "resync", func() bool { return c.Stats().Syncs == 2 })
	waitSynced(t, c)
	_ = c.Close()
	if err := c.WaitSynced(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: got %v, want ErrClosed", err)
	}
}
