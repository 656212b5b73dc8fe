package logic

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/logic/marks"
)

// Reliable delivery (ACK-ACK) per session.
//
// Every device has a cursor per chat: the highest seq it acked. For each
// session the node tracks, per chat, how far it has pushed (pushed), how far
// the device acked (acked) and the highest seq known to exist (seen). A
// message goes out live only when it is the next one (seq == pushed+1) and
// the window of unacked messages has room; otherwise the session is handed
// to a catch-up run, which reads the missing messages from the store and
// pushes them in order. Pushes not acked within the retransmit timeout are
// pushed again from the acked cursor. Clients drop duplicates by (chat, seq).
//
// Catch-up of a new session starts when the client sends sync (with the
// positions it already has) or, for clients that never do, after a grace
// period, from the device's stored cursors. A device without cursors gets
// the whole history of its chats, oldest first.

var (
	catchupRuns     = metrics.NewCounter(`parley_logic_catchup_runs_total`)
	catchupMessages = metrics.NewCounter(`parley_logic_catchup_messages_total`)
	retransmits     = metrics.NewCounter(`parley_logic_retransmits_total`)
	syncsTotal      = metrics.NewCounter(`parley_logic_syncs_total`)
	pushEvents      = metrics.NewCounter(`parley_logic_push_events_total`)
	pushDropped     = metrics.NewCounter(`parley_logic_push_events_dropped_total`)
	seenRefreshes   = metrics.NewCounter(`parley_logic_seen_refresh_passes_total`)
)

// maxSyncChats bounds the resume state of one sync request.
const maxSyncChats = 10000

// chatDelivery is a session's delivery state for one chat.
type chatDelivery struct {
	pushed uint64    // every seq <= pushed went out on this session (or was the device's own)
	acked  uint64    // the device has every seq <= acked
	seen   uint64    // highest seq known to be stored
	since  time.Time // when the oldest unacked push went out, or acked last advanced
}

// deliveryState is the per-session part guarded by session.dmu.
type deliveryState struct {
	started     bool // catch-up may run (sync received or grace over)
	initialized bool // cursors loaded from the store
	syncID      string
	syncPos     map[string]uint64
	chats       map[string]*chatDelivery
	queued      bool      // a catch-up run is queued or running
	rerun       bool      // work arrived while a run was going
	retryAt     time.Time // a failed catch-up is retried from then (zero: none)
	syncedSent  bool
	closed      bool
	watched     bool // in Service.dwatch.busy
}

// deliveryWatch is what the delivery loop looks at: sessions waiting for
// their sync grace to end, oldest first, and sessions with unacked pushes
// or a catch-up retry due. An idle session is in neither, so the loop's
// cost follows the traffic, not the number of connections.
type deliveryWatch struct {
	mu    sync.Mutex // taken under session.dmu, never the other way round
	grace []*session
	busy  map[*session]struct{}
}

// watchOpen queues a new session for the end of its sync grace.
func (svc *Service) watchOpen(s *session) {
	w := &svc.dwatch
	w.mu.Lock()
	w.grace = append(w.grace, s)
	w.mu.Unlock()
}

// watchLocked makes the loop look at s until it has nothing unacked and
// no retry due. s.dmu must be held.
func (svc *Service) watchLocked(s *session) {
	d := &s.dstate
	if d.watched || d.closed {
		return
	}
	d.watched = true
	w := &svc.dwatch
	w.mu.Lock()
	if w.busy == nil {
		w.busy = map[*session]struct{}{}
	}
	w.busy[s] = struct{}{}
	w.mu.Unlock()
}

func (d *deliveryState) chat(id string) *chatDelivery {
	cd := d.chats[id]
	if cd == nil {
		if d.chats == nil {
			d.chats = map[string]*chatDelivery{}
		}
		cd = &chatDelivery{}
		d.chats[id] = cd
	}
	return cd
}

// pending reports whether the chat has messages to push and window room.
func (cd *chatDelivery) pending(window uint64) bool {
	return cd.pushed < cd.seen && cd.pushed-cd.acked < window
}

