package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// connect dials, authenticates and reads the hello frame.
func (c *Client) connect(ctx context.Context) (*wsConn, Hello, error) {
	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		t, err := c.cfg.TokenFunc(ctx)
		if err != nil {
			return nil, Hello{}, fmt.Errorf("cannot get token: %w", err)
		}
		token = t
	}
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	cn, err := dialWS(dctx, c.cfg.URL, token, c.cfg.TokenInQuery, c.cfg.Device,
		c.cfg.DialTimeout, c.cfg.MaxFrame, c.cfg.WriteTimeout)
	if err != nil {
		return nil, Hello{}, err
	}
	stop := context.AfterFunc(dctx, func() { _ = cn.nc.Close() })
	_ = cn.nc.SetReadDeadline(time.Now().Add(c.cfg.DialTimeout))
	b, err := cn.read()
	stopped := stop()
	if err == nil && !stopped {
		err = dctx.Err()
	}
	if err != nil {
		cn.closeWith(proto.CloseNormal, "")
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
		cn.closeWith(proto.CloseNormal, "")
		return nil, Hello{}, fmt.Errorf("cannot read hello: %w", err)
	}
	h := Hello{Protocol: f.Protocol, User: f.User, Device: f.Device, Session: f.Session,
		Heartbeat: time.Duration(f.HeartbeatMS) * time.Millisecond}
	if h.Heartbeat > 0 {
		cn.readIdle = 3 * h.Heartbeat
	} else {
		_ = cn.nc.SetReadDeadline(time.Time{})
	}
	return cn, h, nil
}

func (c *Client) setConn(cn *wsConn, h Hello) {
	c.mu.Lock()
	c.conn = cn
	c.gen++
	c.hello = h
	close(c.ready)
	c.mu.Unlock()
	c.pushState(State{Kind: StateConnected, Hello: h})
	c.log.Info("connected", "user_id", h.User, "device_id", h.Device, "session", h.Session)
}

// dropConn forgets cn and fails the requests written on it.
func (c *Client) dropConn(cn *wsConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != cn {
		return
	}
	c.conn = nil
	c.ready = make(chan struct{})
	for id, cl := range c.pending {
		if cl.gen == c.gen {
			cl.ch <- result{err: ErrDisconnected}
			delete(c.pending, id)
		}
	}
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
func (c *Client) run(cn *wsConn) {
	defer c.wg.Done()
	for {
		err := c.serve(cn)
		c.dropConn(cn)
		cn.closeWith(proto.CloseNormal, "")
		if c.ctx.Err() != nil {
			return
		}
		c.log.Info("connection lost", "err", err)
		var h Hello
		cn, h, err = c.reconnect(err)
		if cn == nil {
			if c.ctx.Err() == nil {
				c.stop(err)
			}
			return
		}
		c.mu.Lock()
		c.stats.Reconnects++
		c.mu.Unlock()
		c.setConn(cn, h)
		select {
		case c.resync <- struct{}{}:
		default: // one is pending already
		}
	}
}

// reconnect retries with backoff. It returns a nil conn when the client
// was closed or the server refused the session for good (err says why).
func (c *Client) reconnect(err error) (*wsConn, Hello, error) {
	for attempt := 0; ; attempt++ {
		if permanent(err) {
			if c.cfg.TokenFunc == nil {
				return nil, Hello{}, err
			}
			tok, terr := c.cfg.TokenFunc(c.ctx)
			c.mu.Lock()
			same := tok == c.token
			c.mu.Unlock()
			if terr != nil || same {
				return nil, Hello{}, err
			}
		}
		c.pushState(State{Kind: StateReconnecting, Err: err, Attempt: attempt + 1})
		t := time.NewTimer(jitter(c.cfg.Backoff, attempt))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, Hello{}, err
		}
		cn, h, cerr := c.connect(c.ctx)
		if cerr == nil {
			return cn, h, nil
		}
		if c.ctx.Err() != nil {
			return nil, Hello{}, cerr
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

// serve reads frames from cn until it fails.
func (c *Client) serve(cn *wsConn) error {
	c.mu.Lock()
	h := c.hello
	c.mu.Unlock()
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
		b, err := cn.read()
		if err != nil {
			return err
		}
		f, err := decodeServerFrame(b)
		if err != nil {
			c.log.Debug("ignoring bad server frame", "err", err)
			continue
		}
		if !c.dispatch(f, h) {
			return ErrClosed
		}
	}
}

// heartbeat sends an application ping whenever nothing was received for
// interval (the server also pings silent connections; either keeps the
// read deadline of 3 intervals from firing on a healthy connection), until
// done.
func (c *Client) heartbeat(cn *wsConn, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-t.C:
			if time.Since(time.Unix(0, cn.lastRead.Load())) < interval {
				continue
			}
			b := []byte(`{"type":"ping","id":"hb-` + strconv.Itoa(n) + `"}`)
			if err := cn.writeText(b); err != nil {
				return
			}
		case <-done:
			return
		}
	}
}

