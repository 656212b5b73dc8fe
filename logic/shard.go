package logic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/logic/lease"
	"github.com/parley-chat/parley/logic/seq"
)

var (
	messagesStored   = metrics.NewCounter(`parley_logic_messages_stored_total`)
	messagesDeduped  = metrics.NewCounter(`parley_logic_messages_deduplicated_total`)
	dedupLookups     = metrics.NewCounter(`parley_logic_dedup_lookups_total`)
	appendsInDoubt   = metrics.NewCounter(`parley_logic_appends_in_doubt_total`)
	appendsNoLease   = metrics.NewCounter(`parley_logic_appends_waiting_lease_total`)
	appendConflicts  = metrics.NewCounter(`parley_logic_append_conflicts_total`)
	chatLoads        = metrics.NewCounter(`parley_logic_chat_loads_total`)
	fences           = metrics.NewCounter(`parley_logic_chat_fences_total`)
	deliveriesQueued = metrics.NewCounter(`parley_logic_deliveries_total`)
	receiptsSent     = metrics.NewCounter(`parley_logic_receipts_total`)
	appendBatchSize  = metrics.NewHistogram(`parley_logic_append_batch_messages`)
)

// Bounds of the sequencer core (logic/seq) of each shard.
const (
	// maxInflight is the most seqs of one chat assigned and not known
	// durable. A lease holder fences this many seqs above the head when it
	// takes a chat over (fenceSpan), so the two must agree.
	maxInflight = 256
	fenceSpan   = maxInflight
	// recentKeys is how many request keys per chat the core holds exactly.
	recentKeys = 1024
	// dedupKeyLimit is the most dedup keys read into a chat's filter at
	// load; a chat with more gets no filter (a store lookup per new key).
	dedupKeyLimit = 20000
	// tailMessages seeds a loaded chat's memory of stored messages.
	tailMessages = 16
)

// shard is one chat shard worker: it owns the chats that hash to it and
// handles their mutations one batch at a time. The decisions are the
// sequencer core's (logic/seq); the shard loads chats, calls the store and
// carries out the core's answers. Its fields are used only by its own
// goroutine.
type shard struct {
	svc  *Service
	q    chan *request
	core *seq.Core[*request]

	epoch uint64 // the cluster ring epoch the cached chats belong to (LWT sequencing)
	// grants is the lease epoch of each slot whose chats the core holds
	// (sequencing under leases): when a slot's epoch changes or its lease
	// is gone, its chats are dropped. fenced is the epoch each chat was
	// last fenced at by this shard (bounded: cleared when large).
	grants  map[int]uint64
	fenced  map[string]uint64
	scratch []byte
	fan     fanoutScratch
	routes  map[routeKey]map[string][]tierlink.PeerUser // fleet: per-batch fan-out routes
	acked   []record.Message                            // ack: the newly covered messages, reused
}

func newShard(s *Service) *shard {
	return &shard{svc: s, q: make(chan *request, s.cfg.ShardQueue), core: newCore(s)}
}

func newCore(s *Service) *seq.Core[*request] {
	cfg := seq.Config{MaxInflight: maxInflight, Keys: recentKeys, Filter: s.singleWriter()}
	return seq.New[*request](cfg, max(1, s.cfg.ChatCacheSize/max(1, s.cfg.Shards)))
}

