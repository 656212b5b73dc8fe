package logic

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
)

var (
	messagesStored   = metrics.NewCounter(`parley_logic_messages_stored_total`)
	messagesDeduped  = metrics.NewCounter(`parley_logic_messages_deduplicated_total`)
	deliveriesQueued = metrics.NewCounter(`parley_logic_deliveries_total`)
	receiptsSent     = metrics.NewCounter(`parley_logic_receipts_total`)
	appendBatchSize  = metrics.NewHistogram(`parley_logic_append_batch_messages`)
)

// chatState is what a shard worker caches about a chat it owns.
type chatState struct {
	chat    record.Chat
	exists  bool     // false for a direct chat not created yet
	lastSeq uint64   // highest durable seq
	tent    uint64   // highest seq assigned in the current batch
	members []string // sorted
	// recent remembers the newest stored messages (without bodies) by
	// seq%recentMsgs, so that an ack of what was just delivered needs no
	// history read. nil until the chat's first send on this node; an entry
	// whose seq does not match is not there (the caller reads the store).
	recent *[recentMsgs]recentMsg
}

// recentMsgs is the size of chatState.recent: acks usually cover the few
// messages delivered since the previous ack.
const recentMsgs = 16

// recentMsg is what an ack needs of a stored message: who sent it, its
// kind and its timestamp.
type recentMsg struct {
	seq    uint64
	ts     int64
	sender string
	kind   record.MsgKind
}

// remember notes a stored message in the recent ring.
func (c *chatState) remember(m *record.Message) {
	if c.recent == nil {
		c.recent = new([recentMsgs]recentMsg)
	}
	c.recent[m.Seq%recentMsgs] = recentMsg{seq: m.Seq, ts: m.TS, sender: m.Sender, kind: m.Kind}
}

// recentRange appends the messages after..upto (bodies empty) to dst from
// the recent ring; ok is false when any of them is not there.
func (c *chatState) recentRange(dst []record.Message, after, upto uint64) (_ []record.Message, ok bool) {
	if c.recent == nil || upto <= after || upto-after > recentMsgs {
		return dst, false
	}
	for seq := after + 1; seq <= upto; seq++ {
		e := &c.recent[seq%recentMsgs]
		if e.seq != seq {
			return dst, false
		}
		dst = append(dst, record.Message{ChatID: c.chat.ID, Seq: seq, Sender: e.sender, TS: e.ts, Kind: e.kind})
	}
	return dst, true
}

func (c *chatState) isMember(user string) bool {
	_, ok := slices.BinarySearch(c.members, user)
	return ok
}

// shard is one chat shard worker: it owns the chats that hash to it and
// handles their mutations one batch at a time. Its fields are used only by
// its own goroutine.
type shard struct {
	svc   *Service
	q     chan *request
	chats map[string]*chatState

	// per-batch state, reused
	pending []pendingSend
	dedup   map[record.DedupKey]int // index into pending
	newDMs  []*chatState
	scratch []byte
	fan     fanoutScratch
	epoch   uint64                                      // the cluster ring epoch the cached chats belong to
	routes  map[routeKey]map[string][]tierlink.PeerUser // fleet: per-batch fan-out routes
	acked   []record.Message                            // ack: the newly covered messages, reused
}

type pendingSend struct {
	r     *request
	cs    *chatState // the chat's state when the send was added (never looked up again)
	msg   record.Message
	dupOf int // -1, or index of the earlier send in this batch with the same key
}

func newShard(s *Service) *shard {
	return &shard{svc: s, q: make(chan *request, s.cfg.ShardQueue), chats: map[string]*chatState{}, dedup: map[record.DedupKey]int{}}
}

func (sh *shard) run(stop <-chan struct{}) {
	batch := make([]*request, 0, sh.svc.cfg.BatchMax)
	for {
		select {
		case r := <-sh.q:
			batch = append(batch[:0], r)
		case <-stop:
			return
		}
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

func (sh *shard) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), sh.svc.cfg.StoreTimeout)
}

