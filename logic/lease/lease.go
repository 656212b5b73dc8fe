package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Store holds the leases: the CQL store under lease sequencing
// (storage/scylla), or a fake in tests. Implementations are safe for
// concurrent use; every write is conditional on the row as the caller last
// saw it.
type Store interface {
	// Slots is the fixed number of slots.
	Slots() int
	// Leases returns every slot's row, indexed by slot (a slot never
	// written reads as free with epoch and version 0).
	Leases(ctx context.Context) ([]record.Lease, error)
	// AcquireLease takes prev's slot for owner at epoch prev.Epoch+1 if the
	// row is still prev; it returns the row now stored and whether it is
	// owner's.
	AcquireLease(ctx context.Context, prev record.Lease, owner string) (record.Lease, bool, error)
	// RenewLeases bumps the version of every row in held, all or nothing:
	// renewed on success; otherwise current holds the stored rows of held's
	// slots.
	RenewLeases(ctx context.Context, held []record.Lease) (renewed, current []record.Lease, err error)
	// ReleaseLease frees l's slot if the row is still l, and returns the
	// row now stored.
	ReleaseLease(ctx context.Context, l record.Lease) (record.Lease, bool, error)
}

// Versions: every write of a row gives it a new version, greater than the
// one before. A write reports success only when it applied itself. An
// attempt that errs may still have applied (its answer was lost), so a
// later attempt can find a row like the one it wanted; that row must not
// be taken for the later attempt's success: the lease it grants counts
// from the send time of the attempt that wrote it, which is unknown. The
// keeper adopts such a row without extending its deadline and renews at
// once.

// Config tunes a Keeper. Zero fields take the defaults.
type Config struct {
	// Duration is D: how long a lease lasts after the renewal that
	// extended it was sent. Default 3s.
	Duration time.Duration `yaml:"duration"`
	// Margin is ε: a holder stops D−ε after its renewal was sent, a taker
	// waits D+ε after it saw the holder's last renewal. It covers clock
	// rate differences and the time between a holder's deadline check and
	// its answer leaving. Default 500ms; less than Duration/2.
	Margin time.Duration `yaml:"margin"`
	// Renew is how often a holder renews. Default Duration/3.
	Renew time.Duration `yaml:"renew"`
	// Poll is how often the node reads every slot's row (to route requests
	// to holders and to see expired leases). Default 500ms.
	Poll time.Duration `yaml:"poll"`
}

// Defaults.
const (
	DefaultDuration = 3 * time.Second
	DefaultMargin   = 500 * time.Millisecond
	DefaultPoll     = 500 * time.Millisecond
)

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Margin <= 0 {
		c.Margin = DefaultMargin
	}
	if c.Renew <= 0 {
		c.Renew = c.Duration / 3
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	return c
}

// Validate reports every problem at once; zero fields mean the defaults.
func (c Config) Validate(prefix string) error {
	var errs []error
	d := c.WithDefaults()
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"duration", c.Duration}, {"margin", c.Margin}, {"renew", c.Renew}, {"poll", c.Poll}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s.%s must not be negative, got %s", prefix, f.name, f.v))
		}
	}
	if d.Margin*2 >= d.Duration {
		errs = append(errs, fmt.Errorf("%s.margin %s must be under half of duration %s", prefix, d.Margin, d.Duration))
	}
	if d.Renew >= d.Duration-d.Margin {
		errs = append(errs, fmt.Errorf("%s.renew %s must be shorter than duration - margin (%s)", prefix, d.Renew, d.Duration-d.Margin))
	}
	return errors.Join(errs...)
}

// Slot returns the slot of a chat: FNV-1a of its id modulo slots (the same
// hash as the shard workers', so with shards a multiple of slots every
// shard's chats share one slot).
func Slot(chatID string, slots int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chatID))
	return int(h.Sum32() % uint32(slots))
}

// Grant is a lease this node holds, as the sequencer sees it.
type Grant struct {
	Epoch    uint64
	Deadline time.Time // monotonic: the lease is valid before it
}

// Valid reports whether the grant is valid at now.
func (g *Grant) Valid(now time.Time) bool { return g != nil && now.Before(g.Deadline) }

