package connsrv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

// tierlinkMaxPayload is the largest payload one link frame carries.
const tierlinkMaxPayload = tierlink.MaxFrame - 9

var (
	errLinkDown = errors.New("connsrv: logic link down")
	errLinkFull = errors.New("connsrv: logic link queue over limit")
)

// spareLinkCap is the largest link batch buffer kept for reuse.
const spareLinkCap = 1 << 20

// link is one TCP connection of the pool to a logic node, reconnected for
// the life of the server. Client sessions are bound to one link for their
// lifetime, so their frames keep their order.
//
// Writers (event loops) append frames to buf under mu; one writer goroutine
// per connection drains it with one write per batch. One reader goroutine
// dispatches what logic sends.
type link struct {
	srv  *Server
	addr string
	idx  int
	log  *slog.Logger

	kick   chan struct{} // capacity 1: buf went from empty to non-empty
	everUp atomic.Bool

	mu sync.Mutex // guards the following
	// buf holds encoded frames waiting for the writer goroutine.
	buf []byte
	// up is true between a completed Hello exchange and the link's failure.
	up bool
	// node is the logic node id from the HelloAck of the current connection.
	node string
	// gen counts connections; frames of a session carry the gen of its
	// Open and are refused once the link has reconnected.
	gen uint64
	// writing is true while the writer goroutine writes a batch it took
	// from buf.
	writing bool
}

func newLink(srv *Server, addr string, idx int) *link {
	return &link{
		srv:  srv,
		addr: addr,
		idx:  idx,
		log:  srv.log.With("link", idx, "logic_addr", addr),
		kick: make(chan struct{}, 1),
	}
}

// upNode returns the logic node id of a connected link, or "" when the
// link is down. Safe for concurrent use.
func (l *link) upNode() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		return ""
	}
	return l.node
}

// isUp reports whether the link is connected. Safe for concurrent use.
func (l *link) isUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.up
}

func (l *link) signal() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// sendOpen queues the Open frame of s and binds s to the current
// generation. Safe for concurrent use.
func (l *link) sendOpen(s *session, o tierlink.Open) error {
	l.mu.Lock()
	if !l.up {
		l.mu.Unlock()
		return errLinkDown
	}
	if len(l.buf) > l.srv.cfg.LinkQueueLimit {
		l.mu.Unlock()
		return errLinkFull
	}
	empty := len(l.buf) == 0
	l.buf = tierlink.AppendOpen(l.buf, s.id, o)
	s.gen.Store(l.gen)
	l.mu.Unlock()
	if empty {
		l.signal()
	}
	return nil
}

// sendData queues one client message of the session opened on generation
// gen. It refuses (rather than blocks) when the link is down, has
// reconnected since, or its queue is over the limit. Safe for concurrent
// use; it does not allocate once the queue buffer has grown.
func (l *link) sendData(gen, session uint64, msg []byte) error {
	l.mu.Lock()
	if !l.up || l.gen != gen {
		l.mu.Unlock()
		return errLinkDown
	}
	if len(l.buf)+tierlink.HeaderSize+len(msg) > l.srv.cfg.LinkQueueLimit {
		l.mu.Unlock()
		return errLinkFull
	}
	empty := len(l.buf) == 0
	l.buf = tierlink.AppendFrame(l.buf, tierlink.TypeData, session, msg)
	l.mu.Unlock()
	if empty {
		l.signal()
	}
	return nil
}

// sendClose queues the Close frame of a session opened on generation gen.
// Close frames are small and always accepted while the link is up, so
// logic learns of every closed session. Safe for concurrent use.
func (l *link) sendClose(gen, session uint64, code uint16) {
	l.mu.Lock()
	if !l.up || l.gen != gen {
		l.mu.Unlock()
		return
	}
	empty := len(l.buf) == 0
	l.buf = tierlink.AppendClose(l.buf, session, code)
	l.mu.Unlock()
	if empty {
		l.signal()
	}
}

// sendRaw queues a link-level frame (Ping/Pong) on the current connection.
func (l *link) sendPing(t tierlink.Type, nonce uint64) {
	l.mu.Lock()
	if !l.up {
		l.mu.Unlock()
		return
	}
	empty := len(l.buf) == 0
	l.buf = tierlink.AppendPing(l.buf, t, nonce)
	l.mu.Unlock()
	if empty {
		l.signal()
	}
}

// run keeps the link connected until ctx is done.
func (l *link) run(ctx context.Context) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		conn, r, err := l.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("cannot connect logic link", "err", err, "retry_in", backoff)
			sleep := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(sleep):
			}
			backoff = min(backoff*2, l.srv.cfg.LinkBackoffMax)
			continue
		}
		backoff = minBackoff
		gen := l.markUp()
		l.log.Info("logic link up", "gen", gen)
		err = l.serve(ctx, conn, r)
		l.markDown()
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("logic link lost", "gen", gen, "err", err)
		l.srv.m.linkRecon.Inc()
		l.srv.linkLost(l, gen)
	}
}