// process handles a batch in order. The sends of a batch are appended in
// one store call. Acks and read markers do not wait for it: they can only
// name seqs that are durable already (a client acks or reads what it
// received), so they run at once and the sends around them stay one batch.
// Any other mutation (a group change stores a system message) first
// flushes the sends before it.
func (sh *shard) process(batch []*request) {
	if c := sh.svc.cluster; c != nil {
		// Ownership may have moved and back: what this shard cached about
		// a chat may be stale, so reload from the store.
		if e := c.epoch.Load(); e != sh.epoch {
			clear(sh.chats)
			sh.epoch = e
		}
	}
	for _, r := range batch {
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

// loadChat returns the cached state of chat, loading it from the store.
// A direct chat that does not exist yet gets a state with exists=false.
func (sh *shard) loadChat(ctx context.Context, id string) (*chatState, error) {
	if cs, ok := sh.chats[id]; ok {
		return cs, nil
	}
	st := sh.svc.store
	cs := &chatState{}
	c, err := st.Chat(ctx, id)
	switch {
	case err == nil:
		cs.chat, cs.exists = c, true
	case errors.Is(err, record.ErrNotFound):
		a, b, ok := record.DirectMembers(id)
		if !ok {
			return nil, err
		}
		cs.chat = record.Chat{ID: id, Kind: record.KindDirect}
		cs.members = []string{a, b}
	default:
		return nil, err
	}
	if cs.exists {
		if cs.lastSeq, err = st.LastSeq(ctx, id); err != nil {
			return nil, err
		}
		if cs.chat.Kind == record.KindDirect {
			a, b, _ := record.DirectMembers(id)
			cs.members = []string{a, b}
		} else if cs.members, err = st.Members(ctx, id); err != nil {
			return nil, err
		}
		slices.Sort(cs.members)
	}
	cs.tent = cs.lastSeq
	if len(sh.chats) >= max(1, sh.svc.cfg.ChatCacheSize/len(sh.svc.shards)) {
		for k, c := range sh.chats { // evict an arbitrary entry without pending sends
			if c.tent == c.lastSeq && c.exists {
				delete(sh.chats, k)
				break
			}
		}
	}
	sh.chats[id] = cs
	return cs, nil
}

func (sh *shard) fail(r *request, err error) {
	sh.svc.requestDone(r, err)
	sh.svc.replyErr(r.out, r.in.ID, err)
}

// addSend validates a send and adds it to the pending batch.
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
	ctx, cancel := sh.ctx()
	defer cancel()
	cs, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		sh.fail(r, err)
		return
	}
	if !cs.isMember(r.user) {
		sh.fail(r, proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat))
		return
	}
	key := record.DedupKey{ChatID: r.chat, Sender: r.user, RequestID: in.ID}
	if i, ok := sh.dedup[key]; ok {
		sh.pending = append(sh.pending, pendingSend{r: r, dupOf: i})
		return
	}
	if cs.exists {
		orig, err := sh.svc.store.LookupDedup(ctx, key)
		if err == nil {
			messagesDeduped.Inc()
			sh.replySent(r, orig.ChatID, orig.Seq, orig.TS)
			// The first attempt may have been stored without being fanned
			// out (its append reported an error, or the node died between
			// the write and the fan-out): offer it again. Sessions that
			// have it ignore it.
			if r.from != nil {
				sh.svc.ownSent(r.from, &orig)
			}
			sh.fanout(cs, &orig, r.from)
			return
		}
		if !errors.Is(err, record.ErrNotFound) {
			sh.fail(r, err)
			return
		}
	} else if !slices.Contains(sh.newDMs, cs) {
		sh.newDMs = append(sh.newDMs, cs)
	}
	cs.tent++
	sh.dedup[key] = len(sh.pending)
	sh.pending = append(sh.pending, pendingSend{r: r, cs: cs, dupOf: -1, msg: record.Message{
		ChatID: r.chat, Seq: cs.tent, Sender: r.user, Device: r.device, RequestID: in.ID,
		TS: sh.svc.now().UnixMilli(), Kind: record.MsgText, Body: *in.Body,
	}})
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