// pushLocked sends m to the session, or, for the device's own message,
// only counts it as delivered. s.dmu must be held.
func (s *session) pushLocked(cd *chatDelivery, m *record.Message, frame []byte, now time.Time) {
	if m.Sender == s.user && m.Device == s.device && m.Kind == record.MsgText {
		cd.pushed = m.Seq
		if cd.acked == m.Seq-1 {
			cd.acked = m.Seq
			cd.since = now
		}
		return
	}
	if cd.pushed == cd.acked {
		cd.since = now
	}
	cd.pushed = m.Seq
	s.deliver(frame)
}

// offer hands a freshly stored message to a session (live fan-out). It is
// pushed at once when it is the next one for the session, otherwise a
// catch-up run is scheduled. Called by the chat's shard worker.
func (svc *Service) offer(s *session, m *record.Message, frame []byte) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	d := &s.dstate
	if d.closed {
		return
	}
	// A chat this session did not know at sync time (a new 1-on-1 chat, a
	// group the user was just added to) starts at 0: the device gets the
	// chat from its first message, never a later one first.
	cd := d.chat(m.ChatID)
	cd.seen = max(cd.seen, m.Seq)
	switch {
	case m.Seq <= cd.pushed:
	case d.started && d.initialized && m.Seq == cd.pushed+1 && cd.pushed-cd.acked < svc.window():
		svc.pushLive(s, cd, m, frame)
	default:
		// A gap, a full window (the next ack reschedules) or a session not
		// caught up yet.
		if d.started && cd.pending(svc.window()) {
			svc.scheduleLocked(s)
		}
	}
}

func (svc *Service) pushLive(s *session, cd *chatDelivery, m *record.Message, frame []byte) {
	// Watched before the frame leaves: once the client can see the push,
	// the delivery loop already looks at s.
	svc.watchLocked(s)
	s.pushLocked(cd, m, frame, svc.now())
	svc.observePush(s, m)
	deliveriesQueued.Inc()
}

// ownSent records that the session's device has its own message m (it got
// "sent" for it).
func (svc *Service) ownSent(s *session, m *record.Message) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	d := &s.dstate
	cd := d.chat(m.ChatID)
	cd.seen = max(cd.seen, m.Seq)
	if m.Seq == cd.pushed+1 {
		s.pushLocked(cd, m, nil, svc.now())
		if cd.pushed > cd.acked {
			svc.watchLocked(s)
		}
	} else if d.started && m.Seq > cd.pushed {
		svc.scheduleLocked(s)
	}
}

// ackLocal applies a device's cumulative ack to the session state.
func (svc *Service) ackLocal(s *session, chat string, seq uint64) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	d := &s.dstate
	cd := d.chats[chat]
	if cd == nil || seq <= cd.acked {
		return
	}
	cd.acked = min(seq, max(cd.seen, cd.pushed))
	cd.pushed = max(cd.pushed, cd.acked)
	cd.since = svc.now()
	if d.started && cd.pending(svc.window()) {
		svc.scheduleLocked(s)
	}
}

// ackDevice applies an ack received on session from to every local session
// of its device.
func (svc *Service) ackDevice(from *session, chat string, seq uint64) {
	svc.ackLocal(from, chat, seq)
	var buf [8]*session
	for _, s := range svc.reg.appendSessions(buf[:0], from.user) {
		if s != from && s.device == from.device {
			svc.ackLocal(s, chat, seq)
		}
	}
}

