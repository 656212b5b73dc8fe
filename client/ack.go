package client

import (
	"encoding/json"
	"maps"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// handoff tracks what was handed to the app. The delivery goroutine
// records every message it put on the Messages channel and every position
// jump (own messages, skipped history, skipped gaps); the app's progress
// through the channel is derived from the channel's length: the channel is
// FIFO and only the delivery goroutine sends on it, so of the inChan
// recorded entries not known to be received yet, inChan - len(channel)
// were received. A message counts as handed over (its position may be
// acked, reported by Positions, and persisted) once the app took it from
// the channel.
//
// Safe for concurrent use.
type handoff struct {
	mu       sync.Mutex        // guards the following
	queue    []handEntry       // recorded, not known received yet, in order
	head     int               // queue[head:] is live
	inChan   int               // entries of queue[head:] that went through the channel
	handed   map[string]uint64 // chat -> position given to the channel (or skipped)
	consumed map[string]uint64 // chat -> position the app received
	acked    map[string]uint64 // chat -> position acked on some connection
	dirty    map[string]bool   // chats to ack: consumed moved, or a re-ack was asked for
	urgent   map[string]bool   // dirty chats to ack at the next collect
}

type handEntry struct {
	chat   string
	seq    uint64
	inChan bool // a message on the channel; else a position marker
	quiet  bool // a marker that alone needs no ack (own sends)
}

func newHandoff(resume map[string]uint64) *handoff {
	clone := func() map[string]uint64 {
		m := make(map[string]uint64, len(resume))
		maps.Copy(m, resume)
		return m
	}
	return &handoff{handed: clone(), consumed: clone(), acked: clone(),
		dirty: make(map[string]bool), urgent: make(map[string]bool)}
}

// put sends m on ch and records it. When ch has room the send and the
// record happen under h.mu, so Positions never sees a message the app
// already took as unrecorded. When ch is full the send blocks without the
// lock (the app may call Positions while it drains the channel) and until
// it is recorded the message may be reported as not yet received: a
// position that lags by one, never one ahead. It returns false when done
// closed first.
func (h *handoff) put(ch chan<- Message, m Message, done <-chan struct{}) bool {
	h.mu.Lock()
	select {
	case ch <- m:
		h.recordLocked(m)
		h.mu.Unlock()
		return true
	default:
	}
	h.mu.Unlock()
	select {
	case ch <- m:
	case <-done:
		return false
	}
	h.mu.Lock()
	h.recordLocked(m)
	h.mu.Unlock()
	return true
}

// recordLocked records that m was put on the channel. h.mu must be held.
func (h *handoff) recordLocked(m Message) {
	h.queue = append(h.queue, handEntry{chat: m.Chat, seq: m.Seq, inChan: true})
	h.inChan++
	if m.Seq > h.handed[m.Chat] {
		h.handed[m.Chat] = m.Seq
	}
}

// mark records that chat's position is pos once everything recorded
// before was received (a position jump without a message: own sends,
// skipped history or gaps). quiet marks a jump over this client's own
// sends only: the server does not wait for an ack of those, so it is
// carried by the next ack instead of causing one.
func (h *handoff) mark(chat string, pos uint64, quiet bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pos <= h.handed[chat] {
		return
	}
	h.handed[chat] = pos
	h.queue = append(h.queue, handEntry{chat: chat, seq: pos, quiet: quiet})
}

// reack asks for chat's position to be acked again at once (the server
// retransmitted, so an ack may have been lost).
func (h *handoff) reack(chat string) {
	h.mu.Lock()
	h.dirty[chat] = true
	h.urgent[chat] = true
	h.mu.Unlock()
}

// advance pops the entries the app received; bufLen is the channel's
// length, read under h.mu (read before, it could count messages put on
// the channel since as received). h.mu must be held.
func (h *handoff) advance(bufLen int) {
	received := max(h.inChan-bufLen, 0)
	for h.head < len(h.queue) {
		e := h.queue[h.head]
		if e.inChan {
			if received == 0 {
				break
			}
			received--
			h.inChan--
		}
		if e.seq > h.consumed[e.chat] {
			h.consumed[e.chat] = e.seq
			if !e.quiet {
				h.dirty[e.chat] = true
			}
		}
		h.queue[h.head] = handEntry{}
		h.head++
	}
	switch {
	case h.head == len(h.queue):
		h.queue, h.head = h.queue[:0], 0
	case h.head >= 1024 && 2*h.head >= len(h.queue):
		n := copy(h.queue, h.queue[h.head:])
		clear(h.queue[n:])
		h.queue, h.head = h.queue[:n], 0
	}
}

// positions returns a copy of the consumed positions; bufLen returns the
// channel's current length.
func (h *handoff) positions(bufLen func() int) map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(bufLen())
	return maps.Clone(h.consumed)
}