// flush makes the pending sends durable, then acknowledges and fans them out.
func (sh *shard) flush() {
	if len(sh.pending) == 0 {
		return
	}
	defer func() {
		clear(sh.pending)
		sh.pending = sh.pending[:0]
		clear(sh.dedup)
		clear(sh.newDMs)
		sh.newDMs = sh.newDMs[:0]
		clear(sh.routes)
	}()
	ctx, cancel := sh.ctx()
	defer cancel()
	err := sh.createDMs(ctx)
	var msgs []record.Message
	if err == nil {
		msgs = make([]record.Message, 0, len(sh.pending))
		for _, p := range sh.pending {
			if p.dupOf < 0 {
				msgs = append(msgs, p.msg)
			}
		}
		err = sh.svc.store.AppendMessages(ctx, msgs)
	}
	if err != nil {
		sh.svc.log.Warn("cannot append messages", "count", len(sh.pending), "err", err)
		for _, p := range sh.pending {
			delete(sh.chats, p.r.chat) // reload seq and members on the next use
			sh.fail(p.r, &proto.Error{Code: proto.CodeUnavailable, Message: "message not stored, retry", RetryAfterMS: 200})
		}
		return
	}
	messagesStored.Add(len(msgs))
	appendBatchSize.Update(float64(len(msgs)))
	sh.markSendersRead(ctx)
	for _, p := range sh.pending {
		cs := p.cs
		if p.dupOf >= 0 {
			orig := sh.pending[p.dupOf].msg
			messagesDeduped.Inc()
			sh.replySent(p.r, orig.ChatID, orig.Seq, orig.TS)
			continue
		}
		if p.msg.Seq > cs.lastSeq {
			cs.lastSeq = p.msg.Seq
			cs.exists = true
		}
		cs.remember(&p.msg)
		sh.replySent(p.r, p.msg.ChatID, p.msg.Seq, p.msg.TS)
		sh.svc.observeSent(p.r)
		if p.r.from != nil {
			sh.svc.ownSent(p.r.from, &p.msg)
		}
		sh.fanout(cs, &p.msg, p.r.from)
	}
}

// markSendersRead raises each sender's read marker to their newest message
// of the batch: your own messages are never unread.
func (sh *shard) markSendersRead(ctx context.Context) {
	type key struct{ user, chat string }
	latest := make(map[key]uint64, 4)
	for _, p := range sh.pending {
		if p.dupOf < 0 {
			k := key{p.msg.Sender, p.msg.ChatID}
			latest[k] = max(latest[k], p.msg.Seq)
		}
	}
	for k, seq := range latest {
		if err := sh.svc.store.SetReadSeq(ctx, k.user, k.chat, seq); err != nil {
			sh.svc.log.Warn("cannot raise read marker", "user_id", k.user, "chat_id", k.chat, "err", err)
		}
	}
}

// createDMs creates the direct chats first used in this batch.
func (sh *shard) createDMs(ctx context.Context) error {
	for _, cs := range sh.newDMs {
		cs.chat.CreatedAt = sh.svc.now().UnixMilli()
		err := sh.svc.store.CreateChat(ctx, cs.chat, cs.members)
		if err != nil && !errors.Is(err, record.ErrConflict) {
			return err
		}
		cs.exists = true
	}
	return nil
}

// fanout offers a stored message to every session of every member except
// the sending session (which got "sent"), and emits a push event for
// members with no session online.
func (sh *shard) fanout(cs *chatState, m *record.Message, skip *session) {
	c := sh.svc.cluster
	if c == nil {
		sh.offerAll(cs.members, m, skip)
		return
	}
	// One directory lookup per chat and batch, not per message.
	k := routeKey{cs.chat.ID, m.Kind == record.MsgText}
	routes, ok := sh.routes[k]
	if !ok {
		routes = c.route(cs.members, k.push)
		if sh.routes == nil {
			sh.routes = map[routeKey]map[string][]tierlink.PeerUser{}
		}
		sh.routes[k] = routes
	}
	sh.scratch = proto.AppendMsg(sh.scratch[:0], m)
	sh.offerRoutes(routes, m, skip)
}

type routeKey struct {
	chat string
	push bool
}

