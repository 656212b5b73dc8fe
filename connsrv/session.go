package connsrv

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/parley-chat/parley/connsrv/wsframe"
	"github.com/parley-chat/parley/internal/proto"
)

// Session states.
const (
	stateHandshake uint32 = iota // waiting for the HTTP upgrade
	stateOpen                    // upgraded; Open sent to logic
	stateClosing                 // close frame queued or connection closing
)

// session is one client connection. It is kept small: no goroutine, timer
// or buffer per idle connection. Write buffers come from outPool and go
// back after each flush, the fragment assembler exists only while a
// fragmented message is in progress, and what only the handshake needs
// lives on the handshake's stack. Fields are ordered so the struct fits
// the 192-byte size class (BenchmarkIdleConns).
//
// Fields marked "loop" are touched only by the connection's event loop.
type session struct {
	c  gnet.Conn // set at OnOpen, immutable
	id uint64    // unique in this process, immutable
	// link is the logic link the session's frames go over: the one leading
	// to the user's home logic node, chosen at the upgrade (before Open) and
	// never changed after; nil before.
	link       atomic.Pointer[link]
	gen        atomic.Uint64 // link generation the Open went out on; 0 before
	lastActive atomic.Int64  // unix nanos of the last inbound byte (or accept)
	// expires is the token expiry in unix nanos, 0 = none: set before
	// stateOpen, moved later by an in-band refresh (loop), read by the
	// sweeper.
	expires atomic.Int64

	// proxySrc is the client address from the PROXY header (the socket's
	// peer for a LOCAL header), nil until the header was consumed and
	// always nil without ProxyProtocol: remote() reads the socket's peer
	// from gnet then. Loop only.
	proxySrc *netip.AddrPort
	// user and device name the session after the upgrade. Loop only.
	user, device string
	// asm reassembles a fragmented client message; nil between messages.
	// Loop only.
	asm *wsframe.Assembler

	state atomic.Uint32
	// limitedFor, when non-zero, is the Retry-After (seconds) of a
	// connection over its IP's rate: the upgrade is answered with 429.
	// Loop only.
	limitedFor int32
	// pingedAt is the low 32 bits of the lastActive value when the last
	// ping was sent (a ping goes out once per silence). Sweeper only.
	pingedAt uint32
	// peerCode is the close code the client sent. Loop only.
	peerCode uint16
	sent     bool // loop: Open reached the link (so Close must follow)

	mu sync.Mutex // guards the following
	// wake is true while a Wake is scheduled and not yet run.
	wake bool
	// closeCode, when non-zero, asks the loop to close the connection
	// with this code after (or, for 4002, instead of) writing out.
	closeCode uint16
	// out holds framed bytes waiting for the loop to write them; nil when
	// nothing is pending (its buffer is from outPool).
	out         []byte
	closeReason string
}

// remote returns the client address: the source address of the PROXY
// header once consumed, else the socket's peer. Loop only.
func (s *session) remote() netip.AddrPort {
	if s.proxySrc != nil {
		return *s.proxySrc
	}
	return addrPortOf(s.c.RemoteAddr())
}

// enqueue appends one server text frame to the pending output and schedules
// a flush. It returns false when the frame was dropped (session closing or
// write queue over limit, in which case the session is closed with 4002).
// Safe for concurrent use.
func (s *session) enqueue(srv *Server, op ws.OpCode, payload []byte) bool {
	s.mu.Lock()
	if s.closeCode != 0 {
		s.mu.Unlock()
		srv.m.drop(dropClosing)
		return false
	}
	if len(s.out)+len(payload)+wsframe.MaxHeaderSize > srv.cfg.WriteQueueLimit {
		putOut(s.out)
		s.out = nil
		s.closeCode, s.closeReason = closeSlowConsumer, "write queue over limit"
		w := s.scheduleLocked()
		s.mu.Unlock()
		srv.m.drop(dropSlow)
		if w {
			_ = s.c.Wake(nil)
		}
		return false
	}
	s.out = appendFrameOut(s.out, op, payload)
	w := s.scheduleLocked()
	s.mu.Unlock()
	if w {
		_ = s.c.Wake(nil)
	}
	return true
}

// closeAsync asks the loop to close the session with code and reason after
// writing what is pending. The first request wins. Safe for concurrent use.
func (s *session) closeAsync(code uint16, reason string) {
	s.mu.Lock()
	if s.closeCode != 0 {
		s.mu.Unlock()
		return
	}
	s.closeCode, s.closeReason = code, reason
	if code == closeSlowConsumer {
		putOut(s.out)
		s.out = nil
	}
	w := s.scheduleLocked()
	s.mu.Unlock()
	if w {
		_ = s.c.Wake(nil)
	}
}

// goaway queues a goaway frame (reconnect after retryAfterMS, anywhere)
// followed by a close with 1001, after what is already pending. It
// returns false when the session was already closing. told runs (under
// the session lock) before the frame can reach the client, so a counter
// it raises is never behind what a client has seen. Safe for concurrent
// use.
func (s *session) goaway(retryAfterMS int64, told func()) bool {
	s.mu.Lock()
	if s.closeCode != 0 {
		s.mu.Unlock()
		return false
	}
	told()
	var buf [64]byte
	frame := proto.AppendGoaway(buf[:0], retryAfterMS, "")
	s.out = appendFrameOut(s.out, opText, frame)
	s.closeCode, s.closeReason = proto.CloseGoingAway, "going away"
	w := s.scheduleLocked()
	s.mu.Unlock()
	if w {
		_ = s.c.Wake(nil)
	}
	return true
}

// scheduleLocked marks a flush as scheduled and reports whether the caller
// must call Wake (outside the lock).
func (s *session) scheduleLocked() bool {
	if s.wake {
		return false
	}
	s.wake = true
	return true
}

// takeOut takes the pending output (the caller gives it back with putOut
// once written) with any close request. Loop only.
func (s *session) takeOut() (buf []byte, code uint16, reason string) {
	s.mu.Lock()
	buf = s.out
	s.out = nil
	s.wake = false
	code, reason = s.closeCode, s.closeReason
	s.mu.Unlock()
	return buf, code, reason
}
