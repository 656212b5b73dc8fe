package logic

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// memStore is an in-memory Store for logic's own tests (the real backends
// are tested by storage/storetest).
type memStore struct {
	mu      sync.Mutex
	msgs    map[string][]record.Message // chat -> ascending
	dedup   map[record.DedupKey]record.Message
	chats   map[string]record.Chat
	members map[string][]string
	lists   map[string]map[string]bool
	read    map[string]uint64
	cursors map[string]uint64
	subs    map[string]map[string]record.PushSubscription // user -> device -> subscription
	ledger  map[string]time.Time                          // push ledger key -> expiry
	sets    map[string]record.UserSettings                // user -> settings
	roles   map[string]record.Member                      // chat|user -> member row
	failing bool
	// failMembers makes this many AddMember/RemoveMember calls fail.
	failMembers int
	// failAppends makes this many AppendMessages calls fail.
	failAppends int
	delay       time.Duration // added to AppendMessages, outside the lock
	appendCalls int           // AppendMessages calls so far
	closed      bool
}

func newMemStore() *memStore {
	return &memStore{
		msgs: map[string][]record.Message{}, dedup: map[record.DedupKey]record.Message{},
		chats: map[string]record.Chat{}, members: map[string][]string{}, lists: map[string]map[string]bool{},
		read: map[string]uint64{}, cursors: map[string]uint64{},
		subs: map[string]map[string]record.PushSubscription{}, ledger: map[string]time.Time{},
	}
}

func (m *memStore) AppendMessages(_ context.Context, apps []record.ChatAppend) []record.AppendResult {
	m.mu.Lock()
	d := m.delay
	m.appendCalls++
	m.mu.Unlock()
	time.Sleep(d)
	m.mu.Lock()
	defer m.mu.Unlock()
	res := make([]record.AppendResult, len(apps))
	fail := func(err error) []record.AppendResult {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	if m.closed {
		return fail(record.ErrClosed)
	}
	if m.failing {
		return fail(fmt.Errorf("injected failure"))
	}
	if m.failAppends > 0 {
		m.failAppends--
		return fail(fmt.Errorf("injected append failure"))
	}
	seen := map[string]bool{}
	for i, a := range apps {
		if err := a.Validate(); err != nil {
			res[i].Err = fmt.Errorf("%w: %w", record.ErrInvalid, err)
			continue
		}
		chat := a.ChatID()
		if seen[chat] {
			res[i].Err = fmt.Errorf("%w: chat %s twice in one call", record.ErrInvalid, chat)
			continue
		}
		seen[chat] = true
		l := m.msgs[chat]
		lead, leading := 0, true
		var add []record.Message
		for _, x := range a.Msgs {
			switch {
			case x.Seq <= uint64(len(l)):
				if l[x.Seq-1] != x {
					res[i].Err = fmt.Errorf("chat %s seq %d holds another message: %w", chat, x.Seq, record.ErrConflict)
				} else if leading {
					lead++
				}
			case x.Seq == uint64(len(l)+len(add))+1:
				leading = false
				add = append(add, x)
			default:
				res[i].Err = fmt.Errorf("chat %s seq %d after %d: the fake stores dense seqs only", chat, x.Seq, len(l)+len(add))
			}
			if res[i].Err != nil {
				break
			}
		}
		res[i].Stored = lead
		if res[i].Err != nil {
			continue
		}
		for _, x := range add {
			m.msgs[chat] = append(m.msgs[chat], x)
			if x.RequestID != "" {
				m.dedup[record.MessageDedupKey(&x)] = x
			}
		}
		res[i].Stored = len(a.Msgs)
	}
	return res
}

func (m *memStore) DedupKeys(_ context.Context, chat string, limit int) ([]record.DedupKey, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, false, record.ErrClosed
	}
	var out []record.DedupKey
	for k := range m.dedup {
		if k.ChatID == chat {
			if len(out) == limit {
				return out, false, nil
			}
			out = append(out, k)
		}
	}
	return out, true, nil
}

func (m *memStore) LastSeq(_ context.Context, chat string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, record.ErrClosed
	}
	return uint64(len(m.msgs[chat])), nil
}

func (m *memStore) LookupDedup(_ context.Context, k record.DedupKey) (record.Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.Message{}, record.ErrClosed
	}
	if x, ok := m.dedup[k]; ok {
		return x, nil
	}
	return record.Message{}, record.ErrNotFound
}

func (m *memStore) Message(_ context.Context, chat string, seq uint64) (record.Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.Message{}, record.ErrClosed
	}
	l := m.msgs[chat]
	if seq == 0 || seq > uint64(len(l)) {
		return record.Message{}, record.ErrNotFound
	}
	return l[seq-1], nil
}

