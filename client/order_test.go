package client

import (
	"fmt"
	"testing"
	"time"
)

func TestOrderer(t *testing.T) {
	type step struct {
		seq  uint64
		own  bool
		want string // seqs released, e.g. "3,4"; "dup" for a duplicate
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, false, "1"}, {2, false, "2"}, {3, false, "3"}}},
		{"unknown chat starts at 0", []step{{2, false, ""}, {1, false, "1,2"}}},
		{"duplicates", []step{{1, false, "1"}, {1, false, "dup"}, {2, false, "2"}, {1, false, "dup"}}},
		{"reorder", []step{{1, false, "1"}, {3, false, ""}, {4, false, ""}, {3, false, "dup"}, {2, false, "2,3,4"}}},
		{"own fills gap", []step{{1, false, "1"}, {3, false, ""}, {2, true, "3"}, {4, false, "4"}}},
		{"own first", []step{{1, true, ""}, {2, false, "2"}, {1, false, "dup"}}},
		{"own pending", []step{{1, false, "1"}, {3, true, ""}, {4, false, ""}, {2, false, "2,4"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrderer(nil, false)
			now := time.Unix(0, 0)
			for i, s := range tt.steps {
				ready, dup, _ := o.add(Message{Chat: "c", Seq: s.seq}, s.own, now)
				got := seqs(ready)
				if dup {
					got = "dup"
				}
				if got != s.want {
					t.Fatalf("step %d (seq %d): got %q, want %q", i, s.seq, got, s.want)
				}
			}
		})
	}
}

func TestOrdererStart(t *testing.T) {
	tests := []struct {
		name    string
		resume  map[string]uint64
		fromNow bool
		seqs    []uint64
		want    string
		gaps    int
	}{
		{"from 0", nil, false, []uint64{1, 2, 3}, "1,2,3", 0},
		{"from 0 gap", nil, false, []uint64{7, 8}, "", 1},
		{"from now", nil, true, []uint64{7, 8, 7}, "7,8", 0},
		{"resume", map[string]uint64{"c": 5}, false, []uint64{4, 5, 6, 7}, "6,7", 0},
		{"resume gap", map[string]uint64{"c": 5}, false, []uint64{8, 9, 6}, "6", 1},
		{"resume wins over from now", map[string]uint64{"c": 5}, true, []uint64{7, 6}, "6,7", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrderer(tt.resume, tt.fromNow)
			var all []Message
			gaps := 0
			for _, seq := range tt.seqs {
				r, _, g := o.add(Message{Chat: "c", Seq: seq}, false, time.Unix(1, 0))
				all = append(all, r...)
				if g {
					gaps++
				}
			}
			if got := seqs(all); got != tt.want || gaps != tt.gaps {
				t.Fatalf("got %q with %d gaps, want %q with %d", got, gaps, tt.want, tt.gaps)
			}
		})
	}
}

func TestOrdererGaps(t *testing.T) {
	o := newOrderer(nil, false)
	t0 := time.Unix(100, 0)
	wait := time.Second
	o.add(Message{Chat: "a", Seq: 1}, false, t0)
	o.add(Message{Chat: "a", Seq: 4}, false, t0)
	o.add(Message{Chat: "a", Seq: 6}, false, t0.Add(time.Millisecond))
	gaps, next := o.due(t0.Add(500*time.Millisecond), wait)
	if len(gaps) != 0 || !next.Equal(t0.Add(wait)) {
		t.Fatalf("got gaps %v next %v, want none before %v", gaps, next, t0.Add(wait))
	}
	gaps, _ = o.due(t0.Add(wait), wait)
	if len(gaps) != 1 || gaps[0] != (gap{chat: "a", after: 1, before: 4}) {
		t.Fatalf("got gaps %+v, want a (1,4)", gaps)
	}
	if again, _ := o.due(t0.Add(2*wait), wait); len(again) != 0 {
		t.Fatalf("got %+v while filling, want none", again)
	}
	// The fetch found seq 2 only: skip 3, release 4; 6 still waits for 5.
	r, _, _ := o.add(Message{Chat: "a", Seq: 2}, false, t0)
	o.filled("a")
	ready, skipped := o.skipGap("a")
	if got := seqs(r) + "|" + seqs(ready); got != "2|4" || skipped != 1 {
		t.Fatalf("got %s skipped %d, want 2|4 skipped 1", got, skipped)
	}
	if got := o.cursor("a"); got != 4 {
		t.Fatalf("cursor: got %d, want 4", got)
	}
	if gaps, _ := o.due(t0.Add(10*wait), wait); len(gaps) != 1 || gaps[0].before != 6 {
		t.Fatalf("got %+v, want gap before 6", gaps)
	}
	// A failed fetch restarts the wait instead of skipping.
	o.filled("a")
	o.retryGap("a", t0.Add(20*wait))
	if gaps, next := o.due(t0.Add(20*wait), wait); len(gaps) != 0 || !next.Equal(t0.Add(21*wait)) {
		t.Fatalf("after retryGap: got %+v next %v, want none before %v", gaps, next, t0.Add(21*wait))
	}
}

func seqs(ms []Message) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(m.Seq)
	}
	return s
}
