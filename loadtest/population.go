package loadtest

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// Population mode: the run side of the model (model.go). Users are conns,
// chats are streams. Sender shards play the model's due messages; a churn
// goroutine takes users offline and back; a reconnect storm drops a share
// of the connections at once. A conn behaves as a reliable client: sends
// stay pending until their sent frame and are written again (same id, so
// the server stores them once) after a reconnect or a retryable error; a
// reconnect syncs from the positions it has.

// popTopology builds the conns and streams of the model.
func (r *run) popTopology() {
	m := r.model
	for u := range r.cfg.Users {
		r.conns = append(r.conns, &conn{idx: u, user: r.cfg.UserPrefix + "-u" + strconv.Itoa(u),
			got: map[int]*rxState{}, state: stConnecting})
	}
	for i, ch := range m.chats {
		s := &stream{idx: i}
		for _, u := range ch.members {
			s.members = append(s.members, r.conns[u])
		}
		if ch.group {
			s.group = true
			s.okCh = make(chan string, 1)
		}
		r.streams = append(r.streams, s)
	}
}

// prepPopulation builds the sender shards' generators (running the
// model's pre-roll) before the start time is set.
func (r *run) prepPopulation() {
	n := max(1, min(4*runtime.GOMAXPROCS(0), len(r.streams)))
	r.gens = make([]*popGen, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { r.gens[i] = r.model.gen(i, n) })
	}
	wg.Wait()
}

// startPopulation starts the sender shards (in senders) and the churn and
// storm goroutines (in r.reconns, ending with r.bg or r.ending).
func (r *run) startPopulation(ctx context.Context, senders *sync.WaitGroup) {
	for _, g := range r.gens {
		senders.Go(func() { r.sendPop(ctx, g) })
	}
	if r.cfg.OfflineShare > 0 {
		ch := r.model.churn()
		r.reconns.Go(func() { r.churnLoop(ch) })
	}
	if r.cfg.StormAt > 0 && r.cfg.StormFraction > 0 {
		r.reconns.Go(func() { r.storm() })
	}
}

// sleepUntil waits until t; false when the run is ending.
func (r *run) sleepUntil(timer *time.Timer, t time.Time) bool {
	if d := time.Until(t); d > 0 {
		timer.Reset(d)
		select {
		case <-timer.C:
		case <-r.bg.Done():
			return false
		}
	}
	return !r.ending.Load()
}

// sendPop plays one shard of the model until the window ends.
func (r *run) sendPop(ctx context.Context, g *popGen) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var frame []byte
	e, ok := g.next()
	for ok {
		due := r.t0.Add(e.at)
		if !due.Before(r.winEnd) {
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		// Every message due by now, then sleep again.
		now := time.Now()
		for ok && !r.t0.Add(e.at).After(now) {
			if due = r.t0.Add(e.at); !due.Before(r.winEnd) {
				return
			}
			r.popSend(r.streams[e.chat], int(e.sender), due.UnixNano(), &frame)
			e, ok = g.next()
		}
	}
}

// popSend sends (or queues, while reconnecting) one message of stream s by
// its member mi. An offline sender sends nothing (counted as skipped).
func (r *run) popSend(s *stream, mi int, due int64, frame *[]byte) {
	c := s.members[mi]
	if s.group && s.chat == "" {
		r.st.count(&r.st.skipped, 1) // the group could not be created
		return
	}
	c.mu.Lock()
	if c.state == stOffline {
		c.mu.Unlock()
		r.st.count(&r.st.skipped, 1)
		return
	}
	k := len(s.senders)
	s.senders = append(s.senders, uint8(mi))
	p := pend{stream: int32(s.idx), k: int32(k), due: due, gen: -1}
	sess := c.cur.Load()
	if sess != nil {
		p.gen = int32(sess.gen)
	}
	c.pending = append(c.pending, p)
	c.mu.Unlock()
	r.st.onSend(due >= r.winStart.UnixNano())
	if sess == nil {
		return // written once the reconnect synced
	}
	*frame = r.appendPopSend((*frame)[:0], s, mi, k, due)
	if err := sess.wc.WriteText(*frame); err != nil && !r.stopping.Load() && !sess.dropped.Load() {
		r.st.err("write")
	}
}