// startSync handles a sync request: remember the positions, answer ok and
// start the catch-up.
func (svc *Service) startSync(s *session, r *request) {
	if len(r.in.Chats) > maxSyncChats {
		svc.rejectRequest(r, proto.Errorf(proto.CodeTooLarge, "sync names %d chats, limit %d", len(r.in.Chats), maxSyncChats))
		return
	}
	for c := range r.in.Chats {
		if _, ok := record.ParseChatID(c); !ok {
			svc.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "sync: %q is not a chat id", truncate(c, 80)))
			return
		}
	}
	syncsTotal.Inc()
	svc.requestDone(r, nil)
	var buf [128]byte
	s.reply(proto.AppendOK(buf[:0], r.in.ID, "", 0))
	s.dmu.Lock()
	defer s.dmu.Unlock()
	d := &s.dstate
	if d.syncPos == nil && !d.initialized {
		d.syncPos = map[string]uint64{}
	}
	for c, seq := range r.in.Chats {
		if !d.initialized {
			// Merged (and dropped) by initDelivery; bounded by maxSyncChats.
			if len(d.syncPos) < maxSyncChats {
				d.syncPos[c] = max(d.syncPos[c], seq)
			}
			continue
		}
		if cd := d.chats[c]; cd != nil && seq > cd.acked {
			cd.acked = min(seq, max(cd.seen, cd.pushed))
			cd.pushed = max(cd.pushed, cd.acked)
		}
	}
	d.syncID, d.syncedSent, d.started = r.in.ID, false, true
	svc.scheduleLocked(s)
}

// scheduleLocked queues a catch-up run for s. s.dmu must be held.
func (svc *Service) scheduleLocked(s *session) {
	d := &s.dstate
	if d.closed {
		return
	}
	if d.queued {
		d.rerun = true
		return
	}
	d.queued = true
	go func() {
		catchupWaiting.Add(1)
		svc.catchupSem <- struct{}{}
		catchupWaiting.Add(-1)
		defer func() { <-svc.catchupSem }()
		svc.runCatchup(s)
	}()
}

// runCatchup pushes whatever the session is missing, chat by chat, page by
// page, within the window, until nothing is left.
func (svc *Service) runCatchup(s *session) {
	catchupRuns.Inc()
	var frame []byte
	window := svc.window()
	// retryLater ends the run after a store failure; the delivery loop
	// starts a new one after catchupRetry.
	retryLater := func() {
		s.dmu.Lock()
		s.dstate.queued = false
		s.dstate.retryAt = svc.now().Add(catchupRetry)
		svc.watchLocked(s)
		s.dmu.Unlock()
	}
	for {
		s.dmu.Lock()
		d := &s.dstate
		if d.closed {
			s.dmu.Unlock()
			return
		}
		needInit := !d.initialized
		s.dmu.Unlock()
		if needInit {
			if err := svc.initDelivery(s); err != nil {
				svc.log.Warn("cannot start delivery catch-up; retrying", "user_id", s.user, "device_id", s.device, "err", err)
				retryLater()
				return
			}
		}
		type job struct {
			chat  string
			after uint64
			limit int
		}
		s.dmu.Lock()
		d.rerun = false
		var jobs []job
		for id, cd := range d.chats {
			if cd.pending(window) {
				room := int(window - (cd.pushed - cd.acked))
				jobs = append(jobs, job{id, cd.pushed, min(room, svc.cfg.CatchupPage)})
			}
		}
		s.dmu.Unlock()
		progress := false
		for _, j := range jobs {
			// Seqs are dense, so the page below after+limit+1 is exactly
			// after+1..after+limit (After 0 would mean "the newest page").
			ctx, cancel := context.WithTimeout(context.Background(), svc.cfg.StoreTimeout)
			msgs, err := svc.store.Messages(ctx, j.chat, record.Page{Before: j.after + uint64(j.limit) + 1, Limit: j.limit})
			cancel()
			if err != nil {
				svc.log.Warn("catch-up read failed; retrying", "user_id", s.user, "chat_id", j.chat, "err", err)
				retryLater()
				return
			}
			s.dmu.Lock()
			if d.closed {
				s.dmu.Unlock()
				return
			}
			cd := d.chats[j.chat]
			now := svc.now()
			for i := range msgs {
				m := &msgs[i]
				if m.Seq <= cd.pushed {
					continue
				}
				if m.Seq != cd.pushed+1 || cd.pushed-cd.acked >= window {
					break
				}
				frame = proto.AppendMsg(frame[:0], m)
				svc.watchLocked(s)
				s.pushLocked(cd, m, frame, now)
				catchupMessages.Inc()
				progress = true
			}
			if n := len(msgs); n > 0 {
				cd.seen = max(cd.seen, msgs[n-1].Seq)
			}
			s.dmu.Unlock()
		}
		s.dmu.Lock()
		more := d.rerun
		for _, cd := range d.chats {
			if cd.pending(window) {
				more = true
				break
			}
		}
		if more && !progress && !d.rerun && len(jobs) > 0 {
			// The store did not give the next seq (should not happen: seqs
			// are dense). Do not spin; try again later.
			s.dmu.Unlock()
			svc.log.Warn("catch-up made no progress; retrying", "user_id", s.user, "device_id", s.device)
			retryLater()
			return
		}
		if !more {
			d.queued = false
			caughtUp := true
			for _, cd := range d.chats {
				caughtUp = caughtUp && cd.pushed >= cd.seen
			}
			if d.started && !d.syncedSent && caughtUp {
				d.syncedSent = true
				var buf [96]byte
				s.deliver(proto.AppendSynced(buf[:0], d.syncID))
			}
			s.dmu.Unlock()
			return
		}
		s.dmu.Unlock()
	}
}

