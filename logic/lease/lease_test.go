package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// memStore is an in-memory lease table with the store's conditional
// semantics.
type memStore struct {
	mu     sync.Mutex
	rows   []record.Lease
	writes atomic.Int64 // conditional writes attempted
}

func newMemStore(slots int) *memStore {
	m := &memStore{rows: make([]record.Lease, slots)}
	for i := range m.rows {
		m.rows[i].Slot = i
	}
	return m
}

func (m *memStore) Slots() int { return len(m.rows) }

func (m *memStore) Leases(context.Context) ([]record.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]record.Lease(nil), m.rows...), nil
}

func (m *memStore) AcquireLease(_ context.Context, prev record.Lease, owner string) (record.Lease, bool, error) {
	m.writes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.rows[prev.Slot]
	if cur != prev {
		return cur, false, nil
	}
	m.rows[prev.Slot] = record.Lease{Slot: prev.Slot, Owner: owner, Epoch: prev.Epoch + 1, Version: prev.Version + 1}
	return m.rows[prev.Slot], true, nil
}

func (m *memStore) RenewLeases(_ context.Context, held []record.Lease) ([]record.Lease, []record.Lease, error) {
	m.writes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range held {
		if m.rows[l.Slot] != l {
			cur := make([]record.Lease, len(held))
			for i, h := range held {
				cur[i] = m.rows[h.Slot]
			}
			return nil, cur, nil
		}
	}
	out := make([]record.Lease, len(held))
	for i, l := range held {
		l.Version++
		m.rows[l.Slot] = l
		out[i] = l
	}
	return out, nil, nil
}

func (m *memStore) ReleaseLease(_ context.Context, l record.Lease) (record.Lease, bool, error) {
	m.writes.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows[l.Slot] != l {
		return m.rows[l.Slot], false, nil
	}
	m.rows[l.Slot] = record.Lease{Slot: l.Slot, Epoch: l.Epoch, Version: l.Version + 1}
	return m.rows[l.Slot], true, nil
}

// pausable wraps a store: while paused, every call blocks (a node stopped
// with SIGSTOP, or cut off from the store); while failing, every call
// errs.
type pausable struct {
	Store
	mu      sync.Mutex
	paused  chan struct{} // closed to resume; nil when running
	failing atomic.Bool
}

func (p *pausable) gate() error {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
	if p.failing.Load() {
		return errors.New("injected store failure")
	}
	return nil
}

func (p *pausable) pause() {
	p.mu.Lock()
	p.paused = make(chan struct{})
	p.mu.Unlock()
}

func (p *pausable) resume() {
	p.mu.Lock()
	close(p.paused)
	p.paused = nil
	p.mu.Unlock()
}

func (p *pausable) Leases(ctx context.Context) ([]record.Lease, error) {
	if err := p.gate(); err != nil {
		return nil, err
	}
	return p.Store.Leases(ctx)
}

func (p *pausable) AcquireLease(ctx context.Context, prev record.Lease, owner string) (record.Lease, bool, error) {
	if err := p.gate(); err != nil {
		return prev, false, err
	}
	return p.Store.AcquireLease(ctx, prev, owner)
}

func (p *pausable) RenewLeases(ctx context.Context, held []record.Lease) ([]record.Lease, []record.Lease, error) {
	if err := p.gate(); err != nil {
		return nil, nil, err
	}
	return p.Store.RenewLeases(ctx, held)
}