// connect dials logic and exchanges Hello/HelloAck.
func (l *link) connect(ctx context.Context) (net.Conn, *tierlink.Reader, error) {
	timeout := l.srv.cfg.LinkDialTimeout
	d := net.Dialer{Timeout: timeout}
	var conn net.Conn
	var err error
	if dial := l.srv.cfg.LinkDial; dial != nil {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err = dial(dctx, l.addr)
		if tc := l.srv.linkTLS; err == nil && tc != nil {
			if tc.ServerName == "" { // as tls.Dialer does: the address's host
				tc = tc.Clone()
				tc.ServerName, _, _ = net.SplitHostPort(l.addr)
			}
			tconn := tls.Client(conn, tc)
			if err = tconn.HandshakeContext(dctx); err != nil {
				conn.Close()
			}
			conn = tconn
		}
		cancel()
	} else if tc := l.srv.linkTLS; tc != nil {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		conn, err = (&tls.Dialer{NetDialer: &d, Config: tc}).DialContext(dctx, "tcp", l.addr)
		cancel()
	} else {
		conn, err = d.DialContext(ctx, "tcp", l.addr)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot dial logic %s: %w", l.addr, err)
	}
	dr := &deadlineReader{c: conn, d: timeout}
	r := tierlink.NewReader(dr, 64<<10, tierlink.MaxFrame)
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	h, err := tierlink.DialHandshake(conn, r, tierlink.TypeHello, l.srv.cfg.NodeID, l.srv.linkSecret, tierlink.DialOptions{Binding: tierlink.Binding(conn)})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("cannot complete hello with logic %s: %w", l.addr, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	dr.d = 3 * l.srv.cfg.LinkPingInterval
	l.mu.Lock()
	l.node = h.NodeID
	l.mu.Unlock()
	return conn, r, nil
}

// idle reports whether the link has nothing left to write (or is down).
// Safe for concurrent use.
func (l *link) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.up || (len(l.buf) == 0 && !l.writing)
}

func (l *link) markUp() uint64 {
	l.mu.Lock()
	l.gen++
	l.up = true
	l.writing = false
	l.buf = l.buf[:0]
	gen := l.gen
	l.mu.Unlock()
	l.srv.m.linkUp.Inc()
	if l.everUp.CompareAndSwap(false, true) {
		l.srv.linkFirstUp()
	}
	return gen
}

func (l *link) markDown() {
	l.mu.Lock()
	l.up = false
	l.buf = nil
	l.mu.Unlock()
	l.srv.m.linkUp.Dec()
}

// serve runs the reader and the writer of one connection until either
// fails or ctx is done.
func (l *link) serve(ctx context.Context, conn net.Conn, r *tierlink.Reader) error {
	done := make(chan struct{})
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		readErr = l.readLoop(r)
	})
	err := l.writeLoop(ctx, conn, done)
	conn.Close()
	wg.Wait()
	if err == nil {
		err = readErr
	}
	return err
}

func (l *link) writeLoop(ctx context.Context, conn net.Conn, done <-chan struct{}) error {
	ping := time.NewTicker(l.srv.cfg.LinkPingInterval)
	defer ping.Stop()
	var spare []byte
	var nonce uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return nil
		case <-ping.C:
			// A link made before the logic node's certificate was
			// revoked (link_tls.deny_file) is cut; the redial is refused.
			if err := tlsconf.Recheck(l.srv.linkTLS, conn); err != nil {
				l.srv.log.Warn("tier link cut: the logic node's certificate is revoked", "logic_addr", l.addr, "err", err)
				return fmt.Errorf("link to %s: %w", l.addr, err)
			}
			nonce++
			l.sendPing(tierlink.TypePing, nonce)
			continue
		case <-l.kick:
		}
		l.mu.Lock()
		buf := l.buf
		l.buf = spare[:0]
		l.writing = len(buf) > 0
		l.mu.Unlock()
		if len(buf) == 0 {
			spare = buf
			continue
		}
		_ = conn.SetWriteDeadline(time.Now().Add(l.srv.cfg.LinkWriteTimeout))
		_, err := conn.Write(buf)
		l.mu.Lock()
		l.writing = false
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("cannot write to logic %s: %w", l.addr, err)
		}
		l.srv.m.linkFramesW.Inc()
		spare = nil
		if cap(buf) <= spareLinkCap {
			spare = buf[:0]
		}
	}
}

func (l *link) readLoop(r *tierlink.Reader) error {
	for {
		f, err := r.Next()
		if err != nil {
			return fmt.Errorf("cannot read from logic %s: %w", l.addr, err)
		}
		l.srv.m.linkFramesR.Inc()
		l.dispatch(f)
	}
}

// dispatch handles one frame from logic. It never blocks.
func (l *link) dispatch(f tierlink.Frame) {
	srv := l.srv
	switch f.Type {
	case tierlink.TypeDeliver:
		srv.deliver(f.Session, f.Payload)
	case tierlink.TypeMulti:
		m, err := tierlink.ParseMulti(f.Payload)
		if err != nil {
			srv.m.drop(dropBadLinkMsg)
			l.log.Warn("bad multi frame from logic", "err", err)
			return
		}
		for i := range m.Count {
			srv.deliver(m.Session(i), m.Data)
		}
	case tierlink.TypeKick:
		code, reason, err := tierlink.ParseKick(f.Payload)
		if err != nil {
			srv.m.drop(dropBadLinkMsg)
			l.log.Warn("bad kick frame from logic", "err", err)
			return
		}
		if s := srv.reg.get(f.Session); s != nil {
			s.closeAsync(code, string(reason))
		} else {
			srv.m.drop(dropNoSession)
		}
	case tierlink.TypePing:
		nonce, err := tierlink.ParsePing(f.Payload)
		if err != nil {
			srv.m.drop(dropBadLinkMsg)
			return
		}
		l.sendPing(tierlink.TypePong, nonce)
	case tierlink.TypePong:
		// Any frame is proof of life; the read deadline does the rest.
	default:
		srv.m.drop(dropBadLinkMsg)
		l.log.Warn("unexpected frame from logic", "type", f.Type.String())
	}
}

// deadlineReader extends the read deadline before every read, so a link
// silent for d (no frame, not even a Pong) fails.
type deadlineReader struct {
	c net.Conn
	d time.Duration
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(r.d))
	return r.c.Read(p)
}