func (sh *shard) run(stop <-chan struct{}) {
	batch := make([]*request, 0, sh.svc.cfg.BatchMax)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		// Appends in doubt are tried again when due, even without traffic.
		if at, ok := sh.core.NextRetry(); ok {
			retry.Reset(max(at.Sub(sh.svc.now()), 0))
		}
		batch = batch[:0]
		select {
		case r := <-sh.q:
			batch = append(batch, r)
		case <-retry.C:
		case <-stop:
			return
		}
		retry.Stop()
	drain:
		for len(batch) < cap(batch) {
			select {
			case r := <-sh.q:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		sh.process(batch)
		clear(batch)
	}
}

// ctx returns the context of one request's or flush's store calls,
// bounded by Config.StoreTimeout (a storeCtx: free until a store call asks
// for its Done channel); the caller cancels it when done.
func (sh *shard) ctx() *storeCtx {
	return newStoreCtx(sh.svc.cfg.StoreTimeout)
}

// process handles a batch in order. The sends of a batch are appended in
// one store call. Acks and read markers do not wait for it: they can only
// name seqs that are durable already (a client acks or reads what it
// received), so they run at once and the sends around them stay one batch.
// Any other mutation (a group change stores a system message) first
// flushes the sends before it.
func (sh *shard) process(batch []*request) {
	if k := sh.svc.leases; k != nil {
		sh.checkGrants(k)
	} else if c := sh.svc.cluster; c != nil {
		// Ownership may have moved and back: what this shard cached about
		// a chat may be stale, so reload from the store.
		if e := c.epoch.Load(); e != sh.epoch {
			sh.failAll(sh.core.DropAll(func(*seq.Chat[*request]) bool { return true }))
			sh.epoch = e
		}
	}
	for _, r := range batch {
		if sh.overdue(r) {
			continue
		}
		switch r.in.Type {
		case proto.TypeSend:
			sh.addSend(r)
		case proto.TypeAck, proto.TypeRead:
			sh.handleOther(r)
		default:
			sh.flush()
			sh.handleOther(r)
		}
	}
	sh.flush()
}

// overdue refuses r when it waited in the queue longer than
// logic.queue_deadline: an overloaded answer now, which the client retries
// after a pause, beats the work of a request whose answer would come too
// late; an overdue ack is dropped (the next one carries it).
func (sh *shard) overdue(r *request) bool {
	d := sh.svc.cfg.QueueDeadline
	if d <= 0 {
		return false
	}
	waited := sh.svc.now().Sub(r.recv)
	if waited <= d {
		return false
	}
	sh.svc.overload.note(sh.svc.now(), "queue_deadline", waited)
	if r.in.Type == proto.TypeAck {
		acksOverdue.Inc()
		return true
	}
	queueOverdue.Inc()
	sh.svc.rejectRequest(r, &proto.Error{Code: proto.CodeOverloaded,
		Message:      fmt.Sprintf("waited %d ms for this chat's queue, over its %d ms bound: retry", waited.Milliseconds(), d.Milliseconds()),
		RetryAfterMS: min(200, d.Milliseconds())})
	return true
}

// checkGrants drops the chats of slots whose lease this node lost, or
// holds at another epoch than when the chats were loaded (the new epoch
// loads them again, behind a fence).
func (sh *shard) checkGrants(k *lease.Keeper) {
	for slot, epoch := range sh.grants {
		g := k.Grant(slot)
		if g != nil && g.Epoch == epoch {
			continue
		}
		delete(sh.grants, slot)
		sh.failAll(sh.core.DropAll(func(ch *seq.Chat[*request]) bool {
			return lease.Slot(ch.ID, k.Slots()) == slot
		}))
	}
}

// grant returns the valid lease of chat's slot, or an error for the
// client: sequencing under leases happens only under a valid lease.
func (sh *shard) grant(chat string) (*lease.Grant, error) {
	k := sh.svc.leases
	g := k.Grant(lease.Slot(chat, k.Slots()))
	if !g.Valid(sh.svc.now()) {
		return nil, &proto.Error{Code: proto.CodeUnavailable, Message: "no node sequences this chat right now, retry", RetryAfterMS: k.Config().Poll.Milliseconds()}
	}
	return g, nil
}

// loadChat returns the core's state of chat, loading it from the store.
// Under leases it fails unless this node holds the chat's slot.
func (sh *shard) loadChat(ctx context.Context, id string) (*seq.Chat[*request], error) {
	var epoch uint64
	if k := sh.svc.leases; k != nil {
		g, err := sh.grant(id)
		if err != nil {
			return nil, err
		}
		epoch = g.Epoch
		slot := lease.Slot(id, k.Slots())
		if e, ok := sh.grants[slot]; ok && e != epoch {
			sh.checkGrants(k)
		}
		if sh.grants == nil {
			sh.grants = map[int]uint64{}
		}
		sh.grants[slot] = epoch
	}
	if ch := sh.core.Chat(id); ch != nil {
		return ch, nil
	}
	// A chat in doubt (an append of unknown outcome) is never evicted, so
	// it is never reloaded in the same epoch without a fence: the fence
	// is what gives rows such an append left without their dedup keys
	// their keys (storage/scylla's Fence) before this node sequences more.
	fence := epoch > 0 && sh.fenced[id] != epoch
	l, err := sh.svc.loadChat(ctx, id, epoch, fence)
	if err != nil {
		return nil, err
	}
	if fence {
		// Fence a chat once per epoch on this node; a reload after
		// eviction reads the head only (no older epoch writes above it
		// once fenced, and this node's own writes count).
		if len(sh.fenced) >= 4*max(1, sh.svc.cfg.ChatCacheSize/len(sh.svc.shards)) {
			clear(sh.fenced) // forget: the next loads fence again, harmlessly
		}
		if sh.fenced == nil {
			sh.fenced = map[string]uint64{}
		}
		sh.fenced[id] = epoch
	}
	ch, fails := sh.core.Install(l)
	sh.failAll(fails)
	return ch, nil
}

// loadChat reads what the sequencer needs of a chat. A direct chat that
// does not exist yet loads with Exists false. Under leases (epoch > 0) with
// fence set (the chat's first use in this epoch on this node) the head
// comes from a fence: nothing an older epoch writes above it can appear any
// more.
func (svc *Service) loadChat(ctx context.Context, id string, epoch uint64, fence bool) (seq.Load, error) {
	chatLoads.Inc()
	st := svc.store
	l := seq.Load{Meta: record.Chat{ID: id}, KeysComplete: true, Epoch: epoch}
	c, err := st.Chat(ctx, id)
	switch {
	case err == nil:
		l.Meta, l.Exists = c, true
	case errors.Is(err, record.ErrNotFound):
		a, b, ok := record.DirectMembers(id)
		if !ok {
			return l, err
		}
		l.Meta = record.Chat{ID: id, Kind: record.KindDirect}
		l.Members = []string{a, b}
	default:
		return l, err
	}
	if epoch > 0 && fence {
		if l.Head, err = svc.fencer(ctx, id, epoch, fenceSpan); err != nil {
			return l, err
		}
		fences.Inc()
	} else if l.Exists {
		if l.Head, err = st.LastSeq(ctx, id); err != nil {
			return l, err
		}
	}
	if !l.Exists {
		if l.Head > 0 {
			// Rows without a chat row: only a chat created by a writer that
			// died between the two (never for direct chats, which are
			// created before their first append).
			return l, fmt.Errorf("cannot load chat %s: %d messages but no chat row", id, l.Head)
		}
		return l, nil
	}
	if a, b, ok := record.DirectMembers(id); ok {
		l.Members = []string{a, b}
	} else if l.Members, err = st.Members(ctx, id); err != nil {
		return l, err
	}
	if l.Head > 0 {
		if l.Tail, err = st.Messages(ctx, id, record.Page{Before: l.Head + 1, Limit: tailMessages}); err != nil {
			return l, err
		}
	}
	if svc.singleWriter() {
		if l.Keys, l.KeysComplete, err = st.DedupKeys(ctx, id, dedupKeyLimit); err != nil {
			return l, err
		}
	}
	if l.Cursors, err = svc.chatCursors(ctx, id); err != nil {
		return l, err
	}
	return l, nil
}

// singleWriter reports whether this node is the only writer of the chats
// it sequences (under leases, or a single node on its own store), so that
// its shards may rule request keys out with a filter instead of a store
// lookup.
func (svc *Service) singleWriter() bool {
	return svc.leaseStore != nil || (svc.dir == nil && len(svc.cfg.Cluster.Peers) == 0 && !svc.cfg.Cluster.Enabled)
}

func (sh *shard) fail(r *request, err error) {
	sh.svc.requestDone(r, err)
	sh.svc.replyErr(r.out, r.in.ID, err)
}

func (sh *shard) failAll(fails []seq.Failure[*request]) {
	for _, f := range fails {
		sh.failRef(f.Ref, f.Err)
	}
}

// failRef answers a request the core failed: a send with an error frame,
// a system message by recording the error for its group change.
func (sh *shard) failRef(r *request, err error) {
	if r.system {
		r.sysErr = err
		return
	}
	sh.fail(r, sh.clientError(r, err))
}

// clientError maps the core's errors to client errors.
func (sh *shard) clientError(r *request, err error) error {
	switch {
	case errors.Is(err, seq.ErrNotMember):
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	case errors.Is(err, seq.ErrNoChat):
		return proto.Errorf(proto.CodeChatNotFound, "no such chat")
	case errors.Is(err, seq.ErrBadSeq):
		if be, ok := errors.AsType[*seq.BadSeqError](err); ok {
			if be.Head == 0 {
				return proto.Errorf(proto.CodeBadRequest, "seq %d: the chat has no messages yet", be.Seq)
			}
			return proto.Errorf(proto.CodeBadRequest, "seq %d is outside the chat's messages 1..%d", be.Seq, be.Head)
		}
		return proto.Errorf(proto.CodeBadRequest, "seq is outside the chat's messages")
	case errors.Is(err, seq.ErrIDReused):
		return proto.Errorf(proto.CodeIDReused, "request id %s was already used for another message from this device; use a new id", r.in.ID)
	case errors.Is(err, seq.ErrBusy):
		return &proto.Error{Code: proto.CodeOverloaded, Message: "too many messages of this chat in flight", RetryAfterMS: 100}
	case errors.Is(err, seq.ErrNotStored), errors.Is(err, seq.ErrInDoubt):
		return &proto.Error{Code: proto.CodeUnavailable, Message: "message not stored, retry", RetryAfterMS: 200}
	}
	return err
}

// addSend validates a send and hands it to the core.
func (sh *shard) addSend(r *request) {
	in := &r.in
	if !record.ValidID(in.ID) {
		sh.fail(r, proto.Errorf(proto.CodeBadRequest, "send needs an id (request id): 1-64 of [A-Za-z0-9-_.@]"))
		return
	}
	if in.Body == nil || *in.Body == "" {
		sh.fail(r, proto.Errorf(proto.CodeBadRequest, "send needs a non-empty body"))
		return
	}
	if len(*in.Body) > sh.svc.cfg.MaxBodyBytes {
		sh.fail(r, proto.Errorf(proto.CodeTooLarge, "body is %d bytes, limit %d", len(*in.Body), sh.svc.cfg.MaxBodyBytes))
		return
	}
	if !utf8.ValidString(*in.Body) {
		sh.fail(r, proto.Errorf(proto.CodeBadRequest, "body is not valid UTF-8"))
		return
	}
	ctx := sh.ctx()
	defer ctx.cancel()
	ch, err := sh.loadChat(ctx, r.chat)
	if err == nil {
		ch, err = sh.ensureCreated(ctx, r, ch)
	}
	if err != nil {
		sh.fail(r, err)
		return
	}
	s := seq.Send{Chat: r.chat, User: r.user, Device: r.device, RequestID: in.ID, Body: *in.Body, TS: sh.svc.now().UnixMilli()}
	d := sh.core.Send(r, s)
	if d.Kind == seq.Lookup {
		dedupLookups.Inc()
		orig, err := sh.svc.store.LookupDedup(ctx, record.DedupKey{ChatID: r.chat, Sender: r.user, Device: r.device, RequestID: in.ID})
		if err == nil && orig.Device != r.device {
			// An old build's group change stored without a device
			// (record.UnscopedMatch): it answers group changes only.
			err = record.ErrNotFound
		}
		switch {
		case err == nil:
			d = sh.core.Resolve(r, s, &orig)
		case errors.Is(err, record.ErrNotFound):
			d = sh.core.Resolve(r, s, nil)
		default:
			sh.fail(r, err)
			return
		}
	}
	switch d.Kind {
	case seq.Rejected:
		sh.fail(r, sh.clientError(r, d.Err))
	case seq.Known:
		messagesDeduped.Inc()
		sh.replySent(r, d.Msg.ChatID, d.Msg.Seq, d.Msg.TS)
		if r.from != nil {
			sh.svc.ownSent(r.from, &d.Msg)
		}
		if d.Refan {
			// The first attempt may have been stored without being fanned
			// out (its append reported an error, or the node died between
			// the write and the fan-out): offer it again. Sessions that
			// have it ignore it.
			sh.fanout(ch, &d.Msg, r.from, nil)
		}
	}
}

func (sh *shard) replySent(r *request, chat string, seq uint64, ts int64) {
	sh.svc.requestDone(r, nil)
	sh.scratch = proto.AppendSent(sh.scratch[:0], r.in.ID, chat, seq, ts)
	if sr, ok := r.out.(sentReplier); ok {
		sr.replySent(sh.scratch, seq)
		return
	}
	r.out.reply(sh.scratch)
}

// createChats stores the rows of chats first used in this flush, at most
// maxParallelCreates at a time (a burst of new chats, as after a restart
// or when many users start talking at once, would otherwise cost one
// store round trip each, one after another, in front of every message of
// the shard), and returns each one's error by index. It reads only the
// chats' metadata; the shard goroutine applies the results.
func (sh *shard) createChats(ctx context.Context, chats []*seq.Chat[*request], now time.Time) []error {
	errs := make([]error, len(chats))
	sem := make(chan struct{}, maxParallelCreates)
	var wg sync.WaitGroup
	for i, ch := range chats {
		meta := ch.Meta
		meta.CreatedAt = now.UnixMilli()
		members := ch.Members
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = sh.svc.store.CreateChat(ctx, meta, members)
		})
	}
	wg.Wait()
	return errs
}