func (p *pausable) ReleaseLease(ctx context.Context, l record.Lease) (record.Lease, bool, error) {
	if err := p.gate(); err != nil {
		return l, false, err
	}
	return p.Store.ReleaseLease(ctx, l)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type node struct {
	k      *Keeper
	st     *pausable
	want   atomic.Pointer[func(int) bool]
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t *testing.T, id string, st Store, want func(int) bool) *node {
	t.Helper()
	n := &node{st: &pausable{Store: st}, done: make(chan struct{})}
	n.want.Store(&want)
	k, err := New(Config{}, id, n.st, func(s int) bool { return (*n.want.Load())(s) }, time.Now, quiet)
	if err != nil {
		t.Fatal(err)
	}
	n.k = k
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		k.Run(ctx)
	}()
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func (n *node) held() int {
	c := 0
	for i := range n.k.Slots() {
		if n.k.Grant(i).Valid(time.Now()) {
			c++
		}
	}
	return c
}

func all(int) bool  { return true }
func none(int) bool { return false }

// TestAcquireRenewRelease: a node takes every free slot at once, renews
// them without losing them, and frees them when it stops.
func TestAcquireRenewRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(8)
		n := startNode(t, "a", st, all)
		time.Sleep(10 * time.Millisecond)
		if got := n.held(); got != 8 {
			t.Fatalf("held after start: got %d, want 8", got)
		}
		time.Sleep(10 * time.Second)
		if got := n.held(); got != 8 {
			t.Fatalf("held after 10s: got %d, want 8", got)
		}
		rows, _ := st.Leases(context.Background())
		for _, r := range rows {
			if r.Owner != "a" || r.Epoch != 1 || r.Version < 10 {
				t.Fatalf("row %+v: want owner a at epoch 1, renewed about every second", r)
			}
		}
		if w := st.writes.Load(); w > 8+11 {
			t.Fatalf("conditional writes: got %d, want one per slot plus one batch per renewal (at most %d)", w, 8+11)
		}
		n.stop()
		rows, _ = st.Leases(context.Background())
		for _, r := range rows {
			if r.Owner != "" {
				t.Fatalf("row %+v after stop: want released", r)
			}
		}
	})
}

// TestPausedHolderNeverOverlaps: a holder stops talking to the store (a
// paused process); the other node takes its slots only after the lease
// ran out on the holder's own clock, never while the holder still thinks
// it holds them; the resumed holder learns it lost them.
func TestPausedHolderNeverOverlaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(4)
		a := startNode(t, "a", st, all)
		time.Sleep(10 * time.Millisecond)
		b := startNode(t, "b", st, none)
		time.Sleep(2 * time.Second)
		if a.held() != 4 || b.held() != 0 {
			t.Fatalf("before the pause: a holds %d, b %d, want 4 and 0", a.held(), b.held())
		}
		a.st.pause()
		paused := time.Now()
		b.want.Store(ptr(all)) // the ring dropped a
		var tookAt time.Duration
		for i := 0; i < 1000; i++ {
			time.Sleep(10 * time.Millisecond)
			now := time.Now()
			for s := range 4 {
				if a.k.Grant(s).Valid(now) && b.k.Grant(s).Valid(now) {
					t.Fatalf("slot %d held by both a and b %v after the pause", s, now.Sub(paused))
				}
			}
			if tookAt == 0 && b.held() == 4 {
				tookAt = time.Since(paused)
			}
		}
		cfg := Config{}.WithDefaults()
		t.Logf("b took the paused node's slots %v after the pause", tookAt)
		if tookAt == 0 || tookAt > cfg.Duration+cfg.Margin+cfg.Poll+100*time.Millisecond {
			t.Fatalf("b took the slots %v after the pause, want within D+ε+poll (%v)", tookAt, cfg.Duration+cfg.Margin+cfg.Poll)
		}
		if tookAt < cfg.Duration {
			t.Fatalf("b took the slots %v after the pause, before a's lease could have run out", tookAt)
		}
		a.want.Store(ptr(none))
		a.st.resume()
		time.Sleep(2 * time.Second)
		if a.held() != 0 || b.held() != 4 {
			t.Fatalf("after the resume: a holds %d, b %d, want 0 and 4", a.held(), b.held())
		}
		rows, _ := st.Leases(context.Background())
		for _, r := range rows {
			if r.Owner != "b" || r.Epoch != 2 {
				t.Fatalf("row %+v: want b at epoch 2", r)
			}
		}
		a.stop()
		b.stop()
	})
}

// TestHandoverByRelease: when the ring moves slots to a node that joined,
// the holder releases them and the newcomer takes them without waiting out
// the lease.
func TestHandoverByRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(4)
		a := startNode(t, "a", st, all)
		time.Sleep(10 * time.Millisecond)
		even := func(s int) bool { return s%2 == 0 }
		odd := func(s int) bool { return s%2 == 1 }
		b := startNode(t, "b", st, odd)
		a.want.Store(ptr(even))
		a.k.Wake()
		start := time.Now()
		for b.held() < 2 {
			time.Sleep(10 * time.Millisecond)
			if time.Since(start) > 2*time.Second {
				t.Fatalf("b holds %d slots after 2s, want 2", b.held())
			}
		}
		if took, poll := time.Since(start), (Config{}).WithDefaults().Poll; took > poll+50*time.Millisecond {
			t.Fatalf("handover took %v, want about one poll interval", took)
		}
		if a.held() != 2 {
			t.Fatalf("a holds %d, want 2", a.held())
		}
		a.stop()
		b.stop()
	})
}