// Keeper acquires, renews and releases this node's leases. Run drives it;
// Grant and Holder may be called from any goroutine.
type Keeper struct {
	cfg   Config
	self  string
	store Store
	now   func() time.Time
	want  func(slot int) bool
	alive func(owner string) bool // SetAlive; nil: every other owner may be alive
	log   *slog.Logger

	grants  []atomic.Pointer[Grant]        // published: nil when not held
	holders []atomic.Pointer[record.Lease] // published: the row last seen
	wake    chan struct{}
	ready   chan struct{} // closed after the first round of acquisitions
	once    sync.Once
	missing atomic.Int64 // slots due for a takeover by this node (publishMissing)
	// acquired counts this keeper's acquisitions; topEpoch is the highest
	// epoch it acquired (epochs are finite: see ARCHITECTURE.md).
	acquired atomic.Uint64
	topEpoch atomic.Uint64

	// Used by the Run goroutine only.
	slots     []slotState
	nextRenew time.Time
	polled    bool
}

type slotState struct {
	row    record.Lease
	seenAt time.Time // when row's value was first seen (a read's completion)
	// renewing: the row was seen renewed (same owner and epoch, a newer
	// version), so its owner was alive after this node first saw it.
	renewing bool
	held     bool
	// Deadline of the held lease: the last successful renewal's send
	// time + D − ε.
	valid time.Time
}

// New returns a keeper for node self. want says whether the ring picks
// this node for a slot (it is called from the Run goroutine). now is the
// clock (time.Now: monotonic).
func New(cfg Config, self string, store Store, want func(slot int) bool, now func() time.Time, log *slog.Logger) (*Keeper, error) {
	if err := cfg.Validate("lease"); err != nil {
		return nil, err
	}
	n := store.Slots()
	if n <= 0 {
		return nil, fmt.Errorf("cannot keep leases: the store has %d slots", n)
	}
	if self == "" {
		return nil, errors.New("cannot keep leases: empty node id")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Keeper{cfg: cfg.WithDefaults(), self: self, store: store, now: now, want: want, log: log,
		grants: make([]atomic.Pointer[Grant], n), holders: make([]atomic.Pointer[record.Lease], n),
		wake: make(chan struct{}, 1), ready: make(chan struct{}), slots: make([]slotState, n)}, nil
}

// SetAlive tells the keeper which owners are live nodes (for a fleet: the
// members of the ring). A slot this node wants whose holder is not alive
// (a crashed node, this node's previous incarnation) counts in Missing
// until it is taken over; one held by a live node does not (it hands the
// slot over, or keeps it through a partition). Call before Run.
func (k *Keeper) SetAlive(alive func(owner string) bool) { k.alive = alive }

// Slots returns the number of slots.
func (k *Keeper) Slots() int { return len(k.slots) }

// Config returns the keeper's configuration with defaults filled in.
func (k *Keeper) Config() Config { return k.cfg }

// Grant returns this node's lease of slot, nil when it holds none. The
// caller checks Grant.Valid with its own reading of the clock. Safe for
// concurrent use.
func (k *Keeper) Grant(slot int) *Grant { return k.grants[slot].Load() }

// Holder returns the slot's row as last seen (Owner "" when free or not
// read yet). Safe for concurrent use.
func (k *Keeper) Holder(slot int) record.Lease {
	if l := k.holders[slot].Load(); l != nil {
		return *l
	}
	return record.Lease{Slot: slot}
}

// Ready is closed once the keeper read the leases and tried to take every
// free slot the ring gives it (slots held by others are taken later, when
// released or expired). Safe for concurrent use.
func (k *Keeper) Ready() <-chan struct{} { return k.ready }

// Missing returns how many slots the ring gives this node that nobody
// holds (free, expired, or held by this node's previous incarnation) and
// this node has not taken yet, as of the keeper's last round. A slot a
// live peer still renews is not missing. Safe for concurrent use.
func (k *Keeper) Missing() int { return int(k.missing.Load()) }

// Acquired returns how many leases this keeper has acquired and the
// highest epoch among them. Safe for concurrent use.
func (k *Keeper) Acquired() (count, topEpoch uint64) {
	return k.acquired.Load(), k.topEpoch.Load()
}

// Wake makes Run look at the ring's choice now (after a ring change).
// Safe for concurrent use.
func (k *Keeper) Wake() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Run keeps the leases until ctx ends, then releases the ones it holds.
// Each round renews first (the slots this node serves come first), then
// reads the table when due, then takes and releases slots; reads and takes
// are bounded so that the next renewal is never late for them.
func (k *Keeper) Run(ctx context.Context) {
	defer k.releaseAll()
	t := time.NewTimer(0)
	defer t.Stop()
	nextPoll := k.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k.wake:
		}
		if k.holdsAny() && !k.now().Before(k.nextRenew) {
			k.renew(ctx)
		}
		if now := k.now(); !now.Before(nextPoll) {
			k.poll(ctx)
			nextPoll = now.Add(k.cfg.Poll)
		}
		if k.polled {
			k.plan(ctx)
			k.once.Do(func() { close(k.ready) })
		}
		k.publishMissing()
		next := nextPoll
		if k.holdsAny() && k.nextRenew.Before(next) {
			next = k.nextRenew
		}
		t.Reset(max(next.Sub(k.now()), time.Millisecond))
	}
}

