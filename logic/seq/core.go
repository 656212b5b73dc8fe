package seq

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Errors of refused and failed requests. ErrNotStored and ErrInDoubt are
// retryable: a retry with the same request id finds the message if it was
// stored after all.
var (
	ErrNotMember = errors.New("seq: not a member of the chat")
	ErrNoChat    = errors.New("seq: no such chat")
	ErrBadSeq    = errors.New("seq: seq outside the chat")
	ErrBusy      = errors.New("seq: too many messages of the chat in flight")
	ErrNotStored = errors.New("seq: message not stored")
	ErrInDoubt   = errors.New("seq: message outcome unknown")
	// ErrIDReused: the request key names a message with another body.
	ErrIDReused = errors.New("seq: request id already used for another message")
)

// Config bounds what a Core holds. Zero fields take the defaults.
type Config struct {
	// MaxInflight is the most seqs of one chat assigned and not known
	// durable (pending and in doubt); sends beyond it get ErrBusy. It is
	// also the span a new lease holder fences above the head, so it must
	// not exceed it. Default 256.
	MaxInflight int
	// Keys is how many of a chat's newest request keys are held exactly;
	// older ones live on in the filter. Default 1024.
	Keys int
	// Filter keeps a Bloom filter of each chat's request keys, so that a
	// new key needs no store lookup. Only where this core is the chat's only
	// writer (the embedded store, or a lease holder): another writer's keys
	// would be missing from it.
	Filter bool
	// RetryMin and RetryMax bound the backoff between attempts of an
	// append in doubt. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxInflight <= 0 {
		c.MaxInflight = 256
	}
	if c.Keys <= 0 {
		c.Keys = 1024
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(2*time.Second, c.RetryMin)
	}
	return c
}

// Load is what the shard read from the store about a chat.
type Load struct {
	Meta    record.Chat // ID set even when the chat does not exist yet
	Exists  bool        // false: a direct chat created with its first message
	Members []string    // any order
	Epoch   uint64      // the lease epoch it was loaded (and fenced) under; 0 without leases
	Head    uint64      // the highest stored seq
	// Tail is the newest stored messages, ascending (bodies not needed):
	// they seed the memory that names the senders an ack covers.
	Tail []record.Message
	// Keys is every request key the store holds for the chat, when
	// KeysComplete; otherwise the chat gets no filter.
	Keys         []record.DedupKey
	KeysComplete bool
	Cursors      []record.DeviceCursor
}

// Send is a request to store a message.
type Send struct {
	Chat, User, Device, RequestID, Body string
	TS                                  int64          // Unix ms, from the shard's clock
	Kind                                record.MsgKind // zero means record.MsgText
}

// DecisionKind says what became of a request.
type DecisionKind uint8

const (
	// Rejected: Decision.Err says why.
	Rejected DecisionKind = iota
	// Known: the request key names a stored message (Decision.Msg).
	Known
	// Waiting: the request waits for an append; Applied answers it.
	Waiting
	// Lookup: the key may name a stored message the core does not hold;
	// look it up in the store and call Resolve.
	Lookup
)

// Decision is what Send, System and Resolve decided.
type Decision struct {
	Kind DecisionKind
	Err  error
	// Msg (Known) is the stored message; its Body is set only when it came
	// from the store (Refan).
	Msg record.Message
	// Refan (Known): the message came from the store and may never have
	// been fanned out (its writer died first): offer it again.
	Refan bool
}

// Chat is the core's state of one chat. The exported fields are for the
// shard to read; it changes them only through Core and Chat methods.
type Chat[R any] struct {
	ID      string
	Meta    record.Chat
	Exists  bool
	Members []string // sorted
	Epoch   uint64
	Head    uint64 // the highest durable seq

	next     uint64      // the highest assigned seq
	inflight []*entry[R] // seqs Head+1..next, ascending; those in doubt first
	keys     map[rkey]keyVal
	keyOrder []rkey // insertion order of keys, oldest first (from keyFirst)
	keyFirst int
	filter   *filter // nil: every unknown key needs a lookup
	unscoped bool    // the filter holds unscoped keys (bare request ids, from before keys were scoped per device)
	recent   [recentN]recentMsg
	cursors  map[dkey]uint64 // (user, device) -> delivery cursor

	dirty   bool      // has pending messages (to append with the next batch)
	retryAt time.Time // when the messages in doubt are tried again
	backoff time.Duration
}

