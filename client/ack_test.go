package client

import (
	"fmt"
	"maps"
	"slices"
	"testing"
)

func TestHandoff(t *testing.T) {
	type step struct {
		op    string // "sent", "mark", "quiet", "reack", "collect", "force", "done"
		chat  string
		seq   uint64
		buf   int    // channel length for collect
		batch int    // batch for collect
		want  string // collect: acks "chat=seq,..." sorted; "" none
	}
	tests := []struct {
		name   string
		resume map[string]uint64
		steps  []step
		pos    map[string]uint64
	}{
		{"received only", nil, []step{
			{op: "sent", chat: "a", seq: 1}, {op: "sent", chat: "a", seq: 2}, {op: "sent", chat: "a", seq: 3},
			{op: "force", buf: 2, want: "a=1"}, // two still in the channel
			{op: "force", buf: 0, want: "a=3"},
		}, map[string]uint64{"a": 3}},
		{"batch threshold", nil, []step{
			{op: "sent", chat: "a", seq: 1}, {op: "sent", chat: "a", seq: 2},
			{op: "collect", buf: 0, batch: 3, want: ""},
			{op: "sent", chat: "a", seq: 3},
			{op: "collect", buf: 0, batch: 3, want: "a=3"},
			{op: "done", chat: "a", seq: 3},
			{op: "force", buf: 0, want: ""},
		}, map[string]uint64{"a": 3}},
		{"marker waits for earlier", nil, []step{
			{op: "sent", chat: "a", seq: 1}, {op: "mark", chat: "b", seq: 9},
			{op: "force", buf: 1, want: ""},
			{op: "force", buf: 0, want: "a=1,b=9"},
		}, map[string]uint64{"a": 1, "b": 9}},
		{"own sends are quiet", nil, []step{
			{op: "quiet", chat: "a", seq: 1}, {op: "force", buf: 0, want: ""},
			{op: "sent", chat: "a", seq: 2}, {op: "force", buf: 0, want: "a=2"},
		}, map[string]uint64{"a": 2}},
		{"resume", map[string]uint64{"a": 5}, []step{
			{op: "force", buf: 0, want: ""},
			{op: "mark", chat: "a", seq: 4}, // behind: ignored
			{op: "sent", chat: "a", seq: 6}, {op: "collect", buf: 0, batch: 64, want: ""},
		}, map[string]uint64{"a": 6}},
		{"reack is urgent", map[string]uint64{"a": 5}, []step{
			{op: "reack", chat: "a"}, {op: "collect", buf: 0, batch: 64, want: "a=5"},
			{op: "done", chat: "a", seq: 5}, {op: "collect", buf: 0, batch: 64, want: ""},
		}, map[string]uint64{"a": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandoff(tt.resume)
			for i, s := range tt.steps {
				switch s.op {
				case "sent":
					recordSent(h, Message{Chat: s.chat, Seq: s.seq})
				case "mark", "quiet":
					h.mark(s.chat, s.seq, s.op == "quiet")
				case "reack":
					h.reack(s.chat)
				case "done":
					h.done([]ackEntry{{chat: s.chat, seq: s.seq}})
				case "collect", "force":
					acks, _ := h.collect(fixed(s.buf), s.op == "force", s.batch)
					var parts []string
					for _, a := range acks {
						parts = append(parts, fmt.Sprintf("%s=%d", a.chat, a.seq))
					}
					slices.Sort(parts)
					got := ""
					for j, p := range parts {
						if j > 0 {
							got += ","
						}
						got += p
					}
					if got != s.want {
						t.Fatalf("step %d (%s): got acks %q, want %q", i, s.op, got, s.want)
					}
					if s.op == "force" {
						h.done(acks)
					}
				}
			}
			if got := h.positions(fixed(0)); !maps.Equal(got, tt.pos) {
				t.Fatalf("positions: got %v, want %v", got, tt.pos)
			}
		})
	}
}

func TestHandoffCompacts(t *testing.T) {
	h := newHandoff(nil)
	for seq := uint64(1); seq <= 5000; seq++ {
		recordSent(h, Message{Chat: "a", Seq: seq})
		if seq%3 == 0 {
			h.positions(fixed(1)) // all but the newest received
		}
	}
	if got := h.positions(fixed(0))["a"]; got != 5000 {
		t.Fatalf("position: got %d, want 5000", got)
	}
	if h.head != 0 || len(h.queue) != 0 || h.inChan != 0 {
		t.Fatalf("got head %d len %d inChan %d, want an empty queue", h.head, len(h.queue), h.inChan)
	}
}

// recordSent records m as put on the channel, as handoff.put does once
// the send succeeded.
func recordSent(h *handoff, m Message) {
	h.mu.Lock()
	h.recordLocked(m)
	h.mu.Unlock()
}

// TestHandoffPutThenPositions: once the app took a message from the
// channel, Positions includes it, even when it asks at once (the send and
// its record used to be two steps; a Positions call between them lagged),
// and nothing still in the channel (the channel's length used to be read
// before the lock: messages put in between counted as received).
// The channel has room for all: a full channel may lag by one (see put).
func TestHandoffPutThenPositions(t *testing.T) {
	const n = 20000
	h := newHandoff(nil)
	ch := make(chan Message, n)
	done := make(chan struct{})
	go func() {
		for seq := uint64(1); seq <= n; seq++ {
			if !h.put(ch, Message{Chat: "a", Seq: seq}, done) {
				return
			}
		}
	}()
	defer close(done)
	for seq := uint64(1); seq <= n; seq++ {
		m := <-ch
		if got := h.positions(func() int { return len(ch) })["a"]; got != m.Seq {
			t.Fatalf("after receiving #%d: position %d", m.Seq, got)
		}
	}
}

// fixed returns a channel length function that always says n.
func fixed(n int) func() int { return func() int { return n } }