// dispatch routes one frame; it returns false when the client is closing.
func (c *Client) dispatch(f *serverFrame, h Hello) bool {
	switch f.Type {
	case proto.TypeMsg:
		own := h.Device != "" && f.From == h.User && f.Device == h.Device
		return c.toInbox(inEvent{msg: f.message(), own: own})
	case proto.TypeSent:
		if !c.toInbox(inEvent{msg: Message{Chat: f.Chat, Seq: f.Seq}, own: true}) {
			return false
		}
		c.resolve(f)
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
			return true
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
		if f.ID == "" || !c.resolve(f) {
			c.log.Warn("server error", "request_id", f.ID, "code", f.Code, "message", f.Message)
		}
	case proto.TypeHello:
		c.log.Debug("ignoring extra hello frame")
	default:
		if f.ID == "" || !c.resolve(f) {
			c.log.Debug("ignoring unmatched frame", "type", f.Type, "request_id", f.ID)
		}
	}
	return true
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

func (c *Client) toInbox(ev inEvent) bool {
	select {
	case c.inbox <- ev:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// deliverLoop owns the orderer: it hands messages to the app in order,
// acks them, and fills gaps from history.
func (c *Client) deliverLoop() {
	defer c.wg.Done()
	o := newOrderer()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case ev := <-c.inbox:
			ready, dup := o.add(ev.msg, ev.own, time.Now())
			if dup && !ev.own {
				c.mu.Lock()
				c.stats.Duplicates++
				c.mu.Unlock()
				// The server redelivered: our ack may have been lost.
				c.ack(ev.msg.Chat, o.cursor(ev.msg.Chat))
			}
			if !c.deliver(o, ev.msg.Chat, ready) {
				return
			}
		case <-c.resync:
			cursors := make(map[string]uint64, len(o.chats))
			for id, co := range o.chats {
				cursors[id] = co.last
			}
			c.wg.Add(1)
			go c.resyncChats(cursors)
		case fr := <-c.fills:
			if fr.resync {
				var ready []Message
				for _, m := range fr.msgs {
					r, _ := o.add(m, c.isOwn(m), time.Now())
					ready = append(ready, r...)
				}
				if !c.deliver(o, fr.chat, ready) {
					return
				}
				break
			}
			o.filled(fr.chat)
			var ready []Message
			for _, m := range fr.msgs {
				r, _ := o.add(m, c.isOwn(m), time.Now())
				ready = append(ready, r...)
			}
			r, skipped := o.skipGap(fr.chat)
			ready = append(ready, r...)
			c.mu.Lock()
			if skipped > 0 {
				c.stats.GapsSkipped++
			} else {
				c.stats.GapsFilled++
			}
			c.mu.Unlock()
			if skipped > 0 {
				c.log.Warn("skipping gap in chat", "chat_id", fr.chat, "missing", skipped, "err", fr.err)
			}
			if !c.deliver(o, fr.chat, ready) {
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

func (c *Client) isOwn(m Message) bool {
	c.mu.Lock()
	h := c.hello
	c.mu.Unlock()
	return h.Device != "" && m.From == h.User && m.Device == h.Device
}

// fillGap fetches the messages after < seq < before of a chat.
func (c *Client) fillGap(g gap) {
	defer c.wg.Done()
	msgs, err := c.fetchRange(g.chat, g.after, g.before)
	select {
	case c.fills <- fillResult{chat: g.chat, msgs: msgs, err: err}:
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
		page, more, err := c.History(c.ctx, chat, HistoryQuery{After: after, Limit: int(limit)})
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
		if !more || !progressed {
			break
		}
	}
	return msgs, nil
}

// deliver hands ready to the app and acks the chat's cursor.
func (c *Client) deliver(o *orderer, chat string, ready []Message) bool {
	if len(ready) == 0 {
		return true
	}
	for _, m := range ready {
		select {
		case c.msgs <- m:
		case <-c.ctx.Done():
			return false
		}
	}
	c.ack(chat, o.cursor(chat))
	return true
}

// ack tells the server this device received chat up to seq. Best effort:
// without a connection the server redelivers and the duplicate is acked.
func (c *Client) ack(chat string, seq uint64) {
	if seq == 0 {
		return
	}
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		return
	}
	b, _ := json.Marshal(proto.Inbound{Type: proto.TypeAck, Chat: chat, Seq: seq})
	if err := cn.writeText(b); err != nil {
		c.log.Debug("cannot send ack", "chat_id", chat, "seq", seq, "err", err)
	}
}
