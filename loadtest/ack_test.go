package loadtest

import (
	"slices"
	"strings"
	"testing"
)

func TestConnAddLocked(t *testing.T) {
	type step struct {
		seq   uint64
		own   bool
		first bool   // want a first copy
		ooo   bool   // want out of order
		ack   uint64 // want an immediate ack of this seq (0: none)
	}
	tests := []struct {
		name     string
		batch    int
		steps    []step
		wantHave uint64
		wantAcks []ackEntry // at the flush after the steps
	}{
		{"in order below the batch", 64, []step{{1, false, true, false, 0}, {2, false, true, false, 0}}, 2, []ackEntry{{"c", 2}}},
		{"batch reached acks at once", 3, []step{{1, false, true, false, 0}, {2, false, true, false, 0}, {3, false, true, false, 3}, {4, false, true, false, 0}}, 4, []ackEntry{{"c", 4}}},
		{"retransmit is dropped and re-acked", 3, []step{{1, false, true, false, 0}, {2, false, true, false, 0}, {3, false, true, false, 3}, {2, false, false, false, 0}}, 3, []ackEntry{{"c", 3}}},
		{"gap buffers, fill releases, late first copy is out of order", 64, []step{{1, false, true, false, 0}, {3, false, true, false, 0}, {3, false, false, false, 0}, {2, false, true, true, 0}}, 3, []ackEntry{{"c", 3}}},
		{"own messages advance quietly", 64, []step{{1, true, true, false, 0}, {2, true, true, false, 0}}, 2, nil},
		{"own messages ride on the next ack", 64, []step{{1, false, true, false, 0}, {2, true, true, false, 0}, {3, true, true, false, 0}}, 3, []ackEntry{{"c", 3}}},
		{"ack stays below a gap", 64, []step{{1, false, true, false, 0}, {3, false, true, false, 0}}, 1, []ackEntry{{"c", 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c conn
			for i, st := range tt.steps {
				res, ack, _ := c.addLocked([]byte("c"), st.seq, st.own, tt.batch)
				if res.first != st.first || res.outOfOrder != st.ooo {
					t.Errorf("step %d seq %d: got first %v ooo %v, want %v %v", i, st.seq, res.first, res.outOfOrder, st.first, st.ooo)
				}
				var got uint64
				if ack != nil {
					got = ack.seq
				}
				if got != st.ack {
					t.Errorf("step %d seq %d: got immediate ack %d, want %d", i, st.seq, got, st.ack)
				}
			}
			if got := c.chats["c"].have; got != tt.wantHave {
				t.Errorf("got have %d, want %d", got, tt.wantHave)
			}
			if got := c.collectLocked(nil); !slices.Equal(got, tt.wantAcks) {
				t.Errorf("got flush %v, want %v", got, tt.wantAcks)
			}
			if got := c.collectLocked(nil); len(got) != 0 {
				t.Errorf("second flush: got %v, want nothing", got)
			}
		})
	}
}

func TestAppendAck(t *testing.T) {
	got := string(appendAck(nil, ackEntry{chat: `d:a:"b`, seq: 42}))
	want := `{"type":"ack","chat":"d:a:\"b","seq":42}`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if !strings.HasPrefix(got, `{"type":"ack"`) {
		t.Error("not an ack frame")
	}
}