// BadSeqError is an ack of a seq the chat does not hold; it matches
// ErrBadSeq.
type BadSeqError struct {
	Seq, Head uint64
}

func (e *BadSeqError) Error() string {
	return fmt.Sprintf("seq: ack seq %d outside 1..%d", e.Seq, e.Head)
}

// Is makes a *BadSeqError match ErrBadSeq.
func (e *BadSeqError) Is(target error) bool { return target == ErrBadSeq }

// dkey is a (user, device) pair.
type dkey struct{ a, b string }

// rkey is a request key: (user, device, request id).
type rkey struct{ user, device, id string }

// requestKey returns the request key of a send.
func requestKey(s *Send) rkey { return rkey{s.User, s.Device, s.RequestID} }

type keyVal struct {
	seq uint64
	ts  int64
	sum uint64 // bodySum of the message's body
}

var bodySeed = maphash.MakeSeed()

// bodySum tells two bodies apart (a retry must carry the same body).
func bodySum(body string) uint64 { return maphash.String(bodySeed, body) }

// entry is one assigned message not known durable.
type entry[R any] struct {
	msg     record.Message
	waiters []R
	doubt   bool // appended at least once with an unknown outcome
}

// recentN is the size of a chat's memory of stored messages: acks usually
// cover the few messages delivered since the previous ack.
const recentN = 16

type recentMsg struct {
	seq    uint64
	ts     int64
	sender string
	kind   record.MsgKind
}

// IsMember reports whether user is a member.
func (ch *Chat[R]) IsMember(user string) bool {
	_, ok := slices.BinarySearch(ch.Members, user)
	return ok
}

// AddMember adds user to the members (no-op if present).
func (ch *Chat[R]) AddMember(user string) {
	if i, ok := slices.BinarySearch(ch.Members, user); !ok {
		ch.Members = slices.Insert(ch.Members, i, user)
	}
}

// RemoveMember removes user from the members (no-op if absent).
func (ch *Chat[R]) RemoveMember(user string) {
	if i, ok := slices.BinarySearch(ch.Members, user); ok {
		ch.Members = slices.Delete(ch.Members, i, i+1)
	}
}

// Busy reports whether the chat has messages not known durable.
func (ch *Chat[R]) Busy() bool { return len(ch.inflight) > 0 }

// Next returns the highest assigned seq.
func (ch *Chat[R]) Next() uint64 { return ch.next }

// FilterBytes returns the memory of the chat's key filter.
func (ch *Chat[R]) FilterBytes() int {
	if ch.filter == nil {
		return 0
	}
	return ch.filter.bytes()
}

// Recent appends the stored messages after..upto (bodies empty) from the
// chat's memory; ok is false when any of them is not there.
func (ch *Chat[R]) Recent(dst []record.Message, after, upto uint64) (_ []record.Message, ok bool) {
	if upto <= after || upto-after > recentN {
		return dst, upto <= after
	}
	for s := after + 1; s <= upto; s++ {
		e := &ch.recent[s%recentN]
		if e.seq != s {
			return dst, false
		}
		dst = append(dst, record.Message{ChatID: ch.ID, Seq: s, Sender: e.sender, TS: e.ts, Kind: e.kind})
	}
	return dst, true
}

func (ch *Chat[R]) remember(m *record.Message) {
	ch.recent[m.Seq%recentN] = recentMsg{seq: m.Seq, ts: m.TS, sender: m.Sender, kind: m.Kind}
}

// Core is the sequencer of one shard's chats. R is the caller's handle of
// a request; the core hands it back in outcomes. Not safe for concurrent
// use.
type Core[R any] struct {
	cfg      Config
	cap      int
	chats    map[string]*Chat[R]
	batch    []*Chat[R] // the chats of the appends handed out, in order
	doubtful []*Chat[R] // chats with messages in doubt
}

