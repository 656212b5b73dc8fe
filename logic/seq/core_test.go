package seq

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

func TestFilter(t *testing.T) {
	tests := []struct {
		capacity, keys int
		maxFP          float64 // false positive rate allowed over 20,000 absent keys
	}{
		{capacity: 0, keys: 10, maxFP: 0.02},
		{capacity: 1000, keys: 1000, maxFP: 0.02},
		{capacity: 64, keys: 5000, maxFP: 0.025}, // grown by chaining
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("capacity=%d/keys=%d", tc.capacity, tc.keys), func(t *testing.T) {
			f := newFilter(tc.capacity)
			for i := range tc.keys {
				f.add("user"+strconv.Itoa(i%7), "req-"+strconv.Itoa(i))
			}
			for i := range tc.keys {
				if !f.mayContain("user"+strconv.Itoa(i%7), "req-"+strconv.Itoa(i)) {
					t.Fatalf("key %d added but not found", i)
				}
			}
			fp := 0
			const probesN = 20000
			for i := range probesN {
				if f.mayContain("other"+strconv.Itoa(i%7), "req-"+strconv.Itoa(i)) {
					fp++
				}
			}
			if rate := float64(fp) / probesN; rate > tc.maxFP {
				t.Fatalf("false positive rate: got %.4f, want at most %.2f", rate, tc.maxFP)
			}
		})
	}
}

// TestKeyHashSeparator: (sender, request id) pairs that concatenate to the
// same bytes hash differently.
func TestKeyHashSeparator(t *testing.T) {
	a1, a2 := keyHash("ab", "", false, "c")
	b1, b2 := keyHash("a", "", false, "bc")
	if a1 == b1 && a2 == b2 {
		t.Fatalf("keyHash(ab, c) == keyHash(a, bc)")
	}
	// A scoped key hashes as its stored form, device/id, and apart from
	// the bare id.
	s1, s2 := keyHash("a", "d", true, "r")
	if u1, u2 := keyHash("a", "", false, "d/r"); s1 != u1 || s2 != u2 {
		t.Fatal("keyHash(a, d, scoped, r) != keyHash(a, d/r)")
	}
	if u1, u2 := keyHash("a", "", false, "r"); s1 == u1 && s2 == u2 {
		t.Fatal("keyHash(a, d, scoped, r) == keyHash(a, r)")
	}
}

// BenchmarkSendAppend is the core's share of a message's path: decide a
// send, hand out the append, take the store's answer.
func BenchmarkSendAppend(b *testing.B) {
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			c := New[int](Config{Filter: true}, 1024)
			const chats = 64
			for i := range chats {
				c.Install(Load{Meta: record.Chat{ID: "g:" + strconv.Itoa(i)}, Exists: true, Members: []string{"alice", "bob"}, KeysComplete: true})
			}
			ids := make([]string, chats)
			for i := range ids {
				ids[i] = "g:" + strconv.Itoa(i)
			}
			now := time.Unix(1_700_000_000, 0)
			res := make([]record.AppendResult, 0, batch)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for range batch {
					s := Send{Chat: ids[n%chats], User: "alice", Device: "phone", RequestID: "r" + strconv.Itoa(n), Body: "hello", TS: 1}
					d := c.Send(n, s)
					if d.Kind == Lookup { // a false positive of the filter
						d = c.Resolve(n, s, nil)
					}
					if d.Kind != Waiting {
						b.Fatalf("send %d: got %+v", n, d)
					}
					n++
				}
				apps := c.Appends(now)
				res = res[:0]
				for _, a := range apps {
					res = append(res, record.AppendResult{Stored: len(a.Msgs)})
				}
				c.Applied(res, nil, now)
			}
		})
	}
}
