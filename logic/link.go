package logic

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

var (
	linksOpen         = metrics.NewCounter(`parley_logic_links_opened_total`)
	linksClosed       = metrics.NewCounter(`parley_logic_links_closed_total`)
	linkSlowCloses    = metrics.NewCounter(`parley_logic_link_drops_total{reason="queue_full"}`)
	linkFramesIn      = metrics.NewCounter(`parley_logic_link_frames_in_total`)
	linkFramesOut     = metrics.NewCounter(`parley_logic_link_frames_out_total`)
	linkProtocolError = metrics.NewCounter(`parley_logic_link_drops_total{reason="protocol"}`)
	linkAuthFailed    = metrics.NewCounter(`parley_logic_link_drops_total{reason="auth"}`)
	linksRevoked      = metrics.NewCounter(`parley_logic_link_drops_total{reason="revoked"}`)
)

// link is one tier-link TCP connection from a connection node. Frames are
// queued into buf by any goroutine and written by the link's writer
// goroutine in batches.
type link struct {
	conn         net.Conn
	node         string // peer node id from its hello
	version      uint8  // the link version the handshake chose (set before frames flow)
	limit        int
	writeTimeout time.Duration // bounds one write (Config.LinkWriteTimeout)
	notify       chan struct{} // capacity 1: "buf is not empty"
	done         chan struct{} // closed when the link is closed

	mu       sync.Mutex // guards the following
	buf      []byte     // frames waiting for the writer
	writing  bool       // the writer holds frames it has not written yet
	flushers []chan struct{}
	closed   bool
}

// Link timing and buffers that are not configurable.
const (
	// linkHandshakeTimeout bounds an accepted link's TLS handshake and
	// its Hello exchange.
	linkHandshakeTimeout = 10 * time.Second
	// spareLinkCap is the largest drained write buffer a link keeps for
	// reuse (a burst's buffer is not kept forever).
	spareLinkCap = 4 << 20
)

func newLink(conn net.Conn, limit int, writeTimeout time.Duration) *link {
	l := &link{conn: conn, limit: limit, writeTimeout: writeTimeout, notify: make(chan struct{}, 1), done: make(chan struct{})}
	trackLink(l) // parley_logic_link_queue_bytes; close untracks
	return l
}

// appendFrames runs fn to append frames to the queue under the lock.
// It returns false when the link is closed or its queue is over the limit
// (in which case the link is closed). Safe for concurrent use.
func (l *link) appendFrames(fn func([]byte) []byte) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.buf = fn(l.buf)
	over := len(l.buf) > l.limit
	l.mu.Unlock()
	if over {
		linkSlowCloses.Inc()
		l.close()
		return false
	}
	linkFramesOut.Inc()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return true
}

// deliver queues one server frame for one session.
func (l *link) deliver(session uint64, payload []byte) bool {
	return l.appendFrames(func(b []byte) []byte {
		return tierlink.AppendFrame(b, tierlink.TypeDeliver, session, payload)
	})
}

// deliverMulti queues one server frame for several sessions of this link.
func (l *link) deliverMulti(sessions []uint64, payload []byte) bool {
	if len(sessions) == 1 {
		return l.deliver(sessions[0], payload)
	}
	return l.appendFrames(func(b []byte) []byte {
		for len(sessions) > 0 {
			n := min(len(sessions), tierlink.MaxMultiSessions)
			b = tierlink.AppendMulti(b, sessions[:n], payload)
			sessions = sessions[n:]
		}
		return b
	})
}

// kick asks the connection node to close a session.
func (l *link) kick(session uint64, code uint16, reason string) bool {
	return l.appendFrames(func(b []byte) []byte {
		return tierlink.AppendKick(b, session, code, reason)
	})
}

// flushed returns a channel that is closed once every frame queued before
// the call was written to the connection, or the link closed.
func (l *link) flushed() <-chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || (len(l.buf) == 0 && !l.writing) {
		close(ch)
		return ch
	}
	l.flushers = append(l.flushers, ch)
	return ch
}

// wakeFlushersLocked closes the flush waiters. l.mu held.
func (l *link) wakeFlushersLocked() {
	for _, ch := range l.flushers {
		close(ch)
	}
	l.flushers = nil
}

func (l *link) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.wakeFlushersLocked()
	l.mu.Unlock()
	untrackLink(l)
	close(l.done)
	_ = l.conn.Close()
}