// New returns a core holding at most capacity idle chats.
func New[R any](cfg Config, capacity int) *Core[R] {
	return &Core[R]{cfg: cfg.withDefaults(), cap: max(capacity, 1), chats: map[string]*Chat[R]{}}
}

// Chat returns the loaded chat, or nil.
func (c *Core[R]) Chat(id string) *Chat[R] { return c.chats[id] }

// Len returns the number of loaded chats.
func (c *Core[R]) Len() int { return len(c.chats) }

// Install makes l the chat's state, replacing any earlier one (whose
// requests get the returned failures), and returns it. It evicts an idle
// chat when the core holds more than its capacity.
func (c *Core[R]) Install(l Load) (*Chat[R], []Failure[R]) {
	fails := c.Drop(l.Meta.ID)
	if len(c.chats) >= c.cap {
		for id, ch := range c.chats { // an arbitrary idle one
			if !ch.Busy() {
				delete(c.chats, id)
				break
			}
		}
	}
	ch := &Chat[R]{
		ID: l.Meta.ID, Meta: l.Meta, Exists: l.Exists, Epoch: l.Epoch, Head: l.Head, next: l.Head,
		Members: slices.Compact(slices.Sorted(slices.Values(l.Members))),
		keys:    map[rkey]keyVal{}, cursors: map[dkey]uint64{},
	}
	for i := range l.Tail {
		if m := &l.Tail[i]; m.Seq <= l.Head {
			ch.remember(m)
		}
	}
	if c.cfg.Filter && (l.KeysComplete || !l.Exists) {
		ch.filter = newFilter(2 * len(l.Keys))
		for _, k := range l.Keys {
			// An unscoped key (a bare request id) never equals a scoped
			// one ('/' is not in the id alphabet).
			if k.Unscoped {
				ch.filter.add(k.Sender, k.RequestID)
				ch.unscoped = true
			} else {
				ch.filter.addScoped(k.Sender, k.Device, k.RequestID)
			}
		}
	}
	for _, cur := range l.Cursors {
		ch.cursors[dkey{cur.User, cur.Device}] = cur.Seq
	}
	c.chats[ch.ID] = ch
	return ch, fails
}

// Drop forgets a chat (its next use reloads it) and returns the failures
// of the requests waiting on it.
func (c *Core[R]) Drop(id string) []Failure[R] {
	ch := c.chats[id]
	if ch == nil {
		return nil
	}
	delete(c.chats, id)
	c.doubtful = slices.DeleteFunc(c.doubtful, func(x *Chat[R]) bool { return x == ch })
	c.batch = slices.DeleteFunc(c.batch, func(x *Chat[R]) bool { return x == ch })
	ch.dirty = false
	var fails []Failure[R]
	for _, e := range ch.inflight {
		for _, w := range e.waiters {
			fails = append(fails, Failure[R]{Ref: w, Err: ErrInDoubt})
		}
	}
	return fails
}

// DropAll forgets every chat for which drop returns true and returns the
// failures of their waiting requests.
func (c *Core[R]) DropAll(drop func(ch *Chat[R]) bool) []Failure[R] {
	var fails []Failure[R]
	for id, ch := range c.chats {
		if drop(ch) {
			fails = append(fails, c.Drop(id)...)
		}
	}
	return fails
}