// maxParallelCreates bounds createChats' store calls in flight per shard.
const maxParallelCreates = 16

// flush appends what the core has pending (new messages, and appends in
// doubt that are due), then answers and fans out what became durable.
func (sh *shard) flush() {
	now := sh.svc.now()
	if !sh.core.Pending() {
		if at, ok := sh.core.NextRetry(); !ok || now.Before(at) {
			return
		}
	}
	defer clear(sh.routes)
	sctx := sh.ctx()
	defer sctx.cancel()
	var ctx context.Context = sctx
	// Under leases a holder writes a chat only while its lease of the
	// chat's slot is valid, at the epoch it loaded the chat under, bounds
	// the writes by the lease's deadline, and acknowledges only what
	// completed before it.
	var ackable func(*seq.Chat[*request]) bool
	writable := func(string, uint64) bool { return true }
	if k := sh.svc.leases; k != nil {
		if d, ok := sh.batchDeadline(k); ok {
			var c2 context.CancelFunc
			ctx, c2 = context.WithDeadline(ctx, d)
			defer c2()
		}
		writable = func(chat string, epoch uint64) bool {
			g := k.Grant(lease.Slot(chat, k.Slots()))
			return g.Valid(sh.svc.now()) && g.Epoch == epoch
		}
		ackable = func(ch *seq.Chat[*request]) bool { return writable(ch.ID, ch.Epoch) }
	}
	// Chats whose row this flush did not write: their messages wait too
	// (the two writable checks below read the clock apart, and a chat's
	// messages must never be stored before its row).
	var uncreated map[string]bool
	var create []*seq.Chat[*request]
	for _, ch := range sh.core.Uncreated() {
		if !writable(ch.ID, ch.Epoch) {
			if uncreated == nil {
				uncreated = map[string]bool{}
			}
			uncreated[ch.ID] = true
			continue // appended (and so created) when the lease is valid again
		}
		create = append(create, ch)
	}
	for i, err := range sh.createChats(ctx, create, now) {
		ch := create[i]
		if err != nil && !errors.Is(err, record.ErrConflict) {
			sh.svc.log.Warn("cannot create chat", "chat_id", ch.ID, "err", err)
			sh.failAll(sh.core.Abort(ch, seq.ErrNotStored))
			continue
		}
		ch.Exists = true
	}
	apps := sh.core.Appends(now)
	if len(apps) == 0 {
		return
	}
	res := make([]record.AppendResult, len(apps))
	var write []record.ChatAppend
	var idx []int
	for i, a := range apps {
		if uncreated[a.ChatID()] || !writable(a.ChatID(), a.Epoch) {
			res[i].Err = errNoLease // kept in doubt: tried again when valid, dropped when lost
			continue
		}
		write, idx = append(write, a), append(idx, i)
	}
	if len(write) > 0 {
		for j, r := range sh.svc.store.AppendMessages(ctx, write) {
			res[idx[j]] = r
		}
	}
	rep := sh.core.Applied(res, ackable, sh.svc.now())
	stored := 0
	for i, r := range res {
		if r.Err == nil {
			continue
		}
		switch {
		case errors.Is(r.Err, errNoLease):
			// Not written at all: kept until the lease is valid again
			// (or dropped when lost); the keeper logs lease changes.
			appendsNoLease.Inc()
			sh.svc.log.Debug("append waits for the chat's lease", "chat_id", apps[i].ChatID(), "count", len(apps[i].Msgs))
			continue
		case errors.Is(r.Err, record.ErrConflict):
			appendConflicts.Inc()
		default:
			appendsInDoubt.Inc()
		}
		sh.svc.log.Warn("cannot append messages", "chat_id", apps[i].ChatID(), "count", len(apps[i].Msgs), "stored", r.Stored, "err", r.Err)
	}
	for i := range rep.Stored {
		st := &rep.Stored[i]
		stored++
		var skip *session
		var extra []string
		for j, w := range st.Waiters {
			if w.system {
				w.sysSeq, extra = st.Msg.Seq, w.extra
				continue
			}
			if j > 0 {
				messagesDeduped.Inc()
			} else {
				sh.svc.observeSent(w)
				skip = w.from
			}
			sh.replySent(w, st.Msg.ChatID, st.Msg.Seq, st.Msg.TS)
			if w.from != nil {
				sh.svc.ownSent(w.from, &st.Msg)
			}
		}
		sh.fanout(st.Chat, &st.Msg, skip, extra)
		if st.Msg.Kind == record.MsgText && st.Msg.Sender != "" {
			switch sh.svc.rel.noteSender(st.Msg.ChatID, st.Msg.Sender) {
			case formed: // a 1-on-1 chat became mutual
				sh.svc.queuePresence(presenceEvent{chat: st.Msg.ChatID})
			case mayHaveFormed: // unknown here: the presence loop reads the chat
				sh.svc.queuePresence(presenceEvent{chat: st.Msg.ChatID, check: true})
			}
		}
	}
	messagesStored.Add(stored)
	appendBatchSize.Update(float64(stored))
	sh.markSendersRead(rep.Stored)
	sh.failAll(rep.Failed)
}

