package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/wsclient"
)

// connect dials, authenticates and reads the hello frame.
func (c *Client) connect(ctx context.Context) (*wsclient.Conn, Hello, error) {
	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		t, err := c.cfg.TokenFunc(ctx)
		if err != nil {
			return nil, Hello{}, fmt.Errorf("cannot get token: %w", err)
		}
		token = t
	}
	c.mu.Lock()
	c.token, c.tokenAt = token, time.Now()
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	d := wsclient.Dialer{URL: c.URL(), TokenInQuery: c.cfg.TokenInQuery, Timeout: c.cfg.DialTimeout,
		WriteTimeout: c.cfg.WriteTimeout, MaxMessage: c.cfg.MaxFrame, ReadBuffer: 4096, Observe: c.cfg.Observe}
	cn, err := d.Dial(dctx, token, c.cfg.Device, nil)
	if err != nil {
		c.nextURL()
		return nil, Hello{}, err
	}
	stop := context.AfterFunc(dctx, func() { _ = cn.Drop() })
	_ = cn.SetReadDeadline(time.Now().Add(c.cfg.DialTimeout))
	b, err := cn.ReadMessage()
	stopped := stop()
	if err == nil && !stopped {
		err = dctx.Err()
	}
	if err != nil {
		cn.CloseWith(proto.CloseNormal, "")
		if errors.Is(err, ErrProtocol) {
			return nil, Hello{}, err
		}
		var ce *CloseError
		if errors.As(err, &ce) {
			return nil, Hello{}, ce
		}
		return nil, Hello{}, fmt.Errorf("cannot read hello: %w", err)
	}
	f, err := decodeServerFrame(b)
	if err == nil && f.Type == proto.TypeError {
		err = f.err()
	} else if err == nil && f.Type != proto.TypeHello {
		err = fmt.Errorf("%w: first frame is %q, want hello", ErrProtocol, f.Type)
	}
	if err != nil {
		cn.CloseWith(proto.CloseNormal, "")
		return nil, Hello{}, fmt.Errorf("cannot read hello: %w", err)
	}
	h := Hello{Protocol: f.Protocol, User: f.User, Device: f.Device, Session: f.Session,
		Heartbeat: time.Duration(f.HeartbeatMS) * time.Millisecond}
	if h.Heartbeat > 0 {
		cn.SetReadIdle(3 * h.Heartbeat)
	} else {
		_ = cn.SetReadDeadline(time.Time{})
	}
	return cn, h, nil
}

// nextURL moves to the next of Config.URL and Config.Fallbacks after a
// failed dial.
func (c *Client) nextURL() {
	if len(c.cfg.Fallbacks) == 0 {
		return
	}
	all := append([]string{c.cfg.URL}, c.cfg.Fallbacks...)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, u := range all {
		if u == c.url {
			c.url = all[(i+1)%len(all)]
			return
		}
	}
	c.url = all[0]
}

// writeSync sends the sync frame on a new connection, before anything
// else: the positions handed to the app per chat. It returns the sync's
// request id.
func (c *Client) writeSync(cn *wsclient.Conn) (string, error) {
	id := NewRequestID()
	b, err := json.Marshal(proto.Inbound{Type: proto.TypeSync, ID: id, Chats: c.ho.handedPositions()})
	if err != nil {
		return "", fmt.Errorf("cannot encode sync frame: %w", err)
	}
	if err := cn.WriteText(b); err != nil {
		return "", fmt.Errorf("cannot send sync: %w", err)
	}
	return id, nil
}

// session is one connection with its hello and sync.
type session struct {
	cn     *wsclient.Conn
	hello  Hello
	gen    uint64
	syncID string
}

// setConn publishes cn (its sync already written) to requests.
func (c *Client) setConn(cn *wsclient.Conn, h Hello, syncID string) session {
	c.mu.Lock()
	c.conn = cn
	c.gen++
	c.hello = h
	s := session{cn: cn, hello: h, gen: c.gen, syncID: syncID}
	close(c.ready)
	c.mu.Unlock()
	c.pushState(State{Kind: StateConnected, Hello: h})
	c.kickRefresh()
	c.log.Info("connected", "user_id", h.User, "device_id", h.Device, "session", h.Session)
	return s
}