// writeLoop writes queued frames until the link closes. It swaps two
// buffers so that steady-state writing does not allocate.
func (l *link) writeLoop() {
	var spare []byte
	for {
		select {
		case <-l.notify:
		case <-l.done:
			return
		}
		l.mu.Lock()
		out := l.buf
		l.buf = spare[:0]
		l.writing = len(out) > 0
		l.mu.Unlock()
		if len(out) == 0 {
			spare = out
			continue
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
		if _, err := l.conn.Write(out); err != nil {
			l.close()
			return
		}
		l.mu.Lock()
		l.writing = false
		if len(l.buf) == 0 {
			l.wakeFlushersLocked()
		}
		l.mu.Unlock()
		if cap(out) > spareLinkCap {
			out = nil
		}
		spare = out
	}
}

// linkHandler is what the link server calls for each received frame.
type linkHandler interface {
	onOpen(l *link, session uint64, o tierlink.Open)
	onData(l *link, session uint64, payload []byte)
	onClose(l *link, session uint64, code uint16)
	onLinkDown(l *link)
	// onPeerHello accepts (true) or refuses a link from another logic node
	// that announced its id and link address.
	onPeerHello(l *link, id, addr string) bool
	// onPeerFrame handles one frame from another logic node; an error
	// closes the link.
	onPeerFrame(l *link, f tierlink.Frame) error
	// onPeerGone is called when a link another logic node dialed closes.
	onPeerGone(l *link)
}

// serveLinks accepts tier links on ln until ctx is done. With tlsConf (the
// listener's TLS), established links are rechecked every reload interval:
// one whose peer certificate was revoked since (link_tls.deny_file) is cut.
func serveLinks(ctx context.Context, ln net.Listener, cfg Config, secret tierlink.Secret, tlsConf *tls.Config, h linkHandler, log *slog.Logger) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{} // -> its TLS handshake is done (only those are rechecked)
	go func() {
		<-ctx.Done()
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	if tlsConf != nil && tlsConf.VerifyConnection != nil {
		go func() {
			t := time.NewTicker(cfg.LinkTLS.RecheckInterval())
			defer t.Stop()
			var live []net.Conn
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				mu.Lock()
				for c, shook := range conns {
					if shook { // ConnectionState would wait for a handshake in progress
						live = append(live, c)
					}
				}
				mu.Unlock()
				for _, c := range live {
					if err := tlsconf.Recheck(tlsConf, c); err != nil {
						linksRevoked.Inc()
						log.Warn("tier link cut: its peer's certificate is revoked", "remote", c.RemoteAddr().String(), "err", err)
						_ = c.Close()
					}
				}
				clear(live)
				live = live[:0]
			}
		}()
	}
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return fmt.Errorf("cannot accept tier link: %w", err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		mu.Lock()
		conns[c] = false
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			if tc, ok := c.(*tls.Conn); ok {
				_ = tc.SetDeadline(time.Now().Add(linkHandshakeTimeout))
				if err := tc.Handshake(); err != nil {
					linkAuthFailed.Inc()
					log.Warn("tier link refused: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
					_ = c.Close()
					return
				}
				mu.Lock()
				conns[c] = true
				mu.Unlock()
			}
			serveLink(c, cfg, secret, h, log)
		}()
	}
}

// linkAuthenticated reports whether a link's dialer is authenticated: it
// proved the link secret, or it showed a client certificate the link's
// TLS verified (mutual TLS).
func linkAuthenticated(c net.Conn, acc tierlink.Accepted) bool {
	if acc.Proved {
		return true
	}
	tc, ok := c.(*tls.Conn)
	return ok && len(tc.ConnectionState().VerifiedChains) > 0
}

// acceptHandshake runs the link handshake after the first frame and
// refuses a dialer that is not authenticated. It writes to c directly
// (before the link's write loop starts).
func acceptHandshake(c net.Conn, r *tierlink.Reader, f tierlink.Frame, nodeID string, secret tierlink.Secret, log *slog.Logger) (tierlink.Accepted, bool) {
	acc, err := tierlink.AcceptHandshake(c, r, f, nodeID, secret, tierlink.Binding(c))
	if err == nil && !linkAuthenticated(c, acc) {
		err = fmt.Errorf("%w: no link secret and no verified client certificate", tierlink.ErrAuth)
	}
	if id, _, _ := strings.Cut(acc.Hello.NodeID, "|"); err == nil && f.Type == tierlink.TypePeerHello && id == nodeID {
		// This node's own hello, relayed back to it.
		err = fmt.Errorf("%w: a peer hello with this node's own id", tierlink.ErrAuth)
	}
	if err != nil {
		if errors.Is(err, tierlink.ErrAuth) {
			linkAuthFailed.Inc()
		} else {
			linkProtocolError.Inc()
		}
		log.Warn("tier link refused", "remote", c.RemoteAddr().String(), "hello", f.Type.String(), "err", err)
		return acc, false
	}
	return acc, true
}