func (m *memStore) Messages(_ context.Context, chat string, p record.Page) ([]record.Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	l := m.msgs[chat]
	lim := min(p.Limit, record.MaxPageLimit)
	if lim <= 0 {
		lim = record.MaxPageLimit
	}
	var out []record.Message
	switch {
	case p.Before > 0:
		end := min(int(p.Before)-1, len(l))
		out = l[max(0, end-lim):end]
	case p.After > 0 || p.Forward:
		start := min(int(p.After), len(l))
		out = l[start:min(len(l), start+lim)]
	default:
		out = l[max(0, len(l)-lim):]
	}
	return slices.Clone(out), nil
}

func (m *memStore) CreateChat(_ context.Context, c record.Chat, members []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if _, ok := m.chats[c.ID]; ok {
		return record.ErrConflict
	}
	m.chats[c.ID] = c
	for _, u := range members {
		row := record.Member{User: u, Role: record.RoleMember}
		if c.Kind == record.KindGroup && u == c.CreatedBy {
			row.Role = record.RoleCreator
		}
		m.addLocked(c.ID, row)
	}
	return nil
}

func (m *memStore) addLocked(chat string, row record.Member) {
	u := row.User
	if m.roles == nil {
		m.roles = map[string]record.Member{}
	}
	m.roles[chat+"|"+u] = row
	if !slices.Contains(m.members[chat], u) {
		m.members[chat] = append(m.members[chat], u)
		slices.Sort(m.members[chat])
	}
	if m.lists[u] == nil {
		m.lists[u] = map[string]bool{}
	}
	m.lists[u][chat] = true
}

func (m *memStore) Chat(_ context.Context, id string) (record.Chat, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.Chat{}, record.ErrClosed
	}
	c, ok := m.chats[id]
	if !ok {
		return c, record.ErrNotFound
	}
	return c, nil
}

func (m *memStore) Members(_ context.Context, id string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	if _, ok := m.chats[id]; !ok {
		return nil, record.ErrNotFound
	}
	return slices.Clone(m.members[id]), nil
}

func (m *memStore) GroupMembers(_ context.Context, id string) ([]record.Member, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	if _, ok := m.chats[id]; !ok {
		return nil, record.ErrNotFound
	}
	out := []record.Member{}
	for _, u := range m.members[id] {
		out = append(out, m.roles[id+"|"+u])
	}
	return out, nil
}

func (m *memStore) SetRole(_ context.Context, chat, u string, role record.Role) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if !slices.Contains(m.members[chat], u) {
		return record.ErrNotFound
	}
	row := m.roles[chat+"|"+u]
	row.Role = role
	m.roles[chat+"|"+u] = row
	return nil
}

func (m *memStore) AddMember(_ context.Context, chat string, row record.Member) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if _, ok := m.chats[chat]; !ok {
		return record.ErrNotFound
	}
	if m.failMembers > 0 {
		m.failMembers--
		return fmt.Errorf("injected membership failure")
	}
	m.addLocked(chat, row)
	return nil
}

func (m *memStore) RemoveMember(_ context.Context, chat, u string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if _, ok := m.chats[chat]; !ok {
		return record.ErrNotFound
	}
	if m.failMembers > 0 {
		m.failMembers--
		return fmt.Errorf("injected membership failure")
	}
	m.members[chat] = slices.DeleteFunc(m.members[chat], func(x string) bool { return x == u })
	delete(m.lists[u], chat)
	delete(m.roles, chat+"|"+u)
	return nil
}

func (m *memStore) UserChats(_ context.Context, u string) ([]record.ChatEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	var out []record.ChatEntry
	for c := range m.lists[u] {
		out = append(out, record.ChatEntry{Chat: m.chats[c], LastSeq: uint64(len(m.msgs[c])), ReadSeq: m.read[u+"|"+c]})
	}
	return out, nil
}

func (m *memStore) SaveMarks(_ context.Context, marks []record.Mark) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	for _, x := range marks {
		switch x.Kind {
		case record.MarkRead:
			k := x.User + "|" + x.ChatID
			m.read[k] = max(m.read[k], x.Seq)
		case record.MarkCursor:
			k := x.User + "|" + x.Device + "|" + x.ChatID
			m.cursors[k] = max(m.cursors[k], x.Seq)
		default:
			return fmt.Errorf("unknown mark kind %d", x.Kind)
		}
	}
	return nil
}

func (m *memStore) DeviceCursor(_ context.Context, u, d, chat string) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, record.ErrClosed
	}
	return m.cursors[u+"|"+d+"|"+chat], nil
}

