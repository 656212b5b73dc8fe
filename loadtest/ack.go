package loadtest

import (
	"context"
	"strconv"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Reliable delivery, client side (docs/protocol.md, "Reliable delivery").
//
// Every connection tracks per chat the highest seq it has with every lower
// seq too (have): msg frames it received plus, for a sender, its own
// messages (learnt from sent frames). A msg at or below have, or already
// buffered above a gap, is a server retransmit: dropped, counted, and the
// chat is re-acked at the next flush (the server resent because it did not
// see an ack in time). Acks are cumulative (ack chat have) and batched: at
// once when a chat has AckBatch received but unacked messages, otherwise by
// the flusher every AckInterval. Own messages advance have without causing
// an ack (the server does not wait for them); the next ack carries them.

// chatRx is one connection's receive state for one chat. Guarded by the
// owning conn's mu.
type chatRx struct {
	have   uint64              // every seq <= have was received (or is our own)
	above  map[uint64]struct{} // seqs > have+1 received after a gap
	maxSeq uint64              // highest seq received (first copies), for the order check
	acked  uint64              // highest seq acked
	dirty  bool                // received messages not acked yet
	urgent bool                // a retransmit arrived: ack at the next flush
}

// ackEntry is one ack to write.
type ackEntry struct {
	chat string
	seq  uint64
}

// rxResult is what a msg arrival means for the caller.
type rxResult struct {
	first      bool // the first copy of (chat, seq); false: a retransmit
	outOfOrder bool // first copy below a seq of the chat already received
}

// addLocked records that seq of chat arrived; own marks the conn's own
// message (from a sent frame). It returns the classification and, when the
// chat reached batch unacked messages, the ack to write now (already
// recorded as acked). A chat left with unacked messages queues c for the
// ack flusher (queue is set). c.mu must be held.
func (c *conn) addLocked(chat []byte, seq uint64, own bool, batch int) (res rxResult, ack *ackEntry, queue bool) {
	if c.chats == nil {
		c.chats = map[string]*chatRx{}
	}
	rx := c.chats[string(chat)]
	if rx == nil {
		rx = &chatRx{}
		c.chats[string(chat)] = rx
	}
	defer func() {
		if rx.dirty && !c.queued {
			c.queued, queue = true, true
		}
	}()
	if _, buffered := rx.above[seq]; seq <= rx.have || buffered {
		if !own {
			rx.dirty, rx.urgent = true, true
		}
		return rxResult{}, nil, false
	}
	res = rxResult{first: true, outOfOrder: seq < rx.maxSeq}
	rx.maxSeq = max(rx.maxSeq, seq)
	if seq == rx.have+1 {
		rx.have = seq
		for len(rx.above) > 0 {
			if _, ok := rx.above[rx.have+1]; !ok {
				break
			}
			delete(rx.above, rx.have+1)
			rx.have++
		}
	} else {
		if rx.above == nil {
			rx.above = map[uint64]struct{}{}
		}
		rx.above[seq] = struct{}{}
	}
	if own {
		return res, nil, false
	}
	rx.dirty = true
	if rx.have >= rx.acked+uint64(batch) {
		rx.acked, rx.dirty, rx.urgent = rx.have, false, false
		return res, &ackEntry{chat: string(chat), seq: rx.have}, false
	}
	return res, nil, false
}

// collectLocked returns the acks due at a flush: every chat with received
// but unacked messages, and every chat that saw a retransmit. They are
// recorded as acked. c.mu must be held.
func (c *conn) collectLocked(dst []ackEntry) []ackEntry {
	c.queued = false
	for chat, rx := range c.chats {
		if !rx.dirty {
			continue
		}
		if rx.have > rx.acked || (rx.urgent && rx.have > 0) {
			dst = append(dst, ackEntry{chat: chat, seq: rx.have})
			rx.acked = max(rx.acked, rx.have)
		}
		rx.dirty, rx.urgent = false, false
	}
	return dst
}

// appendAck appends an ack frame.
func appendAck(b []byte, a ackEntry) []byte {
	b = append(b, `{"type":"ack","chat":`...)
	b = proto.AppendString(b, a.chat)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, a.seq, 10)
	return append(b, '}')
}

// ackWriter holds scratch space for writing acks.
type ackWriter struct {
	buf    []byte
	frames [][]byte
	ends   []int
}

// write writes acks on wc in one batch (one syscall); it returns false when
// the write failed.
func (w *ackWriter) write(wc *wsclient.Conn, acks []ackEntry) bool {
	w.buf, w.ends, w.frames = w.buf[:0], w.ends[:0], w.frames[:0]
	for _, a := range acks {
		w.buf = appendAck(w.buf, a)
		w.ends = append(w.ends, len(w.buf))
	}
	start := 0
	for _, e := range w.ends {
		w.frames = append(w.frames, w.buf[start:e])
		start = e
	}
	return wc.WriteTexts(w.frames) == nil
}

// addAckConn makes c visible to the final flush (once it is connected).
func (r *run) addAckConn(c *conn) {
	r.ackMu.Lock()
	r.ackConns = append(r.ackConns, c)
	r.ackMu.Unlock()
}

// queueAck hands c to the ack flusher (it has unacked messages).
func (r *run) queueAck(c *conn) {
	r.dirtyMu.Lock()
	r.dirty = append(r.dirty, c)
	r.dirtyMu.Unlock()
}

// flushAcks writes the due acks of the queued conns, or of every
// connected conn with all.
func (r *run) flushAcks(all bool) {
	var list []*conn
	if all {
		r.ackMu.Lock()
		list = r.ackConns
		r.ackMu.Unlock()
	} else {
		r.dirtyMu.Lock()
		list, r.dirty, r.spare = r.dirty, r.spare[:0], nil
		r.dirtyMu.Unlock()
	}
	var acks []ackEntry
	w := &r.ackW
	for _, c := range list {
		sess := c.cur.Load()
		if sess == nil {
			// Offline: the next sync carries the positions.
			c.mu.Lock()
			c.queued = false
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		acks = c.collectLocked(acks[:0])
		c.mu.Unlock()
		if len(acks) == 0 {
			continue
		}
		if !w.write(sess.wc, acks) && !r.stopping.Load() && !sess.dropped.Load() {
			r.st.err("write:ack")
		}
		r.st.count(&r.st.acksSent, int64(len(acks)))
	}
	if !all {
		r.dirtyMu.Lock()
		r.spare = list[:0]
		r.dirtyMu.Unlock()
	}
}

// ackLoop flushes acks every AckInterval until ctx is done.
func (r *run) ackLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.AckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.flushAcks(false)
		}
	}
}