// Send decides a send on a loaded chat (Install first).
func (c *Core[R]) Send(ref R, s Send) Decision {
	ch := c.chats[s.Chat]
	if ch == nil {
		return Decision{Kind: Rejected, Err: fmt.Errorf("chat %s not loaded: %w", s.Chat, ErrNoChat)}
	}
	if !ch.IsMember(s.User) {
		return Decision{Kind: Rejected, Err: ErrNotMember}
	}
	if s.RequestID != "" {
		k := requestKey(&s)
		if v, ok := ch.keys[k]; ok {
			if v.seq <= ch.Head {
				if v.sum != bodySum(s.Body) {
					return Decision{Kind: Rejected, Err: ErrIDReused}
				}
				return Decision{Kind: Known, Msg: record.Message{ChatID: ch.ID, Seq: v.seq, Sender: s.User,
					Device: s.Device, RequestID: s.RequestID, TS: v.ts, Kind: kindOr(s.Kind)}}
			}
			e := ch.inflight[v.seq-ch.Head-1]
			if e.msg.Body != s.Body {
				return Decision{Kind: Rejected, Err: ErrIDReused}
			}
			e.waiters = append(e.waiters, ref)
			if !e.doubt {
				return Decision{Kind: Waiting}
			}
			// A retry of a message in doubt: try it again with the next
			// batch.
			c.markDirty(ch)
			return Decision{Kind: Waiting}
		}
		if ch.Exists && (ch.filter == nil || ch.filter.mayContainScoped(k.user, k.device, k.id) ||
			ch.unscoped && ch.filter.mayContain(s.User, s.RequestID)) {
			return Decision{Kind: Lookup}
		}
	}
	return c.assign(ch, ref, s)
}

// Resolve finishes a send that got Lookup: found is the stored message of
// its key, or nil when the store has none.
func (c *Core[R]) Resolve(ref R, s Send, found *record.Message) Decision {
	ch := c.chats[s.Chat]
	if ch == nil {
		return Decision{Kind: Rejected, Err: fmt.Errorf("chat %s not loaded: %w", s.Chat, ErrNoChat)}
	}
	if found != nil {
		if found.Body != s.Body {
			return Decision{Kind: Rejected, Err: ErrIDReused}
		}
		if found.Seq <= ch.Head {
			ch.addKey(requestKey(&s), keyVal{seq: found.Seq, ts: found.TS, sum: bodySum(found.Body)}, c.cfg.Keys)
			return Decision{Kind: Known, Msg: *found, Refan: true}
		}
		// A row above the head (another writer's, in LWT sequencing): the
		// next append at that seq conflicts and reloads the chat.
		return Decision{Kind: Known, Msg: *found, Refan: true}
	}
	return c.assign(ch, ref, s)
}

// System assigns the next seq to a system message (a group event) of a
// loaded chat; m's ChatID, Sender, RequestID, TS, Kind and Body are kept.
func (c *Core[R]) System(ref R, m record.Message) Decision {
	ch := c.chats[m.ChatID]
	if ch == nil {
		return Decision{Kind: Rejected, Err: fmt.Errorf("chat %s not loaded: %w", m.ChatID, ErrNoChat)}
	}
	return c.assign(ch, ref, Send{Chat: m.ChatID, User: m.Sender, Device: m.Device, RequestID: m.RequestID, Body: m.Body, TS: m.TS, Kind: m.Kind})
}

func kindOr(k record.MsgKind) record.MsgKind {
	if k == 0 {
		return record.MsgText
	}
	return k
}

func (c *Core[R]) assign(ch *Chat[R], ref R, s Send) Decision {
	if ch.next-ch.Head >= uint64(c.cfg.MaxInflight) {
		return Decision{Kind: Rejected, Err: ErrBusy}
	}
	ch.next++
	m := record.Message{ChatID: ch.ID, Seq: ch.next, Sender: s.User, Device: s.Device, RequestID: s.RequestID,
		TS: s.TS, Kind: kindOr(s.Kind), Body: s.Body}
	ch.inflight = append(ch.inflight, &entry[R]{msg: m, waiters: []R{ref}})
	if s.RequestID != "" {
		ch.addKey(requestKey(&s), keyVal{seq: m.Seq, ts: m.TS, sum: bodySum(m.Body)}, c.cfg.Keys)
	}
	c.markDirty(ch)
	return Decision{Kind: Waiting}
}

func (ch *Chat[R]) addKey(k rkey, v keyVal, limit int) {
	if _, ok := ch.keys[k]; !ok {
		ch.keyOrder = append(ch.keyOrder, k)
		if ch.filter != nil {
			ch.filter.addScoped(k.user, k.device, k.id)
		}
	}
	ch.keys[k] = v
	ch.trimKeys(limit)
}