// catchupRetry is the pause before a catch-up that failed on the store is
// tried again.
const catchupRetry = time.Second

// initDelivery loads the device's cursors and chat list, merges the sync
// positions, persists them as cursors, and replays the stored delivery
// receipts of the user's chats to this session.
func (svc *Service) initDelivery(s *session) error {
	ctx, cancel := context.WithTimeout(context.Background(), 4*svc.cfg.StoreTimeout)
	defer cancel()
	entries, err := svc.store.UserChats(ctx, s.user)
	if err != nil {
		return err
	}
	cursors := make([]uint64, len(entries))
	for i, e := range entries {
		// An ack this node has not written yet, read before the store as
		// well as after (see chatCursors).
		held := svc.marks.Get(record.MarkCursor, s.user, s.device, e.Chat.ID)
		if cursors[i], err = svc.store.DeviceCursor(ctx, s.user, s.device, e.Chat.ID); err != nil {
			return err
		}
		cursors[i] = max(cursors[i], held, svc.marks.Get(record.MarkCursor, s.user, s.device, e.Chat.ID))
	}
	type raise struct {
		chat string
		seq  uint64
	}
	var raises []raise
	s.dmu.Lock()
	d := &s.dstate
	for i, e := range entries {
		cd := d.chat(e.Chat.ID)
		base := min(max(cursors[i], d.syncPos[e.Chat.ID]), e.LastSeq)
		if base > cursors[i] {
			raises = append(raises, raise{e.Chat.ID, base})
		}
		cd.acked = max(cd.acked, base)
		cd.pushed = max(cd.pushed, cd.acked)
		cd.seen = max(cd.seen, e.LastSeq)
		cd.since = svc.now()
	}
	d.initialized = true
	d.syncPos = nil
	s.dmu.Unlock()
	for _, r := range raises {
		svc.marks.Add(record.Mark{Kind: record.MarkCursor, User: s.user, Device: s.device, ChatID: r.chat, Seq: r.seq})
	}
	// Receipts that reached the store while the user was away.
	var buf []byte
	for _, e := range entries {
		cs, err := svc.chatCursors(ctx, e.Chat.ID)
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.User == s.user || c.Seq == 0 {
				continue
			}
			buf = proto.AppendReceipt(buf[:0], e.Chat.ID, c.User, c.Device, c.Seq)
			s.deliver(buf)
		}
	}
	return nil
}

// chatCursors returns the device cursors of a chat: the store's, raised by
// the acks this node has not written yet. The marks writer is read before
// the store as well as after: a cursor whose write ends between the two
// reads is gone from the writer yet missing from what the store returned.
func (svc *Service) chatCursors(ctx context.Context, chat string) ([]record.DeviceCursor, error) {
	held := svc.marks.ChatCursors(chat, nil)
	cs, err := svc.store.ChatCursors(ctx, chat)
	if err != nil {
		return nil, err
	}
	for _, h := range held {
		cs = marks.RaiseCursor(cs, h)
	}
	return svc.marks.ChatCursors(chat, cs), nil
}