// appendPopSend appends the send frame of message k of s by member mi.
func (r *run) appendPopSend(f []byte, s *stream, mi, k int, due int64) []byte {
	f = append(f, `{"type":"send","id":"`...)
	f = strconv.AppendInt(f, int64(s.idx), 10)
	f = append(f, '.')
	f = strconv.AppendInt(f, int64(k), 10)
	if s.chat != "" {
		f = append(f, `","chat":`...)
		f = proto.AppendString(f, s.chat)
	} else {
		f = append(f, `","to":`...)
		f = proto.AppendString(f, s.members[1-mi].user)
	}
	return r.appendBody(f, due, s.idx, k)
}

// unpend removes the pending send (stream, k) of c and returns its due
// time; found is false when it was not pending (a second sent frame).
func (c *conn) unpend(stream, k int) (due int64, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pending {
		if int(p.stream) == stream && int(p.k) == k {
			c.pending = slices.Delete(c.pending, i, i+1)
			return p.due, true
		}
	}
	return 0, false
}

// flushPending writes every pending send of c not yet written on sess,
// oldest first, in one batch.
func (r *run) flushPending(c *conn, sess *session) {
	c.mu.Lock()
	var todo []pend
	for i := range c.pending {
		if c.pending[i].gen != int32(sess.gen) {
			if c.pending[i].gen >= 0 {
				r.st.count(&r.st.resent, 1)
			}
			c.pending[i].gen = int32(sess.gen)
			todo = append(todo, c.pending[i])
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	var buf []byte
	var ends []int
	for _, p := range todo {
		s := r.streams[p.stream]
		buf = r.appendPopSend(buf, s, memberIndex(s, c), int(p.k), p.due)
		ends = append(ends, len(buf))
	}
	frames := make([][]byte, len(ends))
	start := 0
	for i, e := range ends {
		frames[i], start = buf[start:e], e
	}
	if err := sess.wc.WriteTexts(frames); err != nil && !r.stopping.Load() && !sess.dropped.Load() {
		r.st.err("write")
	}
}

func memberIndex(s *stream, c *conn) int {
	for i, m := range s.members {
		if m == c {
			return i
		}
	}
	return 0
}

// resend writes a pending send again after a retryable error.
func (r *run) resend(c *conn, stream, k int32) {
	c.mu.Lock()
	sess := c.cur.Load()
	var p *pend
	for i := range c.pending {
		if c.pending[i].stream == stream && c.pending[i].k == k {
			p = &c.pending[i]
		}
	}
	if p == nil || sess == nil {
		c.mu.Unlock()
		return // acked meanwhile, or the reconnect writes it
	}
	p.gen = int32(sess.gen)
	due := p.due
	c.mu.Unlock()
	r.st.count(&r.st.resent, 1)
	s := r.streams[stream]
	f := r.appendPopSend(nil, s, memberIndex(s, c), int(k), due)
	if err := sess.wc.WriteText(f); err != nil && !r.stopping.Load() && !sess.dropped.Load() {
		r.st.err("write")
	}
}

// goOffline closes c's connection on purpose (churn).
func (r *run) goOffline(c *conn) {
	c.mu.Lock()
	prev := c.state
	sess := c.sess
	c.state = stOffline
	c.sess = nil
	c.cur.Store(nil)
	c.mu.Unlock()
	if prev == stOnline {
		r.online.Add(-1)
	}
	if sess != nil {
		sess.dropped.Store(true)
		_ = sess.wc.Close()
	}
}

// goOnline starts c's reconnect after delay unless it is online or
// already connecting.
func (r *run) goOnline(c *conn, delay time.Duration) {
	c.mu.Lock()
	if c.state != stOffline {
		c.mu.Unlock()
		return
	}
	c.state = stConnecting
	c.mu.Unlock()
	r.reconns.Go(func() { r.reconnect(c, delay) })
}

// lostSession handles a session that ended without the generator asking
// (server close, read error, goaway): in population mode the user
// reconnects after delay plus jitter; sends queue meanwhile.
func (r *run) lostSession(c *conn, sess *session, delay time.Duration) {
	if r.model == nil || r.stopping.Load() {
		return
	}
	c.mu.Lock()
	if c.sess != sess || c.state == stOffline {
		c.mu.Unlock()
		return
	}
	wasOnline := c.state == stOnline
	c.state = stConnecting
	c.sess = nil
	c.cur.Store(nil)
	c.mu.Unlock()
	sess.dropped.Store(true)
	_ = sess.wc.Drop()
	if wasOnline {
		r.online.Add(-1)
	}
	delay += time.Duration(rand.Int64N(int64(250 * time.Millisecond)))
	r.reconns.Go(func() { r.reconnect(c, delay) })
}

// dropConn drops c's connection as a network failure would (storm) and
// reconnects after delay.
func (r *run) dropConn(c *conn, delay time.Duration) {
	c.mu.Lock()
	if c.state != stOnline {
		c.mu.Unlock()
		return
	}
	sess := c.sess
	c.state = stConnecting
	c.sess = nil
	c.cur.Store(nil)
	c.mu.Unlock()
	r.online.Add(-1)
	sess.dropped.Store(true)
	_ = sess.wc.Drop()
	r.reconns.Go(func() { r.reconnect(c, delay) })
}

// reconnect connects c after delay, retrying with exponential backoff and
// full jitter (250 ms doubling, capped at 5 s), then writes its pending
// sends. It gives up when the run stops or c went offline meanwhile.
func (r *run) reconnect(c *conn, delay time.Duration) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	backoff := 250 * time.Millisecond
	for {
		if delay > 0 {
			timer.Reset(delay)
			select {
			case <-timer.C:
			case <-r.bg.Done():
				return
			}
		}
		c.mu.Lock()
		st := c.state
		c.mu.Unlock()
		if st != stConnecting || r.stopping.Load() {
			return
		}
		if err := r.connect(r.bg, c); err == nil {
			break
		}
		r.st.count(&r.st.reconnectFails, 1)
		delay = time.Duration(rand.Int64N(int64(backoff)))
		backoff = min(2*backoff, 5*time.Second)
	}
	if sess := c.cur.Load(); sess != nil {
		r.st.count(&r.st.reconnects, 1)
		r.flushPending(c, sess)
	}
}

// churnLoop plays the model's presence changes until sending ends.
func (r *run) churnLoop(g *churnGen) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		e, ok := g.next()
		if !ok || !r.sleepUntil(timer, r.t0.Add(e.at)) {
			return
		}
		c := r.conns[e.user]
		if e.offline {
			r.goOffline(c)
		} else {
			r.goOnline(c, 0)
		}
	}
}

// storm drops StormFraction of the connections at StormAt; each
// reconnects after a uniform jitter.
func (r *run) storm() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	if !r.sleepUntil(timer, r.t0.Add(r.cfg.StormAt)) {
		return
	}
	who, delay := stormPlan(r.cfg.Seed, len(r.conns), r.cfg.StormFraction, r.cfg.StormJitter)
	n := 0
	for i, u := range who {
		c := r.conns[u]
		if c.cur.Load() != nil {
			n++
			r.dropConn(c, delay[i])
		}
	}
	r.st.count(&r.st.stormDrops, int64(n))
	r.log.Info("reconnect storm", "dropped", n)
}

// endPopulation stops churn and brings every user back online, so that
// messages to offline users are delivered (and counted) before the
// report; it waits up to Grace for them to connect.
func (r *run) endPopulation(ctx context.Context) {
	r.ending.Store(true)
	for _, c := range r.conns {
		r.goOnline(c, time.Duration(rand.Int64N(int64(time.Second))))
	}
	deadline := time.Now().Add(r.cfg.Grace + r.cfg.DialTimeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if int(r.online.Load()) >= len(r.conns) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.log.Warn("not every user came back online", "online", r.online.Load(), "users", len(r.conns))
}
