package pebble

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

func openOn(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	cfg := Default()
	cfg.Dir = "/db"
	cfg.CacheSize = 1 << 20
	cfg.MemTableSize = 256 << 10 // small, so flushes to sstables happen too
	s, err := OpenFS(cfg, fs, nil)
	if err != nil {
		t.Fatalf("OpenFS: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// checkAcked asserts that every chat holds an intact, gap-free history that
// includes at least its acknowledged messages, and that it accepts the next
// seq.
func checkAcked(t *testing.T, s *Store, acked map[string]uint64) {
	t.Helper()
	ctx := t.Context()
	for chat, n := range acked {
		last, err := s.LastSeq(ctx, chat)
		if err != nil {
			t.Fatalf("LastSeq(%q): %v", chat, err)
		}
		if last < n {
			t.Fatalf("LastSeq(%q) after crash: got %d, want >= %d acknowledged", chat, last, n)
		}
		for from := uint64(1); from <= last; from += record.MaxPageLimit {
			// After 0 means "no cursor", so the first page is asked with Before.
			p := record.Page{After: from - 1, Limit: record.MaxPageLimit}
			if from == 1 {
				p = record.Page{Before: from + record.MaxPageLimit, Limit: record.MaxPageLimit}
			}
			page, err := s.Messages(ctx, chat, p)
			if err != nil {
				t.Fatalf("Messages(%q): %v", chat, err)
			}
			for i, m := range page {
				if want := storetest.Msg(chat, from+uint64(i)); m != want {
					t.Fatalf("message after crash: got %+v, want %+v", m, want)
				}
			}
			if want := min(last-from+1, record.MaxPageLimit); uint64(len(page)) != want {
				t.Fatalf("Messages(%q, from %d): got %d messages, want %d (history has a gap)", chat, from, len(page), want)
			}
		}
		if n >= 2 {
			key := record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-2"}
			if m, err := s.LookupDedup(ctx, key); err != nil || m.Seq != 2 {
				t.Fatalf("LookupDedup(%+v) after crash: got %+v, %v, want seq 2", key, m, err)
			}
		}
		if err := storetest.Append(ctx, s, 0, storetest.Msgs(chat, last+1, last+1)); err != nil {
			t.Fatalf("AppendMessages(%q, %d) after crash: %v", chat, last+1, err)
		}
	}
}

// TestPowerLossSequential appends synced messages, then raises markers
// without syncing, then simulates a power loss that keeps only synced data.
func TestPowerLossSequential(t *testing.T) {
	ctx := t.Context()
	fs := vfs.NewCrashableMem()
	s := openOn(t, fs)
	chat := record.Chat{ID: "g:crash", Kind: record.KindGroup, Name: "c", CreatedBy: "alice", CreatedAt: 1}
	if err := s.CreateChat(ctx, chat, []string{"alice"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	for seq := uint64(1); seq <= 9; seq += 3 {
		if err := storetest.Append(ctx, s, 0, storetest.Msgs(chat.ID, seq, seq+2)); err != nil {
			t.Fatalf("AppendMessages: %v", err)
		}
	}
	if err := s.SaveMarks(ctx, []record.Mark{{Kind: record.MarkRead, User: "alice", ChatID: chat.ID, Seq: 7}}); err != nil {
		t.Fatalf("SaveMarks(read): %v", err)
	}
	if err := s.SaveMarks(ctx, []record.Mark{{Kind: record.MarkCursor, User: "alice", Device: "phone", ChatID: chat.ID, Seq: 8}}); err != nil {
		t.Fatalf("SaveMarks(cursor): %v", err)
	}

	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	r := openOn(t, crashed)
	if got, err := r.Chat(ctx, chat.ID); err != nil || got != chat {
		t.Fatalf("Chat after crash: got %+v, %v, want %+v", got, err, chat)
	}
	if got, err := r.LastSeq(ctx, chat.ID); err != nil || got != 9 {
		t.Fatalf("LastSeq after crash: got %d, %v, want 9", got, err)
	}
	// SaveMarks is synced: the marks survive the crash.
	if got, err := r.DeviceCursor(ctx, "alice", "phone", chat.ID); err != nil || got != 8 {
		t.Fatalf("DeviceCursor after crash: got %d, %v, want 8", got, err)
	}
	entries, err := r.UserChats(ctx, "alice")
	if err != nil || len(entries) != 1 || entries[0].ReadSeq != 7 {
		t.Fatalf("UserChats after crash: got %+v, %v, want one entry with ReadSeq 7", entries, err)
	}
	checkAcked(t, r, map[string]uint64{chat.ID: 9})
}

// TestPowerLossConcurrent crashes while appenders are running: every append
// acknowledged before the crash must survive, and what survives beyond that
// must be whole batches without gaps.
func TestPowerLossConcurrent(t *testing.T) {
	const writers = 6
	fs := vfs.NewCrashableMem()
	s := openOn(t, fs)

	var acked [writers]atomic.Uint64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			chat := fmt.Sprintf("g:w%d", w)
			for seq := uint64(1); !stop.Load(); seq += 2 {
				if err := storetest.Append(t.Context(), s, 0, storetest.Msgs(chat, seq, seq+1)); err != nil {
					errs <- err
					return
				}
				acked[w].Store(seq + 1)
				// Marks interleaved with the appends.
				if err := s.SaveMarks(t.Context(), []record.Mark{{Kind: record.MarkCursor, User: "alice", Device: "phone", ChatID: chat, Seq: seq}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		done := true
		for w := range writers {
			done = done && acked[w].Load() >= 100
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	type crash struct {
		name  string
		acked map[string]uint64
		fs    *vfs.MemFS
	}
	var crashes []crash
	for i, pct := range []int{0, 50, 50, 100} {
		snap := map[string]uint64{}
		for w := range writers {
			snap[fmt.Sprintf("g:w%d", w)] = acked[w].Load()
		}
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(uint64(i), 1))})
		crashes = append(crashes, crash{fmt.Sprintf("unsynced=%d%%/seed=%d", pct, i), snap, clone})
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, record.ErrClosed) {
			t.Fatalf("appender: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, c := range crashes {
		t.Run(c.name, func(t *testing.T) {
			r := openOn(t, c.fs)
			checkAcked(t, r, c.acked)
			if err := r.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}