func (svc *Service) window() uint64 { return uint64(svc.cfg.DeliveryWindow) }

// deliveryLoop starts catch-up for sessions that never sent sync and
// retransmits pushes that were not acked in time. It visits only the
// sessions in svc.dwatch, never every session.
func (svc *Service) deliveryLoop(stop <-chan struct{}) {
	defer trackService(svc)() // queue-depth gauges read svc while it runs
	tick := max(min(svc.cfg.RetransmitTimeout, svc.cfg.SyncGrace)/4, 20*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	var due, busy []*session
	var lastSweep time.Time
	w := &svc.dwatch
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := svc.now()
		if now.Sub(lastSweep) > 10*time.Second {
			svc.sendLimit.sweep(now)
			lastSweep = now
		}
		w.mu.Lock()
		n := 0
		for n < len(w.grace) && now.Sub(w.grace[n].opened) >= svc.cfg.SyncGrace {
			n++
		}
		due = append(due[:0], w.grace[:n]...)
		clear(w.grace[:n])
		w.grace = w.grace[n:]
		for s := range w.busy {
			busy = append(busy, s)
		}
		w.mu.Unlock()
		for _, s := range due {
			s.dmu.Lock()
			if d := &s.dstate; !d.started && !d.closed {
				d.started = true
				svc.scheduleLocked(s)
			}
			s.dmu.Unlock()
		}
		for _, s := range busy {
			s.dmu.Lock()
			d := &s.dstate
			if !d.retryAt.IsZero() && !now.Before(d.retryAt) {
				d.retryAt = time.Time{}
				svc.scheduleLocked(s)
			}
			outstanding := !d.retryAt.IsZero()
			for _, cd := range d.chats {
				if cd.pushed > cd.acked && now.Sub(cd.since) >= svc.cfg.RetransmitTimeout {
					retransmits.Inc()
					cd.pushed, cd.since = cd.acked, now
					svc.scheduleLocked(s)
				}
				outstanding = outstanding || cd.pushed > cd.acked
			}
			if d.closed || !outstanding {
				// A catch-up run (queued) watches s again when it pushes.
				d.watched = false
				w.mu.Lock()
				delete(w.busy, s)
				w.mu.Unlock()
			}
			s.dmu.Unlock()
		}
		clear(due)
		clear(busy)
		busy = busy[:0]
	}
}

// closeDelivery stops delivery to a closed session.
func (s *session) closeDelivery() {
	s.dmu.Lock()
	s.dstate.closed = true
	s.dmu.Unlock()
}

// PushEvent tells the push notifier that a recipient with no online device
// has a new message. Fleets send these to Kafka (topic message_events).
type PushEvent = record.PushEvent

// Notifier receives push events. Notify must not block for long; the logic
// tier calls it from one goroutine and drops events when it falls behind.
type Notifier interface {
	Notify(ctx context.Context, ev PushEvent) error
}

// queuePush hands a push event to the notifier goroutine without blocking.
func (svc *Service) queuePush(ev PushEvent) {
	select {
	case svc.pushQ <- ev:
		pushEvents.Inc()
	default:
		pushDropped.Inc()
	}
}

// pushLoop hands push events to the notifier, one at a time, until stop
// closes; each call is bounded by the store timeout under base.
func (svc *Service) pushLoop(base context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case ev := <-svc.pushQ:
			nb := svc.notifier.Load()
			if nb == nil || nb.Notifier == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(base, svc.cfg.StoreTimeout)
			if err := nb.Notify(ctx, ev); err != nil {
				svc.log.Warn("push notifier failed", "user_id", ev.Recipient, "chat_id", ev.ChatID, "seq", ev.Seq, "err", err)
			}
			cancel()
		}
	}
}

// preview cuts a text to at most 100 bytes on a rune boundary.
func preview(s string) string {
	if len(s) <= 100 {
		return s
	}
	i := 100
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}