// errNoLease is the outcome of an append this node did not write because
// its lease of the chat's slot was not valid.
var errNoLease = errors.New("logic: no valid lease of the chat's slot")

// batchDeadline returns the earliest deadline among the valid leases of
// the slots this shard's chats belong to (with as many shards as slots or
// a multiple, the default, that is one slot). Chats whose lease is not
// valid are not written at all.
func (sh *shard) batchDeadline(k *lease.Keeper) (time.Time, bool) {
	var d time.Time
	now := sh.svc.now()
	for slot := range sh.grants {
		if g := k.Grant(slot); g.Valid(now) && (d.IsZero() || g.Deadline.Before(d)) {
			d = g.Deadline
		}
	}
	return d, !d.IsZero()
}

// markSendersRead raises each sender's read marker to their newest message
// of the batch: your own messages are never unread.
func (sh *shard) markSendersRead(stored []seq.Stored[*request]) {
	type key struct{ user, chat string }
	latest := make(map[key]uint64, 4)
	for _, st := range stored {
		if st.Msg.Kind == record.MsgText {
			k := key{st.Msg.Sender, st.Msg.ChatID}
			latest[k] = max(latest[k], st.Msg.Seq)
		}
	}
	for k, seq := range latest {
		sh.svc.marks.Add(record.Mark{Kind: record.MarkRead, User: k.user, ChatID: k.chat, Seq: seq})
	}
}