func (sh *shard) offerAll(users []string, m *record.Message, skip *session) {
	sh.scratch = proto.AppendMsg(sh.scratch[:0], m)
	c := sh.svc.cluster
	if c == nil {
		for _, u := range users {
			sh.fan.sessions = sh.svc.offerUser(sh.fan.sessions, u, true, m, sh.scratch, skip)
		}
		return
	}
	sh.offerRoutes(c.route(users, m.Kind == record.MsgText), m, skip)
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

// appendSystem stores a system message in chat now and fans it out.
func (sh *shard) appendSystem(ctx context.Context, cs *chatState, actor, requestID string, event map[string]any, extra []string) (uint64, error) {
	body, err := json.Marshal(event)
	if err != nil {
		return 0, err
	}
	m := record.Message{ChatID: cs.chat.ID, Seq: cs.lastSeq + 1, Sender: actor, RequestID: requestID, TS: sh.svc.now().UnixMilli(), Kind: record.MsgSystem, Body: string(body)}
	if err := sh.svc.store.AppendMessages(ctx, []record.Message{m}); err != nil {
		delete(sh.chats, cs.chat.ID)
		return 0, err
	}
	cs.lastSeq, cs.tent = m.Seq, m.Seq
	cs.remember(&m)
	sh.offerAll(append(slices.Clone(cs.members), extra...), &m, nil)
	return m.Seq, nil
}

func (sh *shard) replyOK(r *request, chat string, seq uint64) {
	sh.scratch = proto.AppendOK(sh.scratch[:0], r.in.ID, chat, seq)
	r.out.reply(sh.scratch)
}

// handleOther handles every chat mutation except send.
func (sh *shard) handleOther(r *request) {
	ctx, cancel := sh.ctx()
	defer cancel()
	var err error
	switch r.in.Type {
	case proto.TypeGroupCreate:
		err = sh.groupCreate(ctx, r)
	case proto.TypeGroupAdd, proto.TypeGroupRemove, proto.TypeGroupLeave:
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
		existing, gerr := sh.svc.store.Chat(ctx, r.chat)
		if gerr != nil {
			return gerr
		}
		if existing.CreatedBy != r.user {
			return proto.Errorf(proto.CodeForbidden, "group id taken")
		}
		sh.replyOK(r, r.chat, 0)
		return nil
	}
	if err != nil {
		return err
	}
	delete(sh.chats, r.chat)
	cs, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	seq, err := sh.appendSystem(ctx, cs, r.user, "", map[string]any{"event": "created", "by": r.user, "name": in.Name, "members": members}, nil)
	if err != nil {
		return err
	}
	sh.replyOK(r, r.chat, seq)
	return nil
}

func (sh *shard) groupChange(ctx context.Context, r *request) error {
	in := &r.in
	kind, _ := record.ParseChatID(r.chat)
	if kind != record.KindGroup {
		return proto.Errorf(proto.CodeForbidden, "membership of a 1-on-1 chat cannot change")
	}
	cs, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	if !cs.isMember(r.user) {
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	}
	target := in.User
	if r.in.Type == proto.TypeGroupLeave {
		target = r.user
	}
	if !record.ValidID(target) {
		return proto.Errorf(proto.CodeBadRequest, "user is missing or not a valid user id")
	}
	add := r.in.Type == proto.TypeGroupAdd
	// The event is stored first, under the request id, and the membership
	// changed after it: a retry after any failure finds its event (dedup)
	// and completes the change, so no change is ever left without its
	// event, and no event is stored twice.
	if in.ID != "" {
		prev, err := sh.svc.store.LookupDedup(ctx, record.DedupKey{ChatID: r.chat, Sender: r.user, RequestID: in.ID})
		switch {
		case err == nil:
			if err := sh.applyMembership(ctx, cs, target, add); err != nil {
				return err
			}
			sh.replyOK(r, r.chat, prev.Seq)
			return nil
		case !errors.Is(err, record.ErrNotFound):
			return err
		}
	}
	var event map[string]any
	var extra []string
	if add {
		if cs.isMember(target) {
			sh.replyOK(r, r.chat, 0)
			return nil
		}
		if len(cs.members) >= record.MaxGroupMembers {
			return proto.Errorf(proto.CodeGroupFull, "group %s has %d members, the limit", r.chat, record.MaxGroupMembers)
		}
		event = map[string]any{"event": "member_added", "user": target, "by": r.user}
		extra = []string{target} // the new member gets the event too
	} else {
		if target != r.user && cs.chat.CreatedBy != r.user {
			return proto.Errorf(proto.CodeForbidden, "only the group's creator can remove members")
		}
		if !cs.isMember(target) {
			sh.replyOK(r, r.chat, 0)
			return nil
		}
		name := "member_removed"
		if target == r.user {
			name = "member_left"
		}
		event = map[string]any{"event": name, "user": target, "by": r.user}
	}
	seq, err := sh.appendSystem(ctx, cs, r.user, in.ID, event, extra)
	if err != nil {
		return err
	}
	if err := sh.applyMembership(ctx, cs, target, add); err != nil {
		return err // the retry finds the event and applies the change
	}
	sh.replyOK(r, r.chat, seq)
	return nil
}

// applyMembership adds target to (or removes it from) the chat in the
// store and the cached state. Both are idempotent.
func (sh *shard) applyMembership(ctx context.Context, cs *chatState, target string, add bool) error {
	i, found := slices.BinarySearch(cs.members, target)
	if add {
		if err := sh.svc.store.AddMember(ctx, cs.chat.ID, target); err != nil {
			delete(sh.chats, cs.chat.ID)
			return err
		}
		if !found {
			cs.members = slices.Insert(cs.members, i, target)
		}
		return nil
	}
	if err := sh.svc.store.RemoveMember(ctx, cs.chat.ID, target); err != nil {
		delete(sh.chats, cs.chat.ID)
		return err
	}
	if found {
		cs.members = slices.Delete(cs.members, i, i+1)
	}
	return nil
}

// ack records a device's delivery cursor and sends cumulative "delivered"
// receipts to the senders of the newly covered messages.
func (sh *shard) ack(ctx context.Context, r *request) error {
	cs, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	if !cs.exists {
		return proto.Errorf(proto.CodeChatNotFound, "no such chat")
	}
	if !cs.isMember(r.user) {
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	}
	seq := r.in.Seq
	if seq == 0 || seq > cs.lastSeq {
		return proto.Errorf(proto.CodeBadRequest, "ack seq %d outside 1..%d", seq, cs.lastSeq)
	}
	st := sh.svc.store
	cur, err := st.DeviceCursor(ctx, r.user, r.device, r.chat)
	if err != nil {
		return err
	}
	if seq <= cur {
		return nil
	}
	if err := st.SetDeviceCursor(ctx, r.user, r.device, r.chat, seq); err != nil {
		return err
	}
	// The newly covered messages: usually the few just delivered, still in
	// the recent ring. Else from the store: seqs are dense, so the page
	// below seq+1 of this size is exactly the newly covered range (its
	// newest 200 when the ack covers more).
	msgs, ok := cs.recentRange(sh.acked[:0], cur, seq)
	if ok {
		sh.acked = msgs
		defer clear(sh.acked) // drop the sender strings
	} else if msgs, err = st.Messages(ctx, r.chat, record.Page{Before: seq + 1, Limit: int(min(seq-cur, record.MaxPageLimit))}); err != nil {
		return err
	}
	sh.svc.observeDelivered(r, cur, msgs)
	var senders []string
	for _, m := range msgs {
		if m.Seq > cur && m.Kind == record.MsgText && m.Sender != r.user && !slices.Contains(senders, m.Sender) {
			senders = append(senders, m.Sender)
		}
	}
	if len(senders) == 0 {
		return nil
	}
	sh.scratch = proto.AppendReceipt(sh.scratch[:0], r.chat, r.user, r.device, seq)
	receiptsSent.Add(sh.svc.deliverToUsers(senders, sh.scratch, nil, &sh.fan))
	return nil
}

func (sh *shard) read(ctx context.Context, r *request) error {
	cs, err := sh.loadChat(ctx, r.chat)
	if err != nil {
		return err
	}
	if !cs.exists || !cs.isMember(r.user) {
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", r.chat)
	}
	return sh.svc.store.SetReadSeq(ctx, r.user, r.chat, min(r.in.Seq, cs.lastSeq))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
