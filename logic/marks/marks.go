package marks

import (
	"context"
	"errors"
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
	marksInvalid  = metrics.NewCounter(`parley_logic_marks_dropped_total{reason="invalid"}`)
)

// A mark's identity: a read marker (device "") or a device cursor.
type key struct {
	kind               record.MarkKind
	user, device, chat string
}

// pendingSet holds marks by chat, so that a chat's cursors are found
// without scanning everything pending.
type pendingSet map[string]map[key]uint64

func (p pendingSet) raise(k key, seq uint64) {
	m := p[k.chat]
	if m == nil {
		m = map[key]uint64{}
		p[k.chat] = m
	}
	if seq > m[k] {
		m[k] = seq
	}
}

func (p pendingSet) get(k key) uint64 { return p[k.chat][k] }

func (p pendingSet) del(k key) {
	m := p[k.chat]
	delete(m, k)
	if len(m) == 0 {
		delete(p, k.chat)
	}
}

// paceSlices is how many ticks Run makes per interval: each writes the
// marks that came due since the last, so the writes are spread over the
// interval rather than sent as one burst per interval (a burst that
// delays the message appends queued behind it at the store).
const paceSlices = 8

// due is when a key became pending.
type due struct {
	at time.Time
	k  key
}

// Writer coalesces marks and writes them every interval.
type Writer struct {
	cfg   Config
	store Store
	log   *slog.Logger

	mu      sync.Mutex // guards the following
	pending pendingSet // not taken by a write yet
	flight  pendingSet // being written now
	count   int        // marks in pending
	order   []due      // order[head:]: the keys of pending by when they became pending, oldest first
	head    int
}

// New returns a writer to store. log may be nil (no logging).
func New(cfg Config, store Store, log *slog.Logger) *Writer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{cfg: cfg, store: store, log: log, pending: pendingSet{}}
}

// valid reports whether a mark can be written: a known kind, valid ids.
func valid(m record.Mark) bool {
	if !record.ValidID(m.User) {
		return false
	}
	if _, ok := record.ParseChatID(m.ChatID); !ok {
		return false
	}
	switch m.Kind {
	case record.MarkRead:
		return m.Device == ""
	case record.MarkCursor:
		return record.ValidID(m.Device)
	}
	return false
}

// Add raises a mark for the next write; a malformed mark (unknown kind,
// invalid ids) is dropped and counted, so it can never block the others.
// Safe for concurrent use.
func (w *Writer) Add(m record.Mark) {
	if !valid(m) {
		marksInvalid.Inc()
		return
	}
	if m.Seq == 0 {
		return // raises nothing
	}
	k := key{m.Kind, m.User, m.Device, m.ChatID}
	marksAdded.Inc()
	w.mu.Lock()
	if w.pending.get(k) == 0 {
		w.count++
		w.order = append(w.order, due{time.Now(), k})
	}
	w.pending.raise(k, m.Seq)
	w.mu.Unlock()
}

// Get returns the highest value of a mark not yet known written (pending
// or being written), 0 if none. Safe for concurrent use.
func (w *Writer) Get(kind record.MarkKind, user, device, chat string) uint64 {
	k := key{kind, user, device, chat}
	w.mu.Lock()
	defer w.mu.Unlock()
	return max(w.pending.get(k), w.flight.get(k))
}

// ChatCursors merges the device cursors of chat not yet known written
// into cursors (raising entries, adding missing ones) and returns it. Safe
// for concurrent use.
func (w *Writer) ChatCursors(chat string, cursors []record.DeviceCursor) []record.DeviceCursor {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, set := range []pendingSet{w.pending, w.flight} {
		for k, v := range set[chat] {
			if k.kind != record.MarkCursor {
				continue
			}
			cursors = RaiseCursor(cursors, record.DeviceCursor{User: k.user, Device: k.device, Seq: v})
		}
	}
	return cursors
}