// dropConn forgets cn and fails the requests written on it.
func (c *Client) dropConn(cn *wsclient.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != cn {
		return
	}
	c.conn = nil
	c.ready = make(chan struct{})
	if c.synced {
		c.synced = false
		c.syncedCh = make(chan struct{})
	}
	for id, cl := range c.pending {
		if cl.gen == c.gen {
			cl.ch <- result{err: ErrDisconnected}
			delete(c.pending, id)
		}
	}
}

// markSynced records the end of connection gen's catch-up.
func (c *Client) markSynced(gen uint64) {
	c.mu.Lock()
	if gen != c.gen || c.conn == nil || c.synced {
		c.mu.Unlock()
		return
	}
	c.synced = true
	close(c.syncedCh)
	c.stats.Syncs++
	st := State{Kind: StateConnected, Hello: c.hello, Synced: true}
	c.mu.Unlock()
	c.pushState(st)
}

// pushState records st and offers it to States(), discarding the oldest
// queued value when the channel is full.
func (c *Client) pushState(st State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = st
	for {
		select {
		case c.states <- st:
			return
		default:
		}
		select {
		case <-c.states:
		default:
		}
	}
}

// permanent reports whether err means the server refused the session.
func permanent(err error) bool {
	var ce *CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case proto.CloseTokenExpired, proto.CloseAuthFailed, proto.ClosePolicy, proto.CloseReplaced:
			return true
		}
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		return he.Status == 400 || he.Status == 401 || he.Status == 403
	}
	return false
}

// run serves connections and reconnects until Close or a permanent
// refusal.
func (c *Client) run(s session) {
	defer c.wg.Done()
	for {
		err := c.serve(s)
		c.dropConn(s.cn)
		s.cn.CloseWith(proto.CloseNormal, "")
		if c.ctx.Err() != nil {
			return
		}
		var ga *GoawayError
		if errors.As(err, &ga) {
			c.mu.Lock()
			c.stats.Goaways++
			if ga.URL != "" {
				c.url = ga.URL
			}
			c.mu.Unlock()
		}
		c.log.Info("connection lost", "err", err)
		var ok bool
		s, ok, err = c.reconnect(err)
		if !ok {
			if c.ctx.Err() == nil {
				c.stop(err)
			}
			return
		}
	}
}

// goawayDelay is the wait before reconnecting after a goaway: the
// server's hint plus a random spread of up to half of it (at least up to
// b.Min), capped at b.Max.
func goawayDelay(b Backoff, after time.Duration) time.Duration {
	spread := max(after/2, b.Min)
	d := after
	if spread > 0 {
		d += rand.N(spread + 1)
	}
	return min(d, b.Max)
}

// reconnect retries with backoff until a connection is up and its sync
// written. It returns ok = false when the client was closed or the server
// refused the session for good (err says why).
func (c *Client) reconnect(err error) (s session, ok bool, _ error) {
	var ga *GoawayError
	goaway := errors.As(err, &ga)
	for attempt := 0; ; attempt++ {
		if permanent(err) {
			if c.cfg.TokenFunc == nil {
				return session{}, false, err
			}
			tok, terr := c.cfg.TokenFunc(c.ctx)
			c.mu.Lock()
			same := tok == c.token
			c.mu.Unlock()
			if terr != nil || same {
				return session{}, false, err
			}
		}
		c.pushState(State{Kind: StateReconnecting, Err: err, Attempt: attempt + 1})
		delay := jitter(c.cfg.Backoff, attempt)
		if attempt == 0 && goaway {
			delay = goawayDelay(c.cfg.Backoff, ga.RetryAfter)
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return session{}, false, err
		}
		cn, h, cerr := c.connect(c.ctx)
		if cerr == nil {
			id, serr := c.writeSync(cn)
			if serr == nil {
				c.mu.Lock()
				c.stats.Reconnects++ // before the state change, for its observers
				c.mu.Unlock()
				return c.setConn(cn, h, id), true, nil
			}
			cn.CloseWith(proto.CloseNormal, "")
			cerr = serr
		}
		if c.ctx.Err() != nil {
			return session{}, false, cerr
		}
		c.log.Info("reconnect failed", "attempt", attempt+1, "err", cerr)
		err = cerr
	}
}

