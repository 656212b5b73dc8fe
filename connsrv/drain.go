package connsrv

import (
	"math/rand/v2"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

const (
	// drainStep is the interval between two drain batches (shorter when
	// the window is shorter).
	drainStep = 100 * time.Millisecond
	// goawayJitterMS bounds the random retry_after_ms of a drain goaway,
	// which spreads the reconnects of one batch over the next second.
	goawayJitterMS = 1000
)

// drain tells every open session to reconnect elsewhere: a goaway frame
// (retry_after_ms random below goawayJitterMS, no url) then a close with
// 1001, in batches every drainStep over window, the sessions in random
// order, so clients reconnect at about sessions/window per second instead
// of all at once. Session i of n goes in batch i*batches/n. With window 0
// every session is closed with 1001 at once. Connections still in the
// handshake are closed at once. It returns when the last batch is queued
// (or every session is gone). Called by Run only, after shutdown is set.
func (s *Server) drain(window time.Duration) {
	var open []*session
	s.reg.each(func(ss *session) {
		if ss.state.Load() == stateOpen {
			open = append(open, ss)
			return
		}
		ss.closeAsync(proto.CloseGoingAway, "server shutting down")
	})
	if window <= 0 {
		for _, ss := range open {
			ss.closeAsync(proto.CloseGoingAway, "server shutting down")
		}
		return
	}
	n := len(open)
	rand.Shuffle(n, func(i, j int) { open[i], open[j] = open[j], open[i] })
	batches := max(1, int(window/drainStep))
	step := window / time.Duration(batches)
	s.m.drainActive.Set(1)
	s.m.drainLeft.Set(float64(n))
	start := time.Now()
	s.log.Info("drain started", "sessions", n, "window", window, "batches", batches)
	told, i := 0, 0
	for k := 0; k < batches && i < n; k++ {
		if k > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(k) * step)))
			if s.reg.count() == 0 {
				break // every client left on its own
			}
		}
		for ; i < n && i*batches/n <= k; i++ {
			if open[i].goaway(rand.Int64N(goawayJitterMS), s.m.drained.Inc) {
				told++
			}
			s.m.drainLeft.Dec()
		}
	}
	// Sessions whose upgrade completed as the drain began.
	late := 0
	s.reg.each(func(ss *session) {
		if ss.state.Load() != stateOpen {
			ss.closeAsync(proto.CloseGoingAway, "server shutting down")
			return
		}
		if ss.goaway(rand.Int64N(goawayJitterMS), s.m.drained.Inc) {
			late++
		}
	})
	s.m.drainLeft.Set(0)
	s.m.drainActive.Set(0)
	s.log.Info("drain done", "sessions", n, "told", told+late, "left_before_their_batch", n-told,
		"late", late, "elapsed", time.Since(start).Round(time.Millisecond))
}

// flushLinks waits until every link has written what it holds (client
// messages and acks forwarded during the drain, Close frames of the closed
// sessions), or until deadline. Called by Run only.
func (s *Server) flushLinks(deadline time.Time) {
	for time.Now().Before(deadline) {
		idle := true
		for _, l := range s.links {
			if !l.idle() {
				idle = false
				break
			}
		}
		if idle {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.log.Warn("logic links not flushed before shutdown")
}