// TestStoreOutage: renewals that fail let the grants run out; once the
// store answers again the node renews the same epoch (nobody took them).
func TestStoreOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(2)
		a := startNode(t, "a", st, all)
		time.Sleep(10 * time.Millisecond)
		a.st.failing.Store(true)
		time.Sleep(3 * time.Second)
		if got := a.held(); got != 0 {
			t.Fatalf("held during the outage: got %d, want 0 (expired)", got)
		}
		a.st.failing.Store(false)
		time.Sleep(2 * time.Second)
		if got := a.held(); got != 2 {
			t.Fatalf("held after the outage: got %d, want 2", got)
		}
		for s := range 2 {
			if g := a.k.Grant(s); g.Epoch != 1 {
				t.Fatalf("slot %d: epoch %d, want 1 (renewed, not taken again)", s, g.Epoch)
			}
		}
		a.stop()
	})
}

// lossyStore writes like memStore, but the answer of some calls is lost:
// the write applied (or not) and the caller gets an error either way, as
// when a transaction's reply times out (after 2s: a lost answer is a
// timeout). Versions carry random low bits
// like the CQL store's, so no two attempts want the same row.
type lossyStore struct {
	*memStore
	mu   sync.Mutex
	rng  *rand.Rand
	lost float64 // share of answers lost after applying
	fail float64 // share of calls failing without applying
	// blind: every read of the table fails (this node learns rows only
	// from its own transactions' answers).
	blind bool
}

func (l *lossyStore) Leases(ctx context.Context) ([]record.Lease, error) {
	if l.blind {
		return nil, errLost
	}
	return l.memStore.Leases(ctx)
}

func (l *lossyStore) roll() (applyThenErr, fail bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.rng.Float64()
	return r < l.lost, r >= l.lost && r < l.lost+l.fail
}

func (l *lossyStore) next(v uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return (v>>16+1)<<16 | l.rng.Uint64N(1<<16)
}

var errLost = errors.New("injected: the answer was lost")

func (l *lossyStore) AcquireLease(ctx context.Context, prev record.Lease, owner string) (record.Lease, bool, error) {
	lost, fail := l.roll()
	if fail {
		return prev, false, errLost
	}
	l.memStore.mu.Lock()
	cur := l.memStore.rows[prev.Slot]
	ok := cur == prev
	if ok {
		cur = record.Lease{Slot: prev.Slot, Owner: owner, Epoch: prev.Epoch + 1, Version: l.next(prev.Version)}
		l.memStore.rows[prev.Slot] = cur
	}
	l.memStore.mu.Unlock()
	if lost {
		time.Sleep(2 * time.Second)
		return prev, false, errLost
	}
	return cur, ok, nil
}

func (l *lossyStore) RenewLeases(ctx context.Context, held []record.Lease) ([]record.Lease, []record.Lease, error) {
	lost, fail := l.roll()
	if fail {
		return nil, nil, errLost
	}
	l.memStore.mu.Lock()
	applied := true
	for _, h := range held {
		applied = applied && l.memStore.rows[h.Slot] == h
	}
	var renewed, current []record.Lease
	for _, h := range held {
		if applied {
			h.Version = l.next(h.Version)
			l.memStore.rows[h.Slot] = h
			renewed = append(renewed, h)
		} else {
			current = append(current, l.memStore.rows[h.Slot])
		}
	}
	l.memStore.mu.Unlock()
	if lost {
		time.Sleep(2 * time.Second)
		return nil, nil, errLost
	}
	return renewed, current, nil
}

func (l *lossyStore) ReleaseLease(ctx context.Context, x record.Lease) (record.Lease, bool, error) {
	lost, fail := l.roll()
	if fail {
		return x, false, errLost
	}
	l.memStore.mu.Lock()
	cur := l.memStore.rows[x.Slot]
	ok := cur == x
	if ok {
		cur = record.Lease{Slot: x.Slot, Epoch: x.Epoch, Version: l.next(x.Version)}
		l.memStore.rows[x.Slot] = cur
	}
	l.memStore.mu.Unlock()
	if lost {
		time.Sleep(2 * time.Second)
		return x, false, errLost
	}
	return cur, ok, nil
}