// fanout offers a stored message to every session of every member (and
// of extra users) except the sending session (which got "sent"), and
// emits a push event for members with no session online.
func (sh *shard) fanout(ch *seq.Chat[*request], m *record.Message, skip *session, extra []string) {
	members := ch.Members
	if len(extra) > 0 {
		members = append(slices.Clone(members), extra...)
	}
	c := sh.svc.cluster
	if c == nil {
		sh.scratch = proto.AppendMsg(sh.scratch[:0], m)
		for _, u := range members {
			sh.fan.sessions = sh.svc.offerUser(sh.fan.sessions, u, true, m, sh.scratch, skip)
		}
		return
	}
	push := m.Kind == record.MsgText
	var routes map[string][]tierlink.PeerUser
	if len(extra) > 0 {
		routes = c.route(members, push)
	} else {
		// One directory lookup per chat and batch, not per message.
		k := routeKey{ch.ID, push}
		var ok bool
		if routes, ok = sh.routes[k]; !ok {
			routes = c.route(members, push)
			if sh.routes == nil {
				sh.routes = map[routeKey]map[string][]tierlink.PeerUser{}
			}
			sh.routes[k] = routes
		}
	}
	sh.scratch = proto.AppendMsg(sh.scratch[:0], m)
	sh.offerRoutes(routes, m, skip)
}

type routeKey struct {
	chat string
	push bool
}

// offerRoutes hands m (framed in sh.scratch) to the nodes of routes: local
// sessions directly, other nodes with a Fanout.
func (sh *shard) offerRoutes(routes map[string][]tierlink.PeerUser, m *record.Message, skip *session) {
	c := sh.svc.cluster
	for node, list := range routes {
		if node != c.self {
			c.sendFanout(node, list, m)
			continue
		}
		for _, u := range list {
			sh.fan.sessions = sh.svc.offerUser(sh.fan.sessions, u.User, u.Flags&tierlink.FlagPush != 0, m, sh.scratch, skip)
		}
	}
}

// offerUser offers m to every local session of user except skip; with push
// set and no session here it emits the push event. scratch is returned
// emptied for reuse.
func (svc *Service) offerUser(scratch []*session, user string, push bool, m *record.Message, frame []byte, skip *session) []*session {
	sessions := svc.reg.appendSessions(scratch[:0], user)
	if push && len(sessions) == 0 && user != m.Sender && m.Kind == record.MsgText {
		svc.queuePush(PushEvent{Recipient: user, ChatID: m.ChatID, Seq: m.Seq, Sender: m.Sender, Preview: preview(m.Body), TS: m.TS})
	}
	for _, s := range sessions {
		if s != skip {
			svc.offer(s, m, frame)
		}
	}
	clear(sessions)
	return sessions[:0]
}

// appendSystem stores a system message in chat now (after anything the
// chat has in doubt) and fans it out, to extra users too. r is the group
// change that causes it.
func (sh *shard) appendSystem(r *request, ch *seq.Chat[*request], actor, requestID string, event map[string]any, extra []string) (uint64, error) {
	body, err := json.Marshal(event)
	if err != nil {
		return 0, err
	}
	r.system, r.extra, r.sysSeq, r.sysErr = true, extra, 0, nil
	defer func() { r.system, r.extra = false, nil }()
	m := record.Message{ChatID: ch.ID, Sender: actor, RequestID: requestID, TS: sh.svc.now().UnixMilli(), Kind: record.MsgSystem, Body: string(body)}
	if requestID != "" {
		m.Device = r.device // its dedup key is scoped to the device that asked
	}
	if d := sh.core.System(r, m); d.Kind == seq.Rejected {
		return 0, sh.clientError(r, d.Err)
	}
	sh.flush()
	if r.sysSeq == 0 {
		if r.sysErr == nil {
			r.sysErr = seq.ErrNotStored
		}
		return 0, sh.clientError(r, r.sysErr)
	}
	return r.sysSeq, nil
}

// replyOK answers a group change. Under leases it first checks that this
// node still holds the chat's lease at the epoch the change started under:
// the membership write must have completed before the deadline, or the
// next holder may have loaded the old members; the client then retries,
// and the next holder finds the change's event and completes it.
func (sh *shard) replyOK(r *request, chat string, seq uint64) error {
	if k := sh.svc.leases; k != nil {
		g := k.Grant(lease.Slot(r.chat, k.Slots()))
		if !g.Valid(sh.svc.now()) || g.Epoch != r.leaseEpoch {
			return &proto.Error{Code: proto.CodeUnavailable, Message: "the chat moved to another node, retry", RetryAfterMS: k.Config().Poll.Milliseconds()}
		}
	}
	sh.scratch = proto.AppendOK(sh.scratch[:0], r.in.ID, chat, seq)
	r.out.reply(sh.scratch)
	return nil
}

// handleOther handles every chat mutation except send.
func (sh *shard) handleOther(r *request) {
	sctx := sh.ctx()
	defer sctx.cancel()
	var ctx context.Context = sctx
	var err error
	if k := sh.svc.leases; k != nil && r.in.Type != proto.TypeAck && r.in.Type != proto.TypeRead {
		// A group change writes membership besides its event: all of it
		// before the lease's deadline (replyOK checks the lease again).
		g, gerr := sh.grant(r.chat)
		if gerr != nil {
			sh.fail(r, gerr)
			return
		}
		r.leaseEpoch = g.Epoch
		var c2 context.CancelFunc
		ctx, c2 = context.WithDeadline(ctx, g.Deadline)
		defer c2()
	}
	switch r.in.Type {
	case proto.TypeGroupCreate:
		err = sh.groupCreate(ctx, r)
	case proto.TypeGroupAdd, proto.TypeGroupRemove, proto.TypeGroupLeave, proto.TypeGroupRole:
		err = sh.groupChange(ctx, r)
	case proto.TypeAck:
		err = sh.ack(ctx, r)
	case proto.TypeRead:
		err = sh.read(ctx, r)
	default:
		err = proto.Errorf(proto.CodeUnknownType, "unexpected frame type %q", r.in.Type)
	}
	if err != nil {
		sh.fail(r, err)
		return
	}
	sh.svc.requestDone(r, nil)
	if r.forwarded && (r.in.Type == proto.TypeAck || r.in.Type == proto.TypeRead) {
		r.out.reply(nil) // tells the forwarding node the one-way request is done
	}
}