func (k *Keeper) holdsAny() bool {
	for i := range k.slots {
		if k.slots[i].held {
			return true
		}
	}
	return false
}

// callCtx bounds one store call: by the lease's validity, and, while this
// node holds slots, so that it ends in time for the next renewal (but no
// sooner than a quarter of the renewal interval from now).
func (k *Keeper) callCtx(ctx context.Context, renewal bool) (context.Context, context.CancelFunc) {
	d := k.cfg.Duration - k.cfg.Margin
	if !renewal && k.holdsAny() {
		d = min(d, max(k.nextRenew.Sub(k.now()), k.cfg.Renew/4))
	}
	return context.WithTimeout(ctx, d)
}

// expired reports whether st's row, not this incarnation's, can be taken:
// free, or unchanged for D + ε since it was first seen.
func (k *Keeper) expired(st *slotState, now time.Time) bool {
	return st.row.Owner == "" || !now.Before(st.seenAt.Add(k.cfg.Duration+k.cfg.Margin))
}

// publishMissing counts the slots the ring gives this node that it does
// not hold while no live node does either (free, expired, held by this
// node's previous incarnation under the same id, or by a node that is not
// alive and has not renewed since this node first saw the row): a takeover
// is due. A holder outside the ring that keeps renewing (a partition
// between logic nodes) does not count: the slot is served, over there.
func (k *Keeper) publishMissing() {
	now := k.now()
	n := 0
	for i := range k.slots {
		st := &k.slots[i]
		gone := st.row.Owner == k.self || (k.alive != nil && !st.renewing && !k.alive(st.row.Owner))
		if !st.held && k.want(i) && (k.expired(st, now) || gone) {
			n++
		}
	}
	k.missing.Store(int64(n))
}

// see records a row read or returned by a transaction at done.
func (k *Keeper) see(st *slotState, l record.Lease, done time.Time) {
	if l.Version < st.row.Version && l.Epoch <= st.row.Epoch {
		return // an older read than what a transaction already told us
	}
	if l != st.row {
		st.renewing = !st.seenAt.IsZero() && l.Owner != "" && l.Owner == st.row.Owner && l.Epoch == st.row.Epoch
		st.row = l
		st.seenAt = done
	}
	if st.held && (l.Owner != k.self || l.Epoch != k.grants[l.Slot].Load().epoch()) {
		k.lose(st, "taken by "+l.Owner)
	}
	k.holders[l.Slot].Store(&l)
}

func (g *Grant) epoch() uint64 {
	if g == nil {
		return 0
	}
	return g.Epoch
}

func (k *Keeper) lose(st *slotState, why string) {
	st.held = false
	k.grants[st.row.Slot].Store(nil)
	k.log.Warn("lease lost", "slot", st.row.Slot, "epoch", st.row.Epoch, "why", why)
}

func (k *Keeper) poll(ctx context.Context) {
	cctx, cancel := k.callCtx(ctx, false)
	rows, err := k.store.Leases(cctx)
	cancel()
	if err != nil {
		k.log.Warn("cannot read leases", "err", err)
		return
	}
	done := k.now()
	for _, l := range rows {
		if l.Slot >= 0 && l.Slot < len(k.slots) {
			k.see(&k.slots[l.Slot], l, done)
		}
	}
	k.polled = true
}