// stop ends the client for good because of err.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.stopErr = fmt.Errorf("%w: %w", ErrClosed, err)
	c.mu.Unlock()
	c.log.Warn("client stopped: server refused the session", "err", err)
	c.cancel()
}

// errStopping ends serve because the client is closing.
var errStopping = errors.New("client: stopping")

// serve reads frames from s.cn until it fails or the server sends goaway.
func (c *Client) serve(s session) error {
	cn, h := s.cn, s.hello
	connDone := make(chan struct{})
	var hb sync.WaitGroup
	if h.Heartbeat > 0 {
		hb.Add(1)
		go func() {
			defer hb.Done()
			c.heartbeat(cn, h.Heartbeat, connDone)
		}()
	}
	defer func() {
		close(connDone)
		hb.Wait()
	}()
	for {
		b, err := cn.ReadMessage()
		if err != nil {
			return err
		}
		f, err := decodeServerFrame(b)
		if err != nil {
			c.log.Debug("ignoring bad server frame", "err", err)
			continue
		}
		if err := c.dispatch(f, s); err != nil {
			return err
		}
	}
}

// heartbeat sends an application ping whenever nothing was received for
// interval (the server also pings silent connections; either keeps the
// read deadline of 3 intervals from firing on a healthy connection), until
// done.
func (c *Client) heartbeat(cn *wsclient.Conn, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-t.C:
			if time.Since(cn.LastRead()) < interval {
				continue
			}
			b := []byte(`{"type":"ping","id":"hb-` + strconv.Itoa(n) + `"}`)
			if err := cn.WriteText(b); err != nil {
				return
			}
		case <-done:
			return
		}
	}
}

// dispatch routes one frame. It returns errStopping when the client is
// closing and a *GoawayError when the server asks for a reconnect.
func (c *Client) dispatch(f *serverFrame, s session) error {
	switch f.Type {
	case proto.TypeMsg:
		m := f.message()
		return c.toInbox(inEvent{msg: m, own: c.isOwn(m), push: true})
	case proto.TypeSent:
		if err := c.toInbox(inEvent{msg: Message{Chat: f.Chat, Seq: f.Seq}, own: true}); err != nil {
			return err
		}
		c.resolve(f)
	case proto.TypeSynced:
		if f.ID != "" && f.ID == s.syncID {
			return c.toInbox(inEvent{kind: evSynced, gen: s.gen})
		}
		c.log.Debug("ignoring synced frame of another sync", "request_id", f.ID)
	case proto.TypeGoaway:
		return &GoawayError{RetryAfter: time.Duration(f.RetryAfterMS) * time.Millisecond, URL: f.URL}
	case proto.TypeReceipt:
		r := Receipt{Chat: f.Chat, User: f.User, Device: f.Device, Seq: f.Seq, Status: f.Status}
		select {
		case c.receipts <- r:
		default:
			c.mu.Lock()
			c.stats.DroppedReceipts++
			c.mu.Unlock()
		}
	case proto.TypePresence:
		if f.ID != "" && c.resolve(f) {
			return nil
		}
		for _, p := range f.presence() {
			select {
			case c.presence <- p:
			default:
				c.mu.Lock()
				c.stats.DroppedPresence++
				c.mu.Unlock()
			}
		}
	case proto.TypeError:
		if f.ID != "" && f.ID == s.syncID {
			// An older server without sync: catch up from history.
			c.log.Info("server refused sync; resyncing from history", "code", f.Code, "message", f.Message)
			return c.toInbox(inEvent{kind: evSyncRefused, gen: s.gen})
		}
		if f.ID == "" || !c.resolve(f) {
			c.log.Warn("server error", "request_id", f.ID, "code", f.Code, "message", f.Message)
		}
	case proto.TypeOK:
		if f.ID == s.syncID {
			c.log.Debug("sync accepted", "request_id", f.ID)
			return nil
		}
		if !c.resolve(f) {
			c.log.Debug("ignoring unmatched frame", "type", f.Type, "request_id", f.ID)
		}
	case proto.TypeHello:
		c.log.Debug("ignoring extra hello frame")
	default:
		if f.ID == "" || !c.resolve(f) {
			c.log.Debug("ignoring unmatched frame", "type", f.Type, "request_id", f.ID)
		}
	}
	return nil
}