// RaiseCursor raises c's device's entry of cursors to c.Seq (never
// lowering it), adding the entry when missing, and returns cursors.
func RaiseCursor(cursors []record.DeviceCursor, c record.DeviceCursor) []record.DeviceCursor {
	i := slices.IndexFunc(cursors, func(x record.DeviceCursor) bool { return x.User == c.User && x.Device == c.Device })
	if i < 0 {
		return append(cursors, c)
	}
	cursors[i].Seq = max(cursors[i].Seq, c.Seq)
	return cursors
}

// Pending returns how many marks wait for the next write. Safe for
// concurrent use.
func (w *Writer) Pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// Run writes each mark about one interval after it became pending (a
// tick every interval/paceSlices writes those that came due), until ctx
// ends, then everything once more (bounded by the timeout), so that a
// clean shutdown loses none.
func (w *Writer) Run(ctx context.Context) {
	tick := max(w.cfg.Interval/paceSlices, time.Millisecond)
	t := time.NewTicker(tick)
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
			// Due: pending for an interval less one tick, so that the
			// write comes within the interval of the mark's first change
			// (measured now, not at the tick: a slow write delays ticks).
			cctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
			if err := w.flush(cctx, time.Now().Add(tick-w.cfg.Interval)); err != nil {
				w.log.Warn("cannot write marks; retrying them an interval from now", "err", err)
			}
			cancel()
		}
	}
}

// Flush writes everything pending now. A failed write goes back to pending
// (merged with what came since), unless the store refused it as invalid
// (record.ErrInvalid: it would never succeed; the marks are dropped and
// counted). Not for concurrent use with itself (Run calls it; tests and
// shutdown may too, one at a time).
func (w *Writer) Flush(ctx context.Context) error { return w.flush(ctx, time.Time{}) }

// flush writes the marks pending since before or earlier, or all of them
// when before is zero.
func (w *Writer) flush(ctx context.Context, before time.Time) error {
	w.mu.Lock()
	w.flight = w.takeLocked(before)
	if len(w.flight) == 0 {
		w.flight = nil
		w.mu.Unlock()
		return nil
	}
	var batch []record.Mark
	for _, chat := range slices.Sorted(maps.Keys(w.flight)) {
		m := w.flight[chat]
		for _, k := range slices.SortedFunc(maps.Keys(m), cmpKey) {
			batch = append(batch, record.Mark{Kind: k.kind, User: k.user, Device: k.device, ChatID: k.chat, Seq: m[k]})
		}
	}
	w.mu.Unlock()
	start := time.Now()
	err := w.store.SaveMarks(ctx, batch)
	markFlushSecs.UpdateDuration(start)
	w.mu.Lock()
	switch {
	case err == nil:
		marksWritten.Add(len(batch))
	case errors.Is(err, record.ErrInvalid):
		marksInvalid.Add(len(batch))
		w.log.Error("store refused marks as invalid; dropped", "marks", len(batch), "err", err)
	default:
		markWriteErrs.Inc()
		// Back to pending, due again an interval from now.
		now := time.Now()
		for _, m := range w.flight {
			for k, v := range m {
				if w.pending.get(k) == 0 {
					w.count++
					w.order = append(w.order, due{now, k})
				}
				w.pending.raise(k, v)
			}
		}
	}
	w.flight = nil
	w.mu.Unlock()
	return err
}

// takeLocked removes from pending the marks that became pending at or
// before before (all of them when before is zero) and returns them. w.mu
// must be held.
func (w *Writer) takeLocked(before time.Time) pendingSet {
	if before.IsZero() {
		all := w.pending
		w.pending, w.count, w.order, w.head = pendingSet{}, 0, nil, 0
		return all
	}
	taken := pendingSet{}
	for ; w.head < len(w.order) && !w.order[w.head].at.After(before); w.head++ {
		k := w.order[w.head].k
		w.order[w.head] = due{}
		taken.raise(k, w.pending.get(k))
		w.pending.del(k)
		w.count--
	}
	if w.head > len(w.order)/2 { // reuse the front half
		w.order = w.order[:copy(w.order, w.order[w.head:])]
		w.head = 0
	}
	return taken
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
