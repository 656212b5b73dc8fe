package seq

import (
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

func TestRecentRange(t *testing.T) {
	cs := &Chat[int]{ID: "g:x"}
	if _, ok := cs.Recent(nil, 0, 1); ok {
		t.Fatal("empty ring: got ok, want a miss")
	}
	for seq := uint64(1); seq <= 40; seq++ {
		if seq == 35 {
			continue // a seq the ring never saw (stored by another path)
		}
		cs.remember(&record.Message{ChatID: "g:x", Seq: seq, Sender: "u", TS: int64(seq), Kind: record.MsgText})
	}
	tests := []struct {
		name        string
		after, upto uint64
		want        int // messages, -1 for a miss
	}{
		{"newest", 39, 40, 1},
		{"several", 36, 40, 4},
		{"hole", 33, 36, -1},
		{"evicted", 10, 12, -1},
		{"wider than the ring", 20, 40, -1},
		{"empty range", 40, 40, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cs.Recent(nil, tt.after, tt.upto)
			if !ok {
				if tt.want >= 0 {
					t.Fatalf("Recent(%d, %d): miss, want %d messages", tt.after, tt.upto, tt.want)
				}
				return
			}
			if len(got) != tt.want {
				t.Fatalf("Recent(%d, %d): got %d messages, want %d", tt.after, tt.upto, len(got), tt.want)
			}
			for i, m := range got {
				if want := tt.after + 1 + uint64(i); m.Seq != want || m.TS != int64(want) || m.Sender != "u" || m.ChatID != "g:x" {
					t.Fatalf("message %d: got %+v, want seq %d", i, m, want)
				}
			}
		})
	}
}

// BenchmarkRecentRange is the ack path's lookup of the messages it covers.
func BenchmarkRecentRange(b *testing.B) {
	cs := &Chat[int]{ID: "dm:a:b"}
	for seq := uint64(1); seq <= recentN; seq++ {
		cs.remember(&record.Message{ChatID: "dm:a:b", Seq: seq, Sender: "a", TS: 1, Kind: record.MsgText})
	}
	var buf []record.Message
	b.ReportAllocs()
	for b.Loop() {
		var ok bool
		if buf, ok = cs.Recent(buf[:0], recentN-2, recentN); !ok || len(buf) != 2 {
			b.Fatal("Recent: miss")
		}
	}
}