func serveLink(c net.Conn, cfg Config, secret tierlink.Secret, h linkHandler, log *slog.Logger) {
	l := newLink(c, cfg.LinkQueueLimit, cfg.LinkWriteTimeout)
	defer l.close()
	r := tierlink.NewReader(c, 64<<10, tierlink.MaxFrame)

	_ = c.SetDeadline(time.Now().Add(linkHandshakeTimeout))
	r.SetMaxFrame(tierlink.HandshakeMaxFrame) // until the dialer is authenticated
	f, err := r.Next()
	if err != nil || (f.Type != tierlink.TypeHello && f.Type != tierlink.TypePeerHello) {
		log.Warn("tier link without hello", "remote", c.RemoteAddr().String(), "err", err)
		linkProtocolError.Inc()
		return
	}
	acc, ok := acceptHandshake(c, r, f, cfg.NodeID, secret, log)
	if !ok {
		return
	}
	r.SetMaxFrame(tierlink.MaxFrame)
	_ = c.SetWriteDeadline(time.Time{})
	l.version = acc.Version
	if f.Type == tierlink.TypePeerHello {
		servePeer(c, r, l, acc.Hello, cfg.LinkIdleTimeout, h, log)
		return
	}
	l.node = acc.Hello.NodeID
	go l.writeLoop()
	linksOpen.Inc()
	log.Info("tier link up", "node", l.node, "remote", c.RemoteAddr().String())
	defer func() {
		linksClosed.Inc()
		h.onLinkDown(l)
		log.Info("tier link down", "node", l.node, "remote", c.RemoteAddr().String())
	}()

	for {
		_ = c.SetReadDeadline(time.Now().Add(cfg.LinkIdleTimeout))
		f, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Warn("tier link read failed", "node", l.node, "err", err)
			}
			return
		}
		linkFramesIn.Inc()
		switch f.Type {
		case tierlink.TypeData:
			h.onData(l, f.Session, f.Payload)
		case tierlink.TypeOpen:
			o, err := tierlink.ParseOpen(f.Payload)
			if err != nil {
				linkProtocolError.Inc()
				log.Warn("bad open frame", "node", l.node, "err", err)
				return
			}
			h.onOpen(l, f.Session, o)
		case tierlink.TypeClose:
			code, err := tierlink.ParseClose(f.Payload)
			if err != nil {
				linkProtocolError.Inc()
				return
			}
			h.onClose(l, f.Session, code)
		case tierlink.TypePing:
			nonce, err := tierlink.ParsePing(f.Payload)
			if err != nil {
				linkProtocolError.Inc()
				return
			}
			l.appendFrames(func(b []byte) []byte { return tierlink.AppendPing(b, tierlink.TypePong, nonce) })
		case tierlink.TypePong:
		default:
			linkProtocolError.Inc()
			log.Warn("unexpected tier-link frame", "node", l.node, "type", f.Type.String())
			return
		}
	}
}

// servePeer serves a link another logic node dialed: it sends requests and
// fan-outs, this node answers on the same link.
func servePeer(c net.Conn, r *tierlink.Reader, l *link, hello tierlink.Hello, idle time.Duration, h linkHandler, log *slog.Logger) {
	id, addr, _ := strings.Cut(hello.NodeID, "|")
	if id == "" {
		log.Warn("peer link with bad hello: no node id", "remote", c.RemoteAddr().String())
		linkProtocolError.Inc()
		return
	}
	l.node = id
	if !h.onPeerHello(l, id, addr) {
		log.Warn("peer link refused: this node has no cluster configured", "peer", id, "remote", c.RemoteAddr().String())
		return
	}
	go l.writeLoop()
	log.Debug("peer link accepted", "peer", id, "remote", c.RemoteAddr().String())
	defer h.onPeerGone(l)
	for {
		_ = c.SetReadDeadline(time.Now().Add(idle))
		f, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("peer link read failed", "peer", id, "err", err)
			}
			return
		}
		linkFramesIn.Inc()
		if err := h.onPeerFrame(l, f); err != nil {
			linkProtocolError.Inc()
			log.Warn("bad frame on peer link", "peer", id, "type", f.Type.String(), "err", err)
			return
		}
	}
}