// goawayAll asks every client to reconnect after a jittered delay, so a
// restarting node does not get every client back at the same instant.
//
// It returns once the goaways are written to the connection nodes, or
// after wait.
func (svc *Service) goawayAll(spread, wait time.Duration) {
	var buf [96]byte
	links := map[*link]bool{}
	for _, s := range svc.reg.appendAll(nil) {
		ms := int64(250 + rand.N(max(spread, time.Millisecond)).Milliseconds())
		s.deliver(proto.AppendGoaway(buf[:0], ms, ""))
		links[s.link] = true
	}
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for l := range links {
		select {
		case <-l.flushed():
		case <-timeout.C:
			return
		}
	}
}

// refreshAllSeen re-reads, for every local session, the newest seq of each
// of its chats and catches the session up where it lags. It is the safety
// net for live fan-outs lost in a fleet (a peer link that dropped with
// frames queued, a ring change in flight): without it such a message would
// wait for the chat's next message or a reconnect. Passes are coalesced,
// start after a short settle delay (seenSettle) and read at a bounded
// pace (seenPerSecond sessions a second). A pass is a background goroutine
// of the Service: it ends, its own chat-list reads done, when Run stops
// (catch-ups it scheduled may still run).
func (svc *Service) refreshAllSeen() {
	if !svc.seenRefresh.CompareAndSwap(false, true) {
		svc.seenAgain.Store(true)
		return
	}
	if !svc.background(svc.refreshSeenPasses) {
		svc.seenRefresh.Store(false)
	}
}

// Pacing of refreshAllSeen.
const (
	seenSettle    = time.Second // let the ring settle and in-flight frames land
	seenPerSecond = 2000        // sessions re-read per second
)

// refreshSeenPasses runs refreshAllSeen's passes until none is asked for
// or Run stops.
func (svc *Service) refreshSeenPasses() {
	for {
		settle := time.NewTimer(seenSettle)
		select {
		case <-settle.C:
		case <-svc.quit:
			settle.Stop()
			return
		}
		svc.seenAgain.Store(false)
		if !svc.refreshSeenPass() {
			return
		}
		seenRefreshes.Inc()
		if svc.seenAgain.Load() {
			continue
		}
		svc.seenRefresh.Store(false)
		// A trigger that came between the check and the store saw a
		// pass running and only set seenAgain: take it over.
		if svc.seenAgain.Load() && svc.seenRefresh.CompareAndSwap(false, true) {
			continue
		}
		return
	}
}

// refreshSeenPass re-reads every local session's chats once, at most
// catchupSem's size at a time, and waits for the reads; false when Run
// stopped it.
func (svc *Service) refreshSeenPass() bool {
	var reads sync.WaitGroup
	defer reads.Wait()
	tick := time.NewTicker(time.Second / seenPerSecond)
	defer tick.Stop()
	for _, s := range svc.reg.appendAll(nil) {
		select {
		case <-tick.C:
		case <-svc.quit:
			return false
		}
		select {
		case svc.catchupSem <- struct{}{}:
		case <-svc.quit:
			return false
		}
		reads.Go(func() {
			defer func() { <-svc.catchupSem }()
			svc.refreshSeen(s)
		})
	}
	return true
}

// refreshSeen raises the session's known newest seq per chat from the store
// and schedules a catch-up where messages are missing.
func (svc *Service) refreshSeen(s *session) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*svc.cfg.StoreTimeout)
	defer cancel()
	entries, err := svc.store.UserChats(ctx, s.user)
	if err != nil {
		svc.log.Debug("cannot refresh a session's chats", "user_id", s.user, "err", err)
		return
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	d := &s.dstate
	if d.closed || !d.initialized {
		return // initDelivery reads the same list when it runs
	}
	lagging := false
	for _, e := range entries {
		cd := d.chat(e.Chat.ID)
		cd.seen = max(cd.seen, e.LastSeq)
		lagging = lagging || cd.pending(svc.window())
	}
	if lagging && d.started {
		svc.scheduleLocked(s)
	}
}
