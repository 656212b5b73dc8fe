package marks

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

type fakeStore struct {
	mu    sync.Mutex
	calls [][]record.Mark
	fail  bool
	saved map[key]uint64
}

func (f *fakeStore) SaveMarks(_ context.Context, m []record.Mark) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, m)
	if f.fail {
		return errors.New("injected")
	}
	if f.saved == nil {
		f.saved = map[key]uint64{}
	}
	for _, x := range m {
		k := key{x.Kind, x.User, x.Device, x.ChatID}
		f.saved[k] = max(f.saved[k], x.Seq)
	}
	return nil
}

func cursor(dev, chat string, seq uint64) record.Mark {
	return record.Mark{Kind: record.MarkCursor, User: "u", Device: dev, ChatID: chat, Seq: seq}
}

// runWriter starts a Writer with a one-second interval on st; stop ends
// its Run (with the shutdown write) and waits for it.
func runWriter(st Store) (w *Writer, stop func()) {
	w = New(Config{Interval: time.Second}, st, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	return w, func() {
		cancel()
		<-done
	}
}

// TestCoalescing: many raises of one key within an interval become one
// write of the highest; the write comes within the interval; nothing is
// written while nothing changed.
func TestCoalescing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{}
		w, stop := runWriter(st)
		for seq := uint64(1); seq <= 100; seq++ {
			w.Add(cursor("phone", "g:a", seq))
			w.Add(cursor("laptop", "g:a", seq/2))
			w.Add(record.Mark{Kind: record.MarkRead, User: "u", ChatID: "g:a", Seq: 100 - seq})
		}
		if got := w.Get(record.MarkCursor, "u", "phone", "g:a"); got != 100 {
			t.Fatalf("Get before the write: got %d, want 100", got)
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		st.mu.Lock()
		if len(st.calls) != 1 || len(st.calls[0]) != 3 {
			t.Fatalf("writes after one interval: got %v, want one call of 3 marks", st.calls)
		}
		if st.saved[key{record.MarkCursor, "u", "phone", "g:a"}] != 100 || st.saved[key{record.MarkRead, "u", "", "g:a"}] != 99 {
			t.Fatalf("saved %v, want phone 100 and read 99", st.saved)
		}
		st.mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		st.mu.Lock()
		if len(st.calls) != 1 {
			t.Fatalf("writes with nothing new: got %d calls, want 1", len(st.calls))
		}
		st.mu.Unlock()
		stop()
	})
}

// TestFailedWriteRetried: a failed write is merged with later raises and
// written an interval later; Get keeps answering meanwhile; shutdown
// writes what is left.
func TestFailedWriteRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{fail: true}
		w, stop := runWriter(st)
		w.Add(cursor("phone", "g:a", 5))
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if got := w.Get(record.MarkCursor, "u", "phone", "g:a"); got != 5 {
			t.Fatalf("Get after a failed write: got %d, want 5", got)
		}
		w.Add(cursor("phone", "g:a", 3)) // lower: changes nothing
		w.Add(cursor("tablet", "g:a", 2))
		st.mu.Lock()
		st.fail = false
		st.mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		st.mu.Lock()
		if got := st.saved[key{record.MarkCursor, "u", "phone", "g:a"}]; got != 5 {
			t.Fatalf("phone after the retry: got %d, want 5", got)
		}
		st.mu.Unlock()
		w.Add(cursor("phone", "g:b", 9))
		stop()
		st.mu.Lock()
		defer st.mu.Unlock()
		if got := st.saved[key{record.MarkCursor, "u", "phone", "g:b"}]; got != 9 {
			t.Fatalf("mark added before shutdown: got %d, want 9 written by the last flush", got)
		}
	})
}

// TestPacedWrites: each mark is written about one interval after it became
// pending, by the tick after it came due, not with every other mark at one
// instant: two marks half an interval apart go in two writes half an
// interval apart, each within the interval of its first change.
func TestPacedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{}
		w, stop := runWriter(st)
		calls := func() [][]record.Mark {
			synctest.Wait()
			st.mu.Lock()
			defer st.mu.Unlock()
			return append([][]record.Mark(nil), st.calls...)
		}
		start := time.Now()
		w.Add(cursor("phone", "g:a", 1))
		time.Sleep(500 * time.Millisecond)
		w.Add(cursor("phone", "g:b", 1))
		w.Add(cursor("phone", "g:a", 2)) // still pending: one write of 2
		time.Sleep(400 * time.Millisecond)
		if got := calls(); len(got) != 1 || len(got[0]) != 1 || got[0][0].ChatID != "g:a" || got[0][0].Seq != 2 {
			t.Fatalf("at %v: got %v, want g:a's cursor 2 alone", time.Since(start), got)
		}
		time.Sleep(500 * time.Millisecond)
		if got := calls(); len(got) != 2 || len(got[1]) != 1 || got[1][0].ChatID != "g:b" {
			t.Fatalf("at %v: got %v, want g:b's cursor written second", time.Since(start), got)
		}
		// Raised right after its write: due again an interval later.
		w.Add(cursor("phone", "g:a", 3))
		time.Sleep(700 * time.Millisecond)
		if got := calls(); len(got) != 2 {
			t.Fatalf("at %v: got %d writes, want g:a's next one not before its interval", time.Since(start), len(got))
		}
		time.Sleep(300 * time.Millisecond)
		if got := calls(); len(got) != 3 || got[2][0].Seq != 3 {
			t.Fatalf("at %v: got %v, want g:a's cursor 3 within its interval", time.Since(start), got)
		}
		if n := w.Pending(); n != 0 {
			t.Fatalf("pending after every write: %d", n)
		}
		stop()
	})
}

// BenchmarkAdd is an ack's cost on the shard worker.
func BenchmarkAdd(b *testing.B) {
	w := New(Config{}, &fakeStore{}, nil)
	b.ReportAllocs()
	var seq uint64
	for b.Loop() {
		seq++
		w.Add(cursor("phone", "g:a", seq))
	}
}

// TestInvalidMarksDropped: a malformed mark never reaches the store, and
// marks the store refuses as invalid are dropped, not retried forever.
func TestInvalidMarksDropped(t *testing.T) {
	st := &invalidStore{}
	w := New(Config{}, st, nil)
	for _, m := range []record.Mark{
		{Kind: record.MarkCursor, User: "u", ChatID: "g:a", Seq: 1},                 // no device
		{Kind: record.MarkRead, User: "u", Device: "d", ChatID: "g:a", Seq: 1},      // device on a read marker
		{Kind: 9, User: "u", ChatID: "g:a", Seq: 1},                                 // unknown kind
		{Kind: record.MarkRead, User: "u\x00", ChatID: "g:a", Seq: 1},               // bad user
		{Kind: record.MarkCursor, User: "u", Device: "d", ChatID: "nochat", Seq: 1}, // bad chat
	} {
		w.Add(m)
	}
	if n := w.Pending(); n != 0 {
		t.Fatalf("pending after malformed marks: got %d, want 0", n)
	}
	w.Add(cursor("phone", "g:a", 3))
	if err := w.Flush(context.Background()); !errors.Is(err, record.ErrInvalid) {
		t.Fatalf("Flush: got %v, want the store's ErrInvalid", err)
	}
	if n := w.Pending(); n != 0 {
		t.Fatalf("pending after an invalid batch: got %d, want 0 (dropped)", n)
	}
}

type invalidStore struct{}

func (invalidStore) SaveMarks(context.Context, []record.Mark) error {
	return record.ErrInvalid
}
