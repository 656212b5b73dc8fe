package marks

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/record"
)

// Store is where marks go: the logic tier's store.
type Store interface {
	// SaveMarks raises every mark (never lowers), durably when it
	// returns nil.
	SaveMarks(ctx context.Context, marks []record.Mark) error
}

// Default values of Config.
const (
	DefaultInterval = time.Second
	DefaultTimeout  = 5 * time.Second
)

// Config tunes a Writer. Zero fields take the defaults.
type Config struct {
	// Interval between writes: the durability bound of a mark, and the
	// most one key is written per. Default 1s.
	Interval time.Duration
	// Timeout bounds one store call. Default 5s.
	Timeout time.Duration
}

var (
	marksAdded    = metrics.NewCounter(`parley_logic_marks_added_total`)
	marksWritten  = metrics.NewCounter(`parley_logic_marks_written_total`)
	markWriteErrs = metrics.NewCounter(`parley_logic_mark_write_errors_total`)
	markFlushSecs = metrics.NewHistogram(`parley_logic_mark_flush_seconds`)
)

type key struct {
	kind               record.MarkKind
	user, device, chat string
}

// Writer coalesces marks and writes them every interval.
type Writer struct {
	cfg   Config
	store Store
	log   *slog.Logger

	mu      sync.Mutex     // guards the following
	pending map[key]uint64 // added since the last write started
	flight  map[key]uint64 // being written now
}

// New returns a writer to store.
func New(cfg Config, store Store, log *slog.Logger) *Writer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.Default()
	}
	return &Writer{cfg: cfg, store: store, log: log, pending: map[key]uint64{}}
}

// Add raises a mark for the next write. Safe for concurrent use.
func (w *Writer) Add(m record.Mark) {
	k := key{m.Kind, m.User, m.Device, m.ChatID}
	marksAdded.Inc()
	w.mu.Lock()
	if m.Seq > w.pending[k] {
		w.pending[k] = m.Seq
	}
	w.mu.Unlock()
}

// Get returns the highest value of a mark not yet known written (pending
// or being written), 0 if none. Safe for concurrent use.
func (w *Writer) Get(kind record.MarkKind, user, device, chat string) uint64 {
	k := key{kind, user, device, chat}
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.pending[k], w.flight[k])
}

// ChatCursors merges the device cursors of chat not yet known written
// into cursors (raising entries, adding missing ones) and returns it. It
// scans what is pending, which is at most one interval's worth. Safe for
// concurrent use.
func (w *Writer) ChatCursors(chat string, cursors []record.DeviceCursor) []record.DeviceCursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range []map[key]uint64{w.pending, w.flight} {
		for k, v := range m {
			if k.kind != record.MarkCursor || k.chat != chat {
				continue
			}
			i := slices.IndexFunc(cursors, func(c record.DeviceCursor) bool { return c.User == k.user && c.Device == k.device })
			if i < 0 {
				cursors = append(cursors, record.DeviceCursor{User: k.user, Device: k.device, Seq: v})
			} else if v > cursors[i].Seq {
				cursors[i].Seq = v
			}
		}
	}
	return cursors
}

// Pending returns how many marks wait for the next write. Safe for
// concurrent use.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// Run writes the marks every interval until ctx ends, then once more
// (bounded by the timeout), so that a clean shutdown loses none.
func (w *Writer) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
			if err := w.Flush(fctx); err != nil {
				w.log.Warn("marks not written at shutdown", "err", err)
			}
			cancel()
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
			if err := w.Flush(cctx); err != nil {
				w.log.Warn("cannot write marks; retrying at the next interval", "err", err)
			}
			cancel()
		}
	}
}

// Flush writes everything pending now. A failed write goes back to pending
// (merged with what came since). Not for concurrent use with itself (Run
// calls it; tests and shutdown may too, one at a time).
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	if len(w.pending) == 0 {
		w.mu.Unlock()
		return nil
	}
	w.flight, w.pending = w.pending, make(map[key]uint64, len(w.pending))
	batch := make([]record.Mark, 0, len(w.flight))
	for _, k := range slices.SortedFunc(maps.Keys(w.flight), cmpKey) {
		batch = append(batch, record.Mark{Kind: k.kind, User: k.user, Device: k.device, ChatID: k.chat, Seq: w.flight[k]})
	}
	w.mu.Unlock()
	start := time.Now()
	err := w.store.SaveMarks(ctx, batch)
	markFlushSecs.UpdateDuration(start)
	w.mu.Lock()
	if err != nil {
		markWriteErrs.Inc()
		for k, v := range w.flight {
			if v > w.pending[k] {
				w.pending[k] = v
			}
		}
	} else {
		marksWritten.Add(len(batch))
	}
	w.flight = nil
	w.mu.Unlock()
	return err
}

func cmpKey(a, b key) int {
	switch {
	case a.chat != b.chat:
		return cmpStr(a.chat, b.chat)
	case a.user != b.user:
		return cmpStr(a.user, b.user)
	case a.device != b.device:
		return cmpStr(a.device, b.device)
	}
	return int(a.kind) - int(b.kind)
}

func cmpStr(a, b string) int {
	if a < b {
		return -1
	}
	return 1
}