func (sh *shard) groupCreate(ctx context.Context, r *request) error {
	in := &r.in
	if len(in.Name) > record.MaxGroupNameLen || !utf8.ValidString(in.Name) {
		return proto.Errorf(proto.CodeTooLarge, "group name must be valid UTF-8 of at most %d bytes", record.MaxGroupNameLen)
	}
	if err := checkDisplayText("name", in.Name); err != nil {
		return err
	}
	members := []string{r.user}
	for _, m := range in.Members {
		if !record.ValidID(m) {
			return proto.Errorf(proto.CodeBadRequest, "member %q is not a valid user id", truncate(m, 64))
		}
		if !slices.Contains(members, m) {
			members = append(members, m)
		}
		if len(members) > record.MaxGroupMembers {
			return proto.Errorf(proto.CodeGroupFull, "a group has at most %d members", record.MaxGroupMembers)
		}
	}
	slices.Sort(members)
	chat := record.Chat{ID: r.chat, Kind: record.KindGroup, Name: in.Name, CreatedBy: r.user, CreatedAt: sh.svc.now().UnixMilli()}
	err := sh.svc.store.CreateChat(ctx, chat, members)
	if errors.Is(err, record.ErrConflict) {
		// A retried create: the group exists already with this id.
		return sh.groupCreateRetry(ctx, r, members)
	}
	if err != nil {
		return err
	}
	sh.failAll(sh.core.Drop(r.chat))
	ch, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	return sh.groupCreated(ctx, r, ch, members)
}

// groupCreated stores a new group's "created" event (its seq 1) and answers
// the create.
func (sh *shard) groupCreated(ctx context.Context, r *request, ch *seq.Chat[*request], members []string) error {
	seq, err := sh.appendSystem(r, ch, r.user, "", map[string]any{"event": "created", "by": r.user, "name": r.in.Name, "members": members}, nil)
	if err != nil {
		return err
	}
	return sh.replyOK(r, r.chat, seq)
}

// ensureCreated stores a group's "created" event when the group exists
// without one (its creator's node died between the group's row and the
// event), before anything else is sequenced in it: a group's seq 1 is
// always its created event. r lends its waiter slot. Cheap for every other
// chat. Callers run it before their membership check: a non-member's
// request can trigger the repair, which only stores what the group lacks.
func (sh *shard) ensureCreated(ctx context.Context, r *request, ch *seq.Chat[*request]) (*seq.Chat[*request], error) {
	if ch.Meta.Kind != record.KindGroup || !ch.Exists || ch.Head != 0 || ch.Busy() {
		return ch, nil
	}
	by := ch.Meta.CreatedBy
	if _, err := sh.appendSystem(r, ch, by, "", map[string]any{"event": "created", "by": by, "name": ch.Meta.Name, "members": slices.Clone(ch.Members)}, nil); err != nil {
		return nil, err
	}
	if ch = sh.core.Chat(ch.ID); ch == nil {
		return nil, &proto.Error{Code: proto.CodeUnavailable, Message: "the group's creation is not stored yet, retry", RetryAfterMS: 200}
	}
	return ch, nil
}

// createdEvent is the body of a group's "created" message.
type createdEvent struct {
	Event   string   `json:"event"`
	By      string   `json:"by"`
	Name    string   `json:"name"`
	Members []string `json:"members"`
}

// groupCreateRetry answers a group_create whose group exists: the same
// creator asking for the same group gets the original answer (its
// "created" seq), stored now if the first attempt died before storing it;
// another name or member list under the same id is id_reused.
func (sh *shard) groupCreateRetry(ctx context.Context, r *request, members []string) error {
	existing, err := sh.svc.store.Chat(ctx, r.chat)
	if err != nil {
		return err
	}
	if existing.CreatedBy != r.user {
		return proto.Errorf(proto.CodeForbidden, "group id taken")
	}
	ch, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	if ch.Busy() {
		// The event may be in doubt: find out first.
		sh.core.Retry(ch)
		sh.flush()
		if ch = sh.core.Chat(r.chat); ch == nil || ch.Busy() {
			return &proto.Error{Code: proto.CodeUnavailable, Message: "the group's creation is not stored yet, retry", RetryAfterMS: 200}
		}
	}
	if existing.Name != r.in.Name {
		return proto.Errorf(proto.CodeIDReused, "group id %s was already used for a group with another name; use a new id", r.in.ID)
	}
	if ch.Head == 0 {
		// Created, but the first attempt never stored its event.
		if !slices.Equal(ch.Members, members) {
			return proto.Errorf(proto.CodeIDReused, "group id %s was already used for a group with other members; use a new id", r.in.ID)
		}
		if ch, err = sh.ensureCreated(ctx, r, ch); err != nil {
			return err
		}
		return sh.replyOK(r, r.chat, ch.Head)
	}
	first, err := sh.svc.store.Message(ctx, r.chat, 1)
	if err != nil {
		return err
	}
	var ev createdEvent
	if first.Kind != record.MsgSystem || json.Unmarshal([]byte(first.Body), &ev) != nil || ev.Event != "created" {
		// A group from a build that could lose its event: nothing to
		// compare with, so answer as that build did.
		sh.svc.log.Debug("group without its created event at seq 1", "chat_id", r.chat)
		return sh.replyOK(r, r.chat, 0)
	}
	if !slices.Equal(ev.Members, members) {
		return proto.Errorf(proto.CodeIDReused, "group id %s was already used for a group with other members; use a new id", r.in.ID)
	}
	return sh.replyOK(r, r.chat, first.Seq)
}

