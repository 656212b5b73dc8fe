package client

import "time"

// orderer is the deterministic core of exactly-once, in-order delivery.
// It tracks per chat the position: the highest seq handed to the app (or
// sent by this client) with every lower seq handed too. A chat it has never
// seen is at position 0, so seq 1 is expected first (unless fromNow). It
// drops seqs at or below the position, buffers messages that arrive after
// a gap, and releases them once the gap fills. It is owned by the delivery
// goroutine; time comes in as a parameter.
type orderer struct {
	chats   map[string]*chatOrder
	fromNow bool // an unknown chat starts just before the first seq seen
}

type chatOrder struct {
	last     uint64             // every seq <= last was delivered or skipped
	pending  map[uint64]pending // seqs > last+1 waiting for the gap to fill
	gapSince time.Time          // when the oldest pending entry arrived; zero if none
	filling  bool               // a history fetch for the gap is running
}

type pending struct {
	msg  Message
	skip bool // own message: advances the cursor, not delivered
}

// newOrderer starts at the resume positions (chat -> seq; may be nil).
func newOrderer(resume map[string]uint64, fromNow bool) *orderer {
	o := &orderer{chats: make(map[string]*chatOrder, len(resume)), fromNow: fromNow}
	for id, seq := range resume {
		o.chats[id] = &chatOrder{last: seq}
	}
	return o
}

// add takes one arrival. skip marks a message this client sent itself (or
// that must not reach the app): it advances the position without being
// delivered. add returns the messages now ready for the app, in seq order,
// dup = true when m was dropped as already seen, and gapOpened = true when
// m opened a gap in a chat that had none.
func (o *orderer) add(m Message, skip bool, now time.Time) (ready []Message, dup, gapOpened bool) {
	co := o.chats[m.Chat]
	if co == nil {
		co = &chatOrder{}
		if o.fromNow {
			co.last = m.Seq - 1
		}
		o.chats[m.Chat] = co
	}
	if m.Seq <= co.last {
		return nil, true, false
	}
	if m.Seq > co.last+1 {
		if _, ok := co.pending[m.Seq]; ok {
			return nil, true, false
		}
		if co.pending == nil {
			co.pending = make(map[uint64]pending)
		}
		co.pending[m.Seq] = pending{msg: m, skip: skip}
		if co.gapSince.IsZero() {
			co.gapSince = now
			gapOpened = true
		}
		return nil, false, gapOpened
	}
	co.last = m.Seq
	if !skip {
		ready = append(ready, m)
	}
	return o.release(co, ready), false, false
}

// release moves contiguous pending entries to ready.
func (o *orderer) release(co *chatOrder, ready []Message) []Message {
	for len(co.pending) > 0 {
		p, ok := co.pending[co.last+1]
		if !ok {
			break
		}
		delete(co.pending, co.last+1)
		co.last++
		if !p.skip {
			ready = append(ready, p.msg)
		}
	}
	if len(co.pending) == 0 {
		co.gapSince = time.Time{}
	}
	return ready
}

// skipGap gives up on the gap of chat: the cursor jumps to just before the
// lowest pending seq and the contiguous run from there is released. It
// returns the released messages and the number of seqs skipped.
func (o *orderer) skipGap(chat string) (ready []Message, skipped uint64) {
	co := o.chats[chat]
	if co == nil || len(co.pending) == 0 {
		return nil, 0
	}
	lowest := uint64(0)
	for s := range co.pending {
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	skipped = lowest - 1 - co.last
	co.last = lowest - 1
	return o.release(co, nil), skipped
}

// gap describes a chat whose gap waited long enough for a history fetch:
// the missing seqs are after < seq < before.
type gap struct {
	chat          string
	after, before uint64
}

// due returns the gaps older than wait that are not being fetched yet and
// marks them as being fetched, and the earliest time another gap becomes
// due (zero if none).
func (o *orderer) due(now time.Time, wait time.Duration) (gaps []gap, next time.Time) {
	for id, co := range o.chats {
		if co.gapSince.IsZero() || co.filling {
			continue
		}
		at := co.gapSince.Add(wait)
		if !now.Before(at) {
			lowest := uint64(0)
			for s := range co.pending {
				if lowest == 0 || s < lowest {
					lowest = s
				}
			}
			co.filling = true
			gaps = append(gaps, gap{chat: id, after: co.last, before: lowest})
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return gaps, next
}

// filled marks the end of a history fetch for chat.
func (o *orderer) filled(chat string) {
	if co := o.chats[chat]; co != nil {
		co.filling = false
	}
}

// retryGap restarts the wait of chat's gap (if any) at now, after a
// history fetch failed for a reason that may pass (disconnect, timeout).
func (o *orderer) retryGap(chat string, now time.Time) {
	if co := o.chats[chat]; co != nil && len(co.pending) > 0 {
		co.gapSince = now
	}
}

// cursor returns the highest contiguous seq of chat (0 if unknown).
func (o *orderer) cursor(chat string) uint64 {
	if co := o.chats[chat]; co != nil {
		return co.last
	}
	return 0
}