// trimKeys forgets the oldest exact keys beyond limit, but never one of a
// message in flight (the oldest keys have the lowest seqs, so it stops at
// the first); the filter, if any, keeps them.
func (ch *Chat[R]) trimKeys(limit int) {
	for len(ch.keys) > limit && ch.keyFirst < len(ch.keyOrder) {
		old := ch.keyOrder[ch.keyFirst]
		if v, ok := ch.keys[old]; ok && v.seq > ch.Head {
			break
		}
		delete(ch.keys, old)
		ch.keyOrder[ch.keyFirst] = rkey{}
		ch.keyFirst++
	}
	if ch.keyFirst > len(ch.keyOrder)/2 && ch.keyFirst > 64 {
		ch.keyOrder = slices.Delete(ch.keyOrder, 0, ch.keyFirst)
		ch.keyFirst = 0
	}
}

func (c *Core[R]) markDirty(ch *Chat[R]) {
	if !ch.dirty {
		ch.dirty = true
		c.batch = append(c.batch, ch)
	}
}

// Retry makes the next batch append ch's messages in doubt, due or not.
func (c *Core[R]) Retry(ch *Chat[R]) {
	if len(ch.inflight) > 0 && c.chats[ch.ID] == ch {
		c.markDirty(ch)
	}
}

// Uncreated returns the chats of the next batch that do not exist in the
// store yet (direct chats created by their first message): create them,
// set Exists, or Abort them, before Appends.
func (c *Core[R]) Uncreated() []*Chat[R] {
	var out []*Chat[R]
	for _, ch := range c.batch {
		if !ch.Exists {
			out = append(out, ch)
		}
	}
	return out
}

// Abort fails every request waiting on ch with err and drops the chat.
func (c *Core[R]) Abort(ch *Chat[R], err error) []Failure[R] {
	var fails []Failure[R]
	for _, e := range ch.inflight {
		for _, w := range e.waiters {
			fails = append(fails, Failure[R]{Ref: w, Err: err})
		}
		e.waiters = nil
	}
	ch.inflight = nil
	c.Drop(ch.ID)
	return fails
}

// Pending reports whether a batch is waiting to be appended.
func (c *Core[R]) Pending() bool { return len(c.batch) > 0 }

// NextRetry returns when the earliest append in doubt is due again.
func (c *Core[R]) NextRetry() (time.Time, bool) {
	var at time.Time
	for _, ch := range c.doubtful {
		if at.IsZero() || ch.retryAt.Before(at) {
			at = ch.retryAt
		}
	}
	return at, !at.IsZero()
}

// Appends returns the batch to append: for every chat with new messages or
// a retry due at now, all its messages not known durable, in seq order.
// Pass the store's results, in the same order, to Applied.
func (c *Core[R]) Appends(now time.Time) []record.ChatAppend {
	for _, ch := range c.doubtful {
		if !ch.dirty && !now.Before(ch.retryAt) {
			c.markDirty(ch)
		}
	}
	out := make([]record.ChatAppend, 0, len(c.batch))
	for _, ch := range c.batch {
		msgs := make([]record.Message, len(ch.inflight))
		for i, e := range ch.inflight {
			msgs[i] = e.msg
		}
		out = append(out, record.ChatAppend{Epoch: ch.Epoch, Msgs: msgs})
	}
	return out
}

// Stored is a message that became durable: answer its waiters (the first
// one is the original send, the others retries of it) and fan it out.
type Stored[R any] struct {
	Chat    *Chat[R]
	Msg     record.Message
	Waiters []R
}

// Failure is a request to answer with a retryable error.
type Failure[R any] struct {
	Ref R
	Err error
}

// Report is the outcome of Applied.
type Report[R any] struct {
	Stored []Stored[R]
	Failed []Failure[R]
}