func (sh *shard) groupChange(ctx context.Context, r *request) error {
	in := &r.in
	kind, _ := record.ParseChatID(r.chat)
	if kind != record.KindGroup {
		return proto.Errorf(proto.CodeForbidden, "membership of a 1-on-1 chat cannot change")
	}
	ch, err := sh.loadChat(ctx, r.chat)
	if err == nil {
		ch, err = sh.ensureCreated(ctx, r, ch)
	}
	if err != nil {
		return err
	}
	target := in.User
	if r.in.Type == proto.TypeGroupLeave {
		target = r.user
	}
	if !record.ValidID(target) {
		return proto.Errorf(proto.CodeBadRequest, "user is missing or not a valid user id")
	}
	add := r.in.Type == proto.TypeGroupAdd
	var role record.Role // group_role: the new role
	if r.in.Type == proto.TypeGroupRole {
		var perr *proto.Error
		if role, perr = parseRole(in.Role); perr != nil {
			return perr
		}
	}
	rows, err := sh.svc.store.GroupMembers(ctx, r.chat)
	if err != nil {
		return err
	}
	roles, acting := resolveRoles(ch.Meta, rows)
	if acting != "" {
		// Store the acting admin's role before any change: another
		// member made admin must not take it away.
		if err := sh.svc.store.SetRole(ctx, r.chat, acting, record.RoleAdmin); err != nil {
			return err
		}
	}
	var denied error
	if !ch.IsMember(r.user) {
		denied = proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	} else if perr := roles.changeDenied(r.in.Type, r.user, target, role); perr != nil {
		denied = perr
	}
	// The event is stored first, under the request id, and the membership
	// changed after it: a retry after any failure finds its event (dedup)
	// and completes the change, so no change is ever left without its
	// event, and no event is stored twice. Only this change's own event
	// counts: the change was allowed when it was stored (a retry of a
	// leave finds the user gone), while an id of another message is
	// id_reused, never a way past the checks.
	// (Every group change has an id: dispatch refuses one without.)
	if ch.Busy() {
		// An earlier message of this chat is in doubt (it may be this
		// change's event): find out first.
		sh.core.Retry(ch)
		sh.flush()
		if ch = sh.core.Chat(r.chat); ch == nil || ch.Busy() {
			return &proto.Error{Code: proto.CodeUnavailable, Message: "an earlier change of this group is not stored yet, retry", RetryAfterMS: 200}
		}
	}
	prev, err := sh.svc.store.LookupDedup(ctx, record.DedupKey{ChatID: r.chat, Sender: r.user, Device: r.device, RequestID: in.ID})
	switch {
	case err == nil && isChangeEvent(&prev, r.in.Type, target, role):
		if err := sh.completeChange(ctx, ch, roles, &prev, r.in.Type, target, role); err != nil {
			return err
		}
		return sh.replyOK(r, r.chat, prev.Seq)
	case err == nil && denied == nil:
		return proto.Errorf(proto.CodeIDReused, "request id %s was already used for another message from this device; use a new id", in.ID)
	case err != nil && !errors.Is(err, record.ErrNotFound):
		return err
	}
	if denied != nil {
		return denied
	}
	var event map[string]any
	var extra []string
	promoted := ""
	switch {
	case r.in.Type == proto.TypeGroupRole:
		if roles[target].Role == role {
			return sh.replyOK(r, r.chat, 0)
		}
		event = map[string]any{"event": "role_changed", "user": target, "by": r.user, "role": role.String()}
	case add:
		if ch.IsMember(target) {
			return sh.replyOK(r, r.chat, 0)
		}
		if len(ch.Members) >= record.MaxGroupMembers {
			return proto.Errorf(proto.CodeGroupFull, "group %s has %d members, the limit", r.chat, record.MaxGroupMembers)
		}
		event = map[string]any{"event": "member_added", "user": target, "by": r.user}
		extra = []string{target} // the new member gets the event too
	default:
		if !ch.IsMember(target) {
			return sh.replyOK(r, r.chat, 0)
		}
		name := "member_removed"
		if target == r.user {
			name = "member_left"
		}
		event = map[string]any{"event": name, "user": target, "by": r.user}
		// The last admin to go hands the role to the oldest member, in
		// the same event.
		if promoted = roles.successor(target); promoted != "" {
			event["promoted"] = promoted
		}
	}
	seq, err := sh.appendSystem(r, ch, r.user, in.ID, event, extra)
	if err != nil {
		return err
	}
	// The retry finds the event and completes whatever of this fails.
	switch {
	case r.in.Type == proto.TypeGroupRole:
		err = sh.svc.store.SetRole(ctx, r.chat, target, role)
	case add:
		err = sh.applyMembership(ctx, ch, target, true, seq)
	default:
		// The successor first: a failure in between leaves two admins
		// for the retry to complete, never none.
		if promoted != "" {
			err = sh.svc.store.SetRole(ctx, r.chat, promoted, record.RoleAdmin)
		}
		if err == nil {
			err = sh.applyMembership(ctx, ch, target, false, 0)
		}
	}
	if err != nil {
		return err
	}
	return sh.replyOK(r, r.chat, seq)
}

// completeChange completes a retried group change whose event prev is
// stored: the membership or role it made, when the store does not show it
// yet, unless a later change of the same user followed it (then this one
// was applied and undone); and the promotion a leave carried.
func (sh *shard) completeChange(ctx context.Context, ch *seq.Chat[*request], roles groupRoles, prev *record.Message, typ, target string, role record.Role) error {
	later := func(user string, roles bool) (bool, error) {
		return sh.laterChange(ctx, ch.ID, prev.Seq, ch.Head, user, roles)
	}
	switch typ {
	case proto.TypeGroupRole:
		if m, ok := roles[target]; !ok || m.Role == role {
			return nil
		}
		if l, err := later(target, true); err != nil || l {
			return err
		}
		return sh.svc.store.SetRole(ctx, ch.ID, target, role)
	case proto.TypeGroupAdd:
		if ch.IsMember(target) {
			return nil
		}
		if l, err := later(target, false); err != nil || l {
			return err
		}
		return sh.applyMembership(ctx, ch, target, true, prev.Seq)
	}
	// A leave's promotion first, as when it was made.
	ev, _ := parseGroupEvent(prev)
	if p := ev.Promoted; p != "" && roles[p].Role == record.RoleMember && ch.IsMember(p) {
		l, err := later(p, true)
		if err != nil {
			return err
		}
		if !l {
			if err := sh.svc.store.SetRole(ctx, ch.ID, p, record.RoleAdmin); err != nil {
				return err
			}
		}
	}
	if !ch.IsMember(target) {
		return nil
	}
	if l, err := later(target, false); err != nil || l {
		return err
	}
	return sh.applyMembership(ctx, ch, target, false, 0)
}