// handedPositions returns a copy of the positions given to the channel:
// what the sync frame reports (this process will hand them to the app).
func (h *handoff) handedPositions() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.handed)
}

type ackEntry struct {
	chat string
	seq  uint64
}

// collect returns the acks to send: every dirty chat when force, else only
// the chats with at least batch received but unacked messages. outstanding
// reports whether acks may still be due later (unreceived entries or dirty
// chats remain).
func (h *handoff) collect(bufLen func() int, force bool, batch int) (acks []ackEntry, outstanding bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.advance(bufLen())
	for chat := range h.dirty {
		pos := h.consumed[chat]
		if pos == 0 {
			delete(h.dirty, chat)
			delete(h.urgent, chat)
			continue
		}
		if force || h.urgent[chat] || pos >= h.acked[chat]+uint64(batch) {
			acks = append(acks, ackEntry{chat: chat, seq: pos})
		}
	}
	outstanding = h.head < len(h.queue) || len(h.dirty) > len(acks)
	return acks, outstanding
}

// done records acks written to the server.
func (h *handoff) done(acks []ackEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range acks {
		if a.seq > h.acked[a.chat] {
			h.acked[a.chat] = a.seq
		}
		if h.consumed[a.chat] <= a.seq {
			delete(h.dirty, a.chat)
		}
		delete(h.urgent, a.chat)
	}
}

// kickAcks wakes the ack goroutine (non-blocking).
func (c *Client) kickAcks() {
	select {
	case c.ackKick <- struct{}{}:
	default:
	}
}

// ackLoop sends batched cumulative acks: at once for a chat with
// AckBatch received but unacked messages, else every AckInterval while
// anything is outstanding (it polls the app's progress through the
// Messages channel at that interval).
func (c *Client) ackLoop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	armed := false
	for {
		force := false
		select {
		case <-c.ackKick:
		case <-t.C:
			armed, force = false, true
		case <-c.ctx.Done():
			return
		}
		acks, outstanding := c.ho.collect(c.msgsLen, force, c.cfg.AckBatch)
		if len(acks) > 0 {
			if c.writeAcks(acks) {
				c.ho.done(acks)
			} else {
				outstanding = true
			}
		}
		if outstanding && !armed {
			t.Reset(c.cfg.AckInterval)
			armed = true
		}
	}
}

// writeAcks writes the acks on the current connection; false if there is
// none or a write failed (they are retried; after a reconnect the sync
// frame carries the positions anyway).
func (c *Client) writeAcks(acks []ackEntry) bool {
	c.mu.Lock()
	cn := c.conn
	c.mu.Unlock()
	if cn == nil {
		return false
	}
	for _, a := range acks {
		b, _ := json.Marshal(proto.Inbound{Type: proto.TypeAck, Chat: a.chat, Seq: a.seq})
		if err := cn.WriteText(b); err != nil {
			c.log.Debug("cannot send ack", "chat_id", a.chat, "seq", a.seq, "err", err)
			return false
		}
	}
	c.mu.Lock()
	c.stats.AcksSent += uint64(len(acks))
	c.mu.Unlock()
	return true
}