// Applied takes the store's results of the appends Appends returned.
// ackable reports whether a chat's append may be acknowledged: false when
// the write may have completed after the writer's lease ended (it is then
// treated as an unknown outcome). now schedules retries.
func (c *Core[R]) Applied(res []record.AppendResult, ackable func(*Chat[R]) bool, now time.Time) Report[R] {
	var rep Report[R]
	batch := c.batch
	c.batch = nil
	for i, ch := range batch {
		ch.dirty = false
		var r record.AppendResult
		if i < len(res) {
			r = res[i]
		} else {
			r.Err = errors.New("seq: no result for the append")
		}
		if c.chats[ch.ID] != ch {
			continue // dropped meanwhile
		}
		if r.Err == nil && r.Stored < len(ch.inflight) {
			r.Err = fmt.Errorf("seq: store reported %d of %d stored without an error", r.Stored, len(ch.inflight))
		}
		if ackable != nil && !ackable(ch) {
			r = record.AppendResult{Err: errors.New("seq: the write may have completed after the lease ended")}
		}
		n := min(max(r.Stored, 0), len(ch.inflight))
		for _, e := range ch.inflight[:n] {
			ch.Head = e.msg.Seq
			ch.remember(&e.msg)
			rep.Stored = append(rep.Stored, Stored[R]{Chat: ch, Msg: e.msg, Waiters: e.waiters})
		}
		ch.trimKeys(c.cfg.Keys)
		rest := ch.inflight[n:]
		switch {
		case r.Err == nil:
			ch.inflight = nil
			ch.backoff = 0
			c.doubtful = slices.DeleteFunc(c.doubtful, func(x *Chat[R]) bool { return x == ch })
		case errors.Is(r.Err, record.ErrConflict), errors.Is(r.Err, record.ErrInvalid):
			// Another writer holds a seq, or the store refused the append
			// as malformed (a retry cannot succeed): none of rest is
			// stored. Forget the chat so that its next use reloads it.
			for _, e := range rest {
				for _, w := range e.waiters {
					rep.Failed = append(rep.Failed, Failure[R]{Ref: w, Err: ErrNotStored})
				}
				e.waiters = nil
			}
			ch.inflight = nil
			c.Drop(ch.ID)
		default:
			// Unknown outcome: keep rest as it is and try it again later.
			ch.inflight = slices.Clone(rest)
			for _, e := range ch.inflight {
				e.doubt = true
				for _, w := range e.waiters {
					rep.Failed = append(rep.Failed, Failure[R]{Ref: w, Err: ErrInDoubt})
				}
				e.waiters = nil
			}
			ch.backoff = min(max(2*ch.backoff, c.cfg.RetryMin), c.cfg.RetryMax)
			ch.retryAt = now.Add(ch.backoff)
			if !slices.Contains(c.doubtful, ch) {
				c.doubtful = append(c.doubtful, ch)
			}
		}
	}
	return rep
}

// AckResult is what an ack changed.
type AckResult struct {
	// From and To bound the newly covered seqs (From, To]; From == To when
	// the ack covered nothing new.
	From, To uint64
	// Covered is the newly covered messages from memory (bodies empty),
	// when Complete; otherwise read (From, To] from the store.
	Covered  []record.Message
	Complete bool
}

// Ack raises a device's delivery cursor in a loaded chat to seq (never
// lowers it). dst is reused for AckResult.Covered.
func (c *Core[R]) Ack(dst []record.Message, chat, user, device string, seq uint64) (AckResult, error) {
	ch := c.chats[chat]
	switch {
	case ch == nil:
		return AckResult{}, fmt.Errorf("chat %s not loaded: %w", chat, ErrNoChat)
	case !ch.Exists:
		return AckResult{}, ErrNoChat
	case !ch.IsMember(user):
		return AckResult{}, ErrNotMember
	case seq == 0 || seq > ch.Head:
		return AckResult{}, &BadSeqError{Seq: seq, Head: ch.Head}
	}
	k := dkey{user, device}
	cur := ch.cursors[k]
	if seq <= cur {
		return AckResult{From: cur, To: cur, Complete: true}, nil
	}
	ch.cursors[k] = seq
	covered, ok := ch.Recent(dst[:0], cur, seq)
	return AckResult{From: cur, To: seq, Covered: covered, Complete: ok}, nil
}