// laterChangeScan bounds how many messages after a retried group change's
// event laterChange reads. A retry that late is taken as finding its
// change applied: a change is applied right after its event is stored, and
// a client retries a failed one at once, not thousands of messages later.
const laterChangeScan = 10 * record.MaxPageLimit

// laterChange reports whether a change of target lies in chat's seqs
// after..head: a membership event about target, and with roles also a
// role_changed about target or a leave that promoted target (what undoes a
// role change, but not a membership change).
func (sh *shard) laterChange(ctx context.Context, chat string, after, head uint64, target string, roles bool) (bool, error) {
	if after >= head {
		return false, nil
	}
	if head-after > laterChangeScan {
		return true, nil
	}
	for after < head {
		msgs, err := sh.svc.store.Messages(ctx, chat, record.Page{After: after, Forward: true, Limit: record.MaxPageLimit})
		if err != nil {
			return false, err
		}
		if len(msgs) == 0 {
			return false, nil
		}
		for i := range msgs {
			m := &msgs[i]
			ev, ok := parseGroupEvent(m)
			if !ok || m.Seq > head {
				continue
			}
			switch ev.Event {
			case "member_added", "member_removed", "member_left":
				if ev.User == target || roles && ev.Promoted == target {
					return true, nil
				}
			case "role_changed":
				if roles && ev.User == target {
					return true, nil
				}
			}
		}
		after = msgs[len(msgs)-1].Seq
	}
	return false, nil
}

// groupEvent is the body of a group's system message.
type groupEvent struct {
	Event    string `json:"event"`
	User     string `json:"user"`
	Role     string `json:"role"`     // role_changed
	Promoted string `json:"promoted"` // member_left: the new admin
}

// parseGroupEvent parses a system message's body; ok is false for any
// other message.
func parseGroupEvent(m *record.Message) (ev groupEvent, ok bool) {
	if m.Kind != record.MsgSystem || json.Unmarshal([]byte(m.Body), &ev) != nil {
		return groupEvent{}, false
	}
	return ev, true
}

// isChangeEvent reports whether m is the event the group change typ of
// target stores (group_add: member_added; group_role: role_changed to
// role; otherwise member_removed or member_left).
func isChangeEvent(m *record.Message, typ, target string, role record.Role) bool {
	ev, ok := parseGroupEvent(m)
	if !ok || ev.User != target {
		return false
	}
	switch typ {
	case proto.TypeGroupAdd:
		return ev.Event == "member_added"
	case proto.TypeGroupRole:
		return ev.Event == "role_changed" && ev.Role == role.String()
	}
	return ev.Event == "member_removed" || ev.Event == "member_left"
}

// applyMembership adds target (as a member, joined at seq joined) to the
// chat, or removes it, in the store and the core's state. Both are
// idempotent.
func (sh *shard) applyMembership(ctx context.Context, ch *seq.Chat[*request], target string, add bool, joined uint64) error {
	if add {
		if err := sh.svc.store.AddMember(ctx, ch.ID, record.Member{User: target, Role: record.RoleMember, Joined: joined}); err != nil {
			sh.failAll(sh.core.Drop(ch.ID))
			return err
		}
		ch.AddMember(target)
		return nil
	}
	if err := sh.svc.store.RemoveMember(ctx, ch.ID, target); err != nil {
		sh.failAll(sh.core.Drop(ch.ID))
		return err
	}
	ch.RemoveMember(target)
	return nil
}

// ack records a device's delivery cursor and sends cumulative "delivered"
// receipts to the senders of the newly covered messages.
func (sh *shard) ack(ctx context.Context, r *request) error {
	ch, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	res, err := sh.core.Ack(sh.acked[:0], r.chat, r.user, r.device, r.in.Seq)
	if err != nil {
		return sh.clientError(r, err)
	}
	if res.To == res.From {
		return nil
	}
	sh.svc.marks.Add(record.Mark{Kind: record.MarkCursor, User: r.user, Device: r.device, ChatID: r.chat, Seq: res.To})
	// The newly covered messages: usually the few just delivered, still in
	// the core's memory. Else from the store: seqs are dense, so the page
	// below To+1 of this size is exactly the newly covered range (its
	// newest 200 when the ack covers more).
	msgs := res.Covered
	if res.Complete {
		sh.acked = msgs
		defer clear(sh.acked) // drop the sender strings
	} else if msgs, err = sh.svc.store.Messages(ctx, r.chat, record.Page{Before: res.To + 1, Limit: int(min(res.To-res.From, record.MaxPageLimit))}); err != nil {
		return err
	}
	sh.svc.observeDelivered(r, res.From, msgs)
	var senders []string
	for _, m := range msgs {
		// A sender no longer in the group gets nothing of it after its
		// removal, receipts included.
		if m.Seq > res.From && m.Kind == record.MsgText && m.Sender != r.user && !slices.Contains(senders, m.Sender) && ch.IsMember(m.Sender) {
			senders = append(senders, m.Sender)
		}
	}
	if len(senders) == 0 {
		return nil
	}
	sh.scratch = proto.AppendReceipt(sh.scratch[:0], r.chat, r.user, r.device, res.To)
	receiptsSent.Add(sh.svc.deliverToUsers(senders, sh.scratch, nil, &sh.fan))
	return nil
}

// read raises the user's read marker (written by the marks writer).
func (sh *shard) read(ctx context.Context, r *request) error {
	ch, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	if !ch.Exists || !ch.IsMember(r.user) {
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	}
	sh.svc.marks.Add(record.Mark{Kind: record.MarkRead, User: r.user, ChatID: r.chat, Seq: min(r.in.Seq, ch.Head)})
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
