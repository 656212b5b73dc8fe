package loadtest

import (
	"context"
	"strconv"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/loadtest/wsc"
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

// add records that seq of chat arrived; own marks the conn's own message
// (from a sent frame). It returns the classification and, when the chat
// reached batch unacked messages, the ack to write now (already recorded
// as acked). c.mu must be held.
func (c *conn) addLocked(chat string, seq uint64, own bool, batch int) (rxResult, *ackEntry) {
	if c.chats == nil {
		c.chats = map[string]*chatRx{}
	}
	rx := c.chats[chat]
	if rx == nil {
		rx = &chatRx{}
		c.chats[chat] = rx
	}
	if _, buffered := rx.above[seq]; seq <= rx.have || buffered {
		if !own {
			rx.dirty, rx.urgent = true, true
		}
		return rxResult{}, nil
	}
	res := rxResult{first: true, outOfOrder: seq < rx.maxSeq}
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
		return res, nil
	}
	rx.dirty = true
	if rx.have >= rx.acked+uint64(batch) {
		rx.acked, rx.dirty, rx.urgent = rx.have, false, false
		return res, &ackEntry{chat: chat, seq: rx.have}
	}
	return res, nil
}

// collectLocked returns the acks due at a flush: every chat with received
// but unacked messages, and every chat that saw a retransmit. They are
// recorded as acked. c.mu must be held.
func (c *conn) collectLocked(dst []ackEntry) []ackEntry {
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

// writeAcks writes acks on wc; it returns false when a write failed.
func writeAcks(wc *wsc.Conn, acks []ackEntry, buf []byte) ([]byte, bool) {
	for _, a := range acks {
		buf = appendAck(buf[:0], a)
		if err := wc.WriteText(buf); err != nil {
			return buf, false
		}
	}
	return buf, true
}

// addAckConn makes c visible to the ack flusher (once it is connected).
func (r *run) addAckConn(c *conn) {
	r.ackMu.Lock()
	r.ackConns = append(r.ackConns, c)
	r.ackMu.Unlock()
}

// flushAcks writes every due ack of every connected conn.
func (r *run) flushAcks() {
	r.ackMu.Lock()
	list := r.ackConns
	r.ackMu.Unlock()
	var acks []ackEntry
	var buf []byte
	for _, c := range list {
		c.mu.Lock()
		acks = c.collectLocked(acks[:0])
		c.mu.Unlock()
		if len(acks) == 0 {
			continue
		}
		var ok bool
		if buf, ok = writeAcks(c.ws, acks, buf); !ok && !r.stopping.Load() {
			r.st.err("write:ack")
		}
		r.st.mu.Lock()
		r.st.acksSent += int64(len(acks))
		r.st.mu.Unlock()
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
			r.flushAcks()
		}
	}
}