// TestLostAnswersNeverOverlap: with transactions whose answers are lost
// (applied or not, the caller gets an error, after a timeout), a holder
// whose reads of the table all fail, and a second node that wants every
// slot too (their peer link is cut), no slot is ever validly held by
// both. Before versions took random bits, a renewal that found the row an
// earlier, lost attempt had written counted as its own success and
// extended the lease from the wrong send time.
func TestLostAnswersNeverOverlap(t *testing.T) {
	for seed := range uint64(5) {
		synctest.Test(t, func(t *testing.T) {
			mem := newMemStore(4)
			a := startNode(t, "a", &lossyStore{memStore: mem, rng: rand.New(rand.NewPCG(seed, 7)), lost: 0.3, fail: 0.2, blind: true}, all)
			time.Sleep(10 * time.Millisecond)
			b := startNode(t, "b", &lossyStore{memStore: mem, rng: rand.New(rand.NewPCG(seed, 8)), lost: 0.3, fail: 0.2}, all)
			overlaps := 0
			for range 6000 {
				time.Sleep(10 * time.Millisecond)
				now := time.Now()
				for s := range 4 {
					ga, gb := a.k.Grant(s), b.k.Grant(s)
					if ga.Valid(now) && gb.Valid(now) {
						overlaps++
						t.Errorf("seed %d: slot %d valid on a (epoch %d) and b (epoch %d)", seed, s, ga.Epoch, gb.Epoch)
					}
				}
				if overlaps > 3 {
					break
				}
			}
			a.stop()
			b.stop()
		})
	}
}

// scripted is a holder's path to the store going bad: its first armed
// renewal commits but the answer is lost when the call times out, its
// table reads fail from then on, the second renewal is answered, and the
// later ones never commit (they time out).
type scripted struct {
	m       *memStore
	mu      sync.Mutex
	armed   bool
	renews  int
	pollBad bool
}

func (f *scripted) Slots() int { return f.m.Slots() }

func (f *scripted) Leases(ctx context.Context) ([]record.Lease, error) {
	f.mu.Lock()
	bad := f.pollBad
	f.mu.Unlock()
	if bad {
		return nil, errors.New("injected read timeout")
	}
	return f.m.Leases(ctx)
}

func (f *scripted) AcquireLease(ctx context.Context, p record.Lease, o string) (record.Lease, bool, error) {
	return f.m.AcquireLease(ctx, p, o)
}

func (f *scripted) ReleaseLease(ctx context.Context, l record.Lease) (record.Lease, bool, error) {
	return f.m.ReleaseLease(ctx, l)
}