// isOwn reports whether m was sent by this device: a send of this Client
// still in flight (Send returns it), or any text message whose sender is
// this user on this device id (the server never pushes those either; a
// history gap fill may contain them). Own messages advance the position
// but are never handed to the app.
func (c *Client) isOwn(m Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.From != c.hello.User || m.Kind == "system" {
		return false
	}
	if m.Device != "" {
		// Request ids are scoped per device: another device of this user
		// may use an id this Client has in flight.
		return m.Device == c.hello.Device
	}
	return m.RequestID != "" && c.ownSends[m.RequestID] > 0
}

// resolve hands f to the request waiting for f.ID.
func (c *Client) resolve(f *serverFrame) bool {
	c.mu.Lock()
	cl, ok := c.pending[f.ID]
	if ok {
		delete(c.pending, f.ID)
	}
	c.mu.Unlock()
	if ok {
		cl.ch <- result{f: f}
	}
	return ok
}

func (c *Client) toInbox(ev inEvent) error {
	select {
	case c.inbox <- ev:
		return nil
	case <-c.ctx.Done():
		return errStopping
	}
}

// deliverLoop owns the orderer: it hands messages to the app exactly once
// and in order, records positions for acks, and fills gaps from history.
func (c *Client) deliverLoop() {
	defer c.wg.Done()
	o := newOrderer(c.cfg.Resume, c.cfg.FromNow)
	// With FromNow, the first catch-up's messages of chats not resumed are
	// history: acknowledged, not delivered.
	catchingUp := c.cfg.FromNow
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev := <-c.inbox:
			switch ev.kind {
			case evSynced, evSyncRefused:
				catchingUp = false
				if ev.kind == evSyncRefused {
					c.wg.Add(1)
					go c.resyncChats(c.ho.handedPositions())
				}
				c.markSynced(ev.gen)
			default:
				skip := ev.own
				if catchingUp && !skip {
					if _, ok := c.cfg.Resume[ev.msg.Chat]; !ok {
						skip = true
					}
				}
				if !c.add(o, ev.msg, skip, ev.own, ev.push) {
					return
				}
			}
		case fr := <-c.fills:
			if !fr.resync {
				o.filled(fr.chat)
			}
			for _, m := range fr.msgs {
				if !c.add(o, m, c.isOwn(m), false, false) {
					return
				}
			}
			if fr.resync {
				break
			}
			if fr.err != nil && retryable(fr.err) {
				// Disconnected or timed out: wait again (the sync after
				// the reconnect usually fills the gap first).
				o.retryGap(fr.chat, time.Now())
				c.log.Debug("cannot fill gap yet", "chat_id", fr.chat, "err", fr.err)
				break
			}
			if o.cursor(fr.chat)+1 >= fr.before {
				// Filled; a later gap of the chat (if any) is due next.
				c.mu.Lock()
				c.stats.GapsFilled++
				c.mu.Unlock()
				break
			}
			// The server has not got them: skip to the next held message.
			r, skipped := o.skipGap(fr.chat)
			c.mu.Lock()
			c.stats.GapsSkipped++
			c.mu.Unlock()
			if skipped > 0 {
				c.log.Warn("skipping gap in chat", "chat_id", fr.chat, "missing", skipped, "err", fr.err)
			}
			if !c.deliver(o, fr.chat, r, false) {
				return
			}
		case <-timer.C:
		case <-c.ctx.Done():
			return
		}
		now := time.Now()
		gaps, next := o.due(now, c.cfg.GapWait)
		for _, g := range gaps {
			c.wg.Add(1)
			go c.fillGap(g)
		}
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
		}
	}
}