// renew extends every held lease with one conditional batch.
func (k *Keeper) renew(ctx context.Context) {
	var held []record.Lease
	for i := range k.slots {
		if k.slots[i].held {
			held = append(held, k.slots[i].row)
		}
	}
	sent := k.now()
	k.nextRenew = sent.Add(k.cfg.Renew)
	cctx, cancel := k.callCtx(ctx, true)
	renewed, current, err := k.store.RenewLeases(cctx, held)
	cancel()
	done := k.now()
	switch {
	case err != nil:
		k.log.Warn("cannot renew leases", "slots", len(held), "err", err)
	case renewed != nil:
		for _, l := range renewed {
			st := &k.slots[l.Slot]
			st.row, st.seenAt, st.valid = l, done, sent.Add(k.cfg.Duration-k.cfg.Margin)
			k.holders[l.Slot].Store(&l)
			k.grants[l.Slot].Store(&Grant{Epoch: l.Epoch, Deadline: st.valid})
		}
	default:
		// Some row changed. Rows still ours at our epoch (a newer version
		// was written by an attempt whose answer we did not get) are
		// adopted without extending their deadline and renewed again at
		// once; the others are lost.
		for _, l := range current {
			st := &k.slots[l.Slot]
			if l.Owner == k.self && l.Epoch == st.row.Epoch {
				st.row = l
				k.holders[l.Slot].Store(&l)
				k.nextRenew = done
				continue
			}
			k.see(st, l, done)
		}
	}
}

// plan releases the slots the ring no longer gives this node and takes
// the ones it does, when free or expired, all in parallel.
func (k *Keeper) plan(ctx context.Context) {
	var take, release []int
	now := k.now()
	for i := range k.slots {
		st := &k.slots[i]
		want := k.want(i)
		switch {
		case st.held && !want:
			release = append(release, i)
		case !st.held && want && k.expired(st, now):
			take = append(take, i)
		}
	}
	if len(take)+len(release) == 0 {
		return
	}
	// Stop sequencing what goes before any store call.
	for _, i := range release {
		k.slots[i].held = false
		k.grants[i].Store(nil)
	}
	cctx, cancel := k.callCtx(ctx, false)
	defer cancel()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards slots during the calls
	for _, i := range release {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			mu.Lock()
			prev := k.slots[i].row
			mu.Unlock()
			l, ok, err := k.store.ReleaseLease(cctx, prev)
			done := k.now()
			mu.Lock()
			defer mu.Unlock()
			if err != nil || !ok {
				k.log.Warn("cannot release lease; it expires instead", "slot", i, "err", err)
				return
			}
			k.see(&k.slots[i], l, done)
			k.log.Info("lease released", "slot", i, "epoch", l.Epoch)
		})
	}
	for _, i := range take {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			mu.Lock()
			prev := k.slots[i].row
			mu.Unlock()
			sent := k.now()
			l, ok, err := k.store.AcquireLease(cctx, prev, k.self)
			done := k.now()
			mu.Lock()
			defer mu.Unlock()
			st := &k.slots[i]
			switch {
			case err != nil:
				k.log.Warn("cannot acquire lease", "slot", i, "err", err)
			case ok:
				st.row, st.seenAt, st.held, st.valid = l, done, true, sent.Add(k.cfg.Duration-k.cfg.Margin)
				k.holders[i].Store(&l)
				k.grants[i].Store(&Grant{Epoch: l.Epoch, Deadline: st.valid})
				if k.nextRenew.IsZero() || k.nextRenew.After(sent.Add(k.cfg.Renew)) {
					k.nextRenew = sent.Add(k.cfg.Renew)
				}
				k.acquired.Add(1)
				if l.Epoch > k.topEpoch.Load() {
					k.topEpoch.Store(l.Epoch) // stores happen under mu
				}
				k.log.Info("lease acquired", "slot", i, "epoch", l.Epoch, "from", prev.Owner)
			default:
				// Taken by someone else, or written by an attempt of ours
				// whose answer we lost: either way not ours to count from
				// now; an orphan of ours expires like any other row.
				k.see(st, l, done)
			}
		})
	}
	wg.Wait()
}

// releaseAll frees every held slot at shutdown (bounded by one lease
// duration), so successors take them at once.
func (k *Keeper) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.Duration)
	defer cancel()
	for i := range k.slots {
		st := &k.slots[i]
		if !st.held {
			continue
		}
		st.held = false
		k.grants[i].Store(nil)
		if _, ok, err := k.store.ReleaseLease(ctx, st.row); err != nil || !ok {
			k.log.Warn("cannot release lease at shutdown; it expires instead", "slot", i, "err", err)
		}
	}
}