func (f *scripted) RenewLeases(ctx context.Context, held []record.Lease) ([]record.Lease, []record.Lease, error) {
	f.mu.Lock()
	if f.armed {
		f.renews++
	}
	armed, n := f.armed, f.renews
	if n == 1 {
		f.pollBad = true
	}
	f.mu.Unlock()
	switch {
	case !armed, n == 2:
		return f.m.RenewLeases(ctx, held)
	case n == 1: // commits, answer lost
		f.m.RenewLeases(ctx, held)
		<-ctx.Done()
		return nil, nil, ctx.Err()
	default: // never commits
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
}

// TestLostRenewalNotCounted: a holder whose renewal committed without its
// answer, and whose next renewal finds the row that renewal wrote, must not
// count its lease from the second renewal's send time: the other node takes
// the slot D+ε after it saw that row, and the two never overlap. (With the
// store rule this replaced — a renewal finding the row it wanted counts as
// applied — the holder stayed valid about 1.5s into the taker's epoch.)
func TestLostRenewalNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMemStore(1)
		fa := &scripted{m: m}
		a := startNode(t, "a", fa, all)
		time.Sleep(10 * time.Millisecond)
		b := startNode(t, "b", m, all) // both want the slot: their peer link is cut
		time.Sleep(1500 * time.Millisecond)
		fa.mu.Lock()
		fa.armed = true
		fa.mu.Unlock()
		start := time.Now()
		took := time.Duration(0)
		for range 1000 {
			time.Sleep(10 * time.Millisecond)
			now := time.Now()
			if a.k.Grant(0).Valid(now) && b.k.Grant(0).Valid(now) {
				t.Fatalf("slot 0 valid on both a (epoch %d, for %v more) and b (epoch %d) %v after arming",
					a.k.Grant(0).Epoch, a.k.Grant(0).Deadline.Sub(now), b.k.Grant(0).Epoch, now.Sub(start))
			}
			if took == 0 && b.k.Grant(0).Valid(now) {
				took = now.Sub(start)
			}
		}
		if took == 0 {
			t.Fatalf("b never took the slot of a holder cut off from the store")
		}
		a.stop()
		b.stop()
	})
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Duration: 10 * time.Second, Margin: time.Second}, true},
		{Config{Duration: time.Second, Margin: time.Second}, false},
		{Config{Duration: 3 * time.Second, Renew: 3 * time.Second}, false},
		{Config{Poll: -1}, false},
	} {
		if err := tc.cfg.Validate("lease"); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v): got %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func TestSlot(t *testing.T) {
	counts := make([]int, 16)
	for i := range 16000 {
		counts[Slot("g:"+string(rune('a'+i%26))+string(rune(i)), 16)]++
	}
	for s, c := range counts {
		if c < 600 || c > 1400 {
			t.Fatalf("slot %d got %d of 16000 chats, want about 1000", s, c)
		}
	}
}

func ptr(f func(int) bool) *func(int) bool { return &f }

// TestMissingCountsDeadHolders: a node that wants slots held by a node
// outside its ring counts them as missing (its readiness waits) while the
// holder looks dead, the usual case after a restart under a new node id,
// but not once it has seen the holder renew (a partition between live
// nodes: the slots are served over there).
func TestMissingCountsDeadHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore(4)
		a := startNode(t, "a", st, all)
		for a.held() != 4 { // a holds every slot before b starts
			time.Sleep(10 * time.Millisecond)
		}
		start := func(id string) (*Keeper, context.CancelFunc) {
			k, err := New(Config{}, id, st, all, time.Now, quiet)
			if err != nil {
				t.Fatal(err)
			}
			k.SetAlive(func(owner string) bool { return owner == id })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				k.Run(ctx)
			}()
			return k, func() { cancel(); <-done }
		}

		// Partitioned from a, which keeps renewing. (Whether b counts the
		// slots as missing before its first sight of a renew depends on how
		// its first rounds interleave with a's; the dead-holder case below,
		// with c, checks the count while the holder's rows stand.)
		b, stopB := start("b")
		<-b.Ready()
		time.Sleep(3 * time.Second)
		if got := b.Missing(); got != 0 {
			t.Fatalf("b after seeing a renew: missing %d, want 0 (a serves them)", got)
		}
		stopB()
		if a.held() != 4 {
			t.Fatalf("a holds %d, want 4", a.held())
		}

		// a dies (stops talking to the store); c starts.
		a.st.pause()
		c, stopC := start("c")
		<-c.Ready()
		begun := time.Now()
		cfg := Config{}.WithDefaults()
		for c.Missing() != 0 {
			if c.Missing() != 4 {
				t.Fatalf("c while a's rows stand: missing %d, want 4", c.Missing())
			}
			if time.Since(begun) > cfg.Duration+cfg.Margin+cfg.Poll+time.Second {
				t.Fatalf("c still misses %d slots %v after start", c.Missing(), time.Since(begun))
			}
			time.Sleep(10 * time.Millisecond)
		}
		// The count and the grants are published one after the other, and a
		// renewal a had in flight when it paused may count as a sign of
		// life (missing 0) until a's rows run out: c holds every slot
		// within the lease's duration all the same.
		held := 0
		for time.Since(begun) <= cfg.Duration+cfg.Margin+cfg.Poll+time.Second {
			held = 0
			for i := range c.Slots() {
				if c.Grant(i).Valid(time.Now()) {
					held++
				}
			}
			if held == 4 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if held != 4 {
			t.Fatalf("c misses nothing but holds %d slots, want 4", held)
		}
		t.Logf("c took a's slots %v after it started", time.Since(begun))
		stopC()
		a.st.resume()
		a.stop()
	})
}