func (m *memStore) ChatCursors(_ context.Context, chat string) ([]record.DeviceCursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	out := []record.DeviceCursor{}
	for k, seq := range m.cursors {
		parts := strings.SplitN(k, "|", 3)
		if parts[2] == chat {
			out = append(out, record.DeviceCursor{User: parts[0], Device: parts[1], Seq: seq})
		}
	}
	return out, nil
}

func (m *memStore) UserSettings(_ context.Context, user string) (record.UserSettings, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.UserSettings{}, record.ErrClosed
	}
	return m.sets[user], nil
}

func (m *memStore) PutUserSettings(_ context.Context, user string, st record.UserSettings) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if user == "" {
		return fmt.Errorf("cannot store settings: empty user id")
	}
	if m.sets == nil {
		m.sets = map[string]record.UserSettings{}
	}
	m.sets[user] = st
	return nil
}

func (m *memStore) PutPushSubscription(_ context.Context, sub record.PushSubscription) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	if sub.User == "" || sub.Device == "" {
		return fmt.Errorf("cannot store push subscription: empty user or device id")
	}
	if m.subs[sub.User] == nil {
		m.subs[sub.User] = map[string]record.PushSubscription{}
	}
	m.subs[sub.User][sub.Device] = sub
	return nil
}

func (m *memStore) PushSubscriptions(_ context.Context, user string) ([]record.PushSubscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, record.ErrClosed
	}
	out := []record.PushSubscription{}
	for _, sub := range m.subs[user] {
		out = append(out, sub)
	}
	return out, nil
}

func (m *memStore) DeletePushSubscription(_ context.Context, user, device string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return record.ErrClosed
	}
	delete(m.subs[user], device)
	return nil
}

func (m *memStore) MarkPushed(_ context.Context, key string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, record.ErrClosed
	}
	if key == "" || ttl <= 0 {
		return false, fmt.Errorf("cannot mark %q pushed for %s: empty key or ttl not positive", key, ttl)
	}
	now := time.Now()
	if exp, ok := m.ledger[key]; ok && exp.After(now) {
		return false, nil
	}
	m.ledger[key] = now.Add(ttl)
	return true, nil
}

func (m *memStore) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

var _ Store = (*memStore)(nil)

// leasedStore is memStore with the lease table of sequencing under leases
// (a CQL store with sequencing: lease). Its Fence returns the head and
// records the fences; the memory store cannot hide an older epoch's late
// writes (storage/scylla's zombie suite covers that).
type leasedStore struct {
	*memStore
	lmu    sync.Mutex // guards the following
	leases []record.Lease
	fences map[string]uint64 // chat -> highest epoch fenced
}

func newLeasedStore(slots int) *leasedStore {
	l := &leasedStore{memStore: newMemStore(), leases: make([]record.Lease, slots), fences: map[string]uint64{}}
	for i := range l.leases {
		l.leases[i].Slot = i
	}
	return l
}

func (l *leasedStore) Slots() int { return len(l.leases) }

func (l *leasedStore) Leases(context.Context) ([]record.Lease, error) {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	return slices.Clone(l.leases), nil
}

func (l *leasedStore) AcquireLease(_ context.Context, prev record.Lease, owner string) (record.Lease, bool, error) {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	if cur := l.leases[prev.Slot]; cur != prev {
		return cur, false, nil
	}
	l.leases[prev.Slot] = record.Lease{Slot: prev.Slot, Owner: owner, Epoch: prev.Epoch + 1, Version: prev.Version + 1}
	return l.leases[prev.Slot], true, nil
}

func (l *leasedStore) RenewLeases(_ context.Context, held []record.Lease) ([]record.Lease, []record.Lease, error) {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	for _, h := range held {
		if l.leases[h.Slot] != h {
			cur := make([]record.Lease, len(held))
			for i, x := range held {
				cur[i] = l.leases[x.Slot]
			}
			return nil, cur, nil
		}
	}
	out := slices.Clone(held)
	for i := range out {
		out[i].Version++
		l.leases[out[i].Slot] = out[i]
	}
	return out, nil, nil
}

func (l *leasedStore) ReleaseLease(_ context.Context, x record.Lease) (record.Lease, bool, error) {
	l.lmu.Lock()
	defer l.lmu.Unlock()
	if l.leases[x.Slot] != x {
		return l.leases[x.Slot], false, nil
	}
	l.leases[x.Slot] = record.Lease{Slot: x.Slot, Epoch: x.Epoch, Version: x.Version + 1}
	return l.leases[x.Slot], true, nil
}

func (l *leasedStore) Fence(ctx context.Context, chat string, epoch uint64, _ int) (uint64, error) {
	l.lmu.Lock()
	l.fences[chat] = max(l.fences[chat], epoch)
	l.lmu.Unlock()
	return l.LastSeq(ctx, chat)
}
