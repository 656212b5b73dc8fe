package loadtest

import (
	"sync"
)

// stats are the shared measurements. Every method is safe for concurrent
// use.
type stats struct {
	mu             sync.Mutex // guards the following
	deliver, ack   Histogram  // measured window, whole run (live deliveries)
	offline        Histogram  // measured window: deliveries after the recipient came back
	cur            interval   // the current report interval
	sent           int64
	sentWin        int64
	acked          int64
	expected       int64 // deliveries owed for the acked messages (fanout each)
	delivered      int64
	deliveredWin   int64
	offDelivered   int64
	dups           int64 // the same k delivered under two different (chat, seq)
	ooo            int64
	dupAcks        int64
	retransmits    int64 // msg frames for a (chat, seq) already received
	backlog        int64 // msg frames received before the first synced
	acksSent       int64
	skipped        int64 // population: due while the sender was offline
	resent         int64 // population: sends written again after a reconnect or a retryable error
	reconnects     int64 // population: sessions re-established
	reconnectFails int64
	stormDrops     int64
	errs           map[string]int64
}

// interval accumulates one report interval.
type interval struct {
	sent, delivered, offDelivered, errs int64
	deliver, ack                        Histogram
}

func (s *stats) init() { s.errs = map[string]int64{} }

func (s *stats) err(kind string) {
	s.mu.Lock()
	s.errs[kind]++
	s.cur.errs++
	s.mu.Unlock()
}

func (s *stats) count(p *int64, n int64) {
	s.mu.Lock()
	*p += n
	s.mu.Unlock()
}

// onSend counts a message written for the first time.
func (s *stats) onSend(inWin bool) {
	s.mu.Lock()
	s.sent++
	s.cur.sent++
	if inWin {
		s.sentWin++
	}
	s.mu.Unlock()
}

// onAck counts a sent frame for a message due at due (unix ns) owing
// fanout deliveries; dup marks a second sent frame for it.
func (s *stats) onAck(dup bool, due, now, winStart, winEnd int64, fanout int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dup {
		s.dupAcks++
		return
	}
	s.acked++
	s.expected += int64(fanout)
	lat := now - due
	s.cur.ack.Record(lat)
	if due >= winStart && due < winEnd {
		s.ack.Record(lat)
	}
}

// onDeliver counts the first copy of a message at a recipient; dup marks
// a second first copy (stored twice), offline a delivery after the
// recipient came back.
func (s *stats) onDeliver(dup, offline bool, due, now, winStart, winEnd int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if dup {
		// Not a retransmit (those repeat a (chat, seq) and were dropped
		// before): the server stored the same send twice.
		s.dups++
		return
	}
	s.delivered++
	lat := now - due
	inWin := due >= winStart && due < winEnd
	if inWin {
		s.deliveredWin++
	}
	if offline {
		s.offDelivered++
		s.cur.offDelivered++
		if inWin {
			s.offline.Record(lat)
		}
		return
	}
	s.cur.delivered++
	s.cur.deliver.Record(lat)
	if inWin {
		s.deliver.Record(lat)
	}
}

// settled reports whether every sent message has its sent frame and
// every owed delivery arrived.
func (s *stats) settled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked >= s.sent && s.delivered >= s.expected
}

// takeInterval returns the current interval and starts a new one.
func (s *stats) takeInterval() interval {
	s.mu.Lock()
	defer s.mu.Unlock()
	iv := s.cur
	s.cur = interval{}
	return iv
}

// dueItem is a sender's next due time in a sender shard's heap.
type dueItem struct {
	at int64 // unix ns
	i  int32 // stream index in the shard
}

// dueHeap is a binary min-heap of due times (no interface boxing).
type dueHeap []dueItem

func (h dueHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h dueHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[i].at <= h[m].at {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// fix0 restores the heap after h[0].at grew.
func (h dueHeap) fix0() { h.down(0) }

// pop0 removes h[0].
func (h *dueHeap) pop0() {
	old := *h
	n := len(old) - 1
	old[0] = old[n]
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
}
