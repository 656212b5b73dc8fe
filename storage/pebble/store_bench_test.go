package pebble

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

// syncCountingFS counts the fsyncs of WAL files: the cost group commit
// amortizes.
type syncCountingFS struct {
	vfs.FS
	walSyncs atomic.Int64
}

func (fs *syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &syncCountingFile{File: f, n: &fs.walSyncs}, nil
}

func (fs *syncCountingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncCountingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *syncCountingFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

type syncCountingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *syncCountingFile) Sync() error     { f.n.Add(1); return f.File.Sync() }
func (f *syncCountingFile) SyncData() error { f.n.Add(1); return f.File.SyncData() }
func (f *syncCountingFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if full {
		f.n.Add(1)
	}
	return full, err
}

func openBench(b *testing.B, sync bool) (*Store, *syncCountingFS) {
	b.Helper()
	fs := &syncCountingFS{FS: vfs.Default}
	cfg := Default()
	cfg.Dir = b.TempDir()
	cfg.Sync = sync
	s, err := OpenFS(cfg, fs, nil)
	if err != nil {
		b.Fatalf("OpenFS: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	return s, fs
}

func msgSize() int64 {
	m := storetest.Msg("g:bench", 2)
	return int64(len(appendMessage(nil, &m)))
}

// BenchmarkAppend appends one message per call from one goroutine on the
// local disk: with sync=true each append waits for its own fsync.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%t", sync), func(b *testing.B) {
			s, fs := openBench(b, sync)
			ctx := b.Context()
			batch := make([]record.Message, 1)
			b.ReportAllocs()
			b.SetBytes(msgSize())
			start := fs.walSyncs.Load()
			b.ResetTimer()
			for i := range b.N {
				batch[0] = storetest.Msg("g:bench", uint64(i+1))
				if err := storetest.Append(ctx, s, 0, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := fs.walSyncs.Load() - start; n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "msgs/fsync")
			}
		})
	}
}

// BenchmarkAppendParallel runs many appenders, each on a chat of its own
// (as the logic tier does: one sequencer per chat), all with synced
// commits. msgs/fsync above 1 is group commit at work: Pebble's commit
// pipeline lets commits queued behind an in-progress WAL fsync share the
// next one.
func BenchmarkAppendParallel(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			s, fs := openBench(b, true)
			ctx := b.Context()
			b.ReportAllocs()
			b.SetBytes(msgSize())
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			start := fs.walSyncs.Load()
			b.ResetTimer()
			for w := range writers {
				wg.Go(func() {
					chat := fmt.Sprintf("g:par%d", w)
					batch := make([]record.Message, 1)
					for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
						batch[0] = storetest.Msg(chat, seq)
						if err := storetest.Append(ctx, s, 0, batch); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			if n := fs.walSyncs.Load() - start; n > 0 {
				b.ReportMetric(float64(b.N)/float64(n), "msgs/fsync")
			}
		})
	}
}

// BenchmarkMessages reads history pages of a chat with 2,000 messages.
func BenchmarkMessages(b *testing.B) {
	const total = 2000
	for _, limit := range []int{20, record.MaxPageLimit} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			s, _ := openBench(b, false)
			ctx := b.Context()
			for seq := uint64(1); seq <= total; seq += record.MaxPageLimit {
				if err := storetest.Append(ctx, s, 0, storetest.Msgs("g:hist", seq, seq+record.MaxPageLimit-1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.SetBytes(msgSize() * int64(limit))
			b.ResetTimer()
			for i := range b.N {
				before := uint64(limit + 1 + (i*97)%(total-limit))
				page, err := s.Messages(ctx, "g:hist", record.Page{Before: before, Limit: limit})
				if err != nil || len(page) != limit {
					b.Fatalf("Messages(before %d): got %d messages, %v, want %d", before, len(page), err, limit)
				}
			}
		})
	}
}

// BenchmarkLastSeq measures the reverse seek behind LastSeq and UserChats.
func BenchmarkLastSeq(b *testing.B) {
	s, _ := openBench(b, false)
	ctx := b.Context()
	if err := storetest.Append(ctx, s, 0, storetest.Msgs("g:last", 1, 100)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if seq, err := s.LastSeq(ctx, "g:last"); err != nil || seq != 100 {
			b.Fatalf("LastSeq: got %d, %v, want 100", seq, err)
		}
	}
}

// BenchmarkLookupDedupMiss measures the dedup lookup every send to an
// existing chat makes, for a request id never seen: the common case. The
// store holds 40 chats x 2,000 messages flushed to sstables, so the miss
// must rule out every table (bloom filters) as well as the memtable.
func BenchmarkLookupDedupMiss(b *testing.B) {
	s, _ := openBench(b, false)
	ctx := b.Context()
	for c := range 40 {
		chat := fmt.Sprintf("g:dedup%d", c)
		for seq := uint64(1); seq <= 2000; seq += record.MaxPageLimit {
			if err := storetest.Append(ctx, s, 0, storetest.Msgs(chat, seq, seq+record.MaxPageLimit-1)); err != nil {
				b.Fatal(err)
			}
		}
		if c%10 == 9 {
			if err := s.db.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		key := record.DedupKey{ChatID: fmt.Sprintf("g:dedup%d", i%40), Sender: "u1", Device: "d1", RequestID: "miss-" + strconv.Itoa(i)}
		if _, err := s.LookupDedup(ctx, key); !errors.Is(err, record.ErrNotFound) {
			b.Fatalf("LookupDedup: got %v, want ErrNotFound", err)
		}
	}
}