// add passes one arrival through the orderer and delivers what is ready;
// false when the client is closing. own marks this client's sends (not
// counted as duplicates), push a msg frame (a duplicate is a retransmit).
func (c *Client) add(o *orderer, m Message, skip, own, push bool) bool {
	ready, dup, gapOpened := o.add(m, skip, time.Now())
	if (dup && !own) || gapOpened {
		c.mu.Lock()
		if dup {
			c.stats.Duplicates++
			if push {
				c.stats.Retransmits++
			}
		}
		if gapOpened {
			c.stats.Gaps++
		}
		c.mu.Unlock()
	}
	if dup && push && !own {
		// The server pushed it again: our ack may have been lost.
		c.ho.reack(m.Chat)
		c.kickAcks()
	}
	return c.deliver(o, m.Chat, ready, own)
}

// fillGap fetches the messages after < seq < before of a chat.
func (c *Client) fillGap(g gap) {
	defer c.wg.Done()
	msgs, err := c.fetchRange(g.chat, g.after, g.before)
	select {
	case c.fills <- fillResult{chat: g.chat, before: g.before, msgs: msgs, err: err}:
	case <-c.ctx.Done():
	}
}

// resyncChats fetches what was missed while disconnected: for every chat
// of the list whose last seq is past our cursor, the messages after it.
func (c *Client) resyncChats(cursors map[string]uint64) {
	defer c.wg.Done()
	if len(cursors) == 0 {
		return
	}
	chats, err := c.Chats(c.ctx)
	if err != nil {
		c.log.Info("cannot resync after reconnect", "err", err)
		return
	}
	c.mu.Lock()
	c.stats.Resyncs++
	c.mu.Unlock()
	for _, ch := range chats {
		cur, ok := cursors[ch.Chat]
		if !ok || ch.LastSeq <= cur {
			continue
		}
		msgs, err := c.fetchRange(ch.Chat, cur, ch.LastSeq+1)
		if err != nil {
			c.log.Info("cannot resync chat", "chat_id", ch.Chat, "err", err)
		}
		if len(msgs) == 0 {
			continue
		}
		select {
		case c.fills <- fillResult{chat: ch.Chat, msgs: msgs, err: err, resync: true}:
		case <-c.ctx.Done():
			return
		}
	}
}

// fetchRange pages through history for after < seq < before.
func (c *Client) fetchRange(chat string, after, before uint64) ([]Message, error) {
	var msgs []Message
	for after+1 < before {
		limit := min(before-after-1, 200)
		q := HistoryQuery{After: after, Limit: int(limit)}
		first := after == 0
		if first {
			// after 0 is "no after": the newest page. The first page of a
			// chat is the one below seq limit+1.
			q = HistoryQuery{Before: limit + 1, Limit: int(limit)}
		}
		page, more, err := c.History(c.ctx, chat, q)
		if err != nil {
			return msgs, err
		}
		progressed := false
		for _, m := range page {
			if m.Seq > after && m.Seq < before {
				msgs = append(msgs, m)
				after = m.Seq
				progressed = true
			}
		}
		// more of a before page speaks of older messages: none below 1.
		if !progressed || (!first && !more) {
			break
		}
	}
	return msgs, nil
}

// deliver hands ready to the app and records chat's position; quiet when
// the arrival that released ready was this client's own send.
func (c *Client) deliver(o *orderer, chat string, ready []Message, quiet bool) bool {
	for _, m := range ready {
		if !c.ho.put(c.msgs, m, c.ctx.Done()) {
			return false
		}
	}
	c.ho.mark(chat, o.cursor(chat), quiet)
	c.kickAcks()
	return true
}
