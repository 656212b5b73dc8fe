package memlink

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// pipeCap is how many unread bytes one direction of a connection holds
// before a writer waits: like a socket buffer, it lets a writer go on while
// its reader is busy, and bounds what a slow reader leaves queued.
const pipeCap = 4 << 20

// keepCap is the largest drained buffer a pipe keeps for reuse.
const keepCap = 64 << 10

// pipe is one direction of a connection: bytes written and not yet read.
// Waiters wait on cond; every change that could let one go on (data, room,
// a close, a deadline set or passed) broadcasts.
type pipe struct {
	mu       sync.Mutex // guards the following
	cond     sync.Cond  // on mu
	buf      []byte     // buf[off:] is unread
	off      int
	wclosed  bool // the writing end closed: EOF after the rest
	rclosed  bool // the reading end closed: writes fail
	rdl, wdl time.Time
	rtimer   *time.Timer // broadcasts when rdl passes
	wtimer   *time.Timer // broadcasts when wdl passes

	wmu sync.Mutex // serialises Writes, so that one Write's bytes stay together
}

func newPipe() *pipe {
	p := &pipe{}
	p.cond.L = &p.mu
	return p
}

// passed reports whether the deadline dl is set and past.
func passed(dl time.Time) bool { return !dl.IsZero() && !time.Now().Before(dl) }

func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch {
		case p.rclosed:
			return 0, net.ErrClosed
		case passed(p.rdl):
			return 0, os.ErrDeadlineExceeded
		case len(b) == 0:
			return 0, nil
		case len(p.buf) > p.off:
			n := copy(b, p.buf[p.off:])
			p.off += n
			if p.off == len(p.buf) {
				p.buf, p.off = p.buf[:0], 0
				if cap(p.buf) > keepCap {
					p.buf = nil
				}
			}
			p.cond.Broadcast() // room for a writer
			return n, nil
		case p.wclosed:
			return 0, io.EOF
		}
		p.cond.Wait()
	}
}

func (p *pipe) write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	written := 0
	for {
		switch {
		case p.wclosed:
			return written, net.ErrClosed
		case p.rclosed:
			return written, io.ErrClosedPipe
		case passed(p.wdl):
			return written, os.ErrDeadlineExceeded
		case len(b) == 0:
			return written, nil
		}
		if room := pipeCap - (len(p.buf) - p.off); room > 0 {
			// Reclaim what was read once it is at least as much as what
			// is not: each unread byte moves at most once per its own size
			// of reads.
			if p.off > 0 && p.off >= len(p.buf)-p.off {
				n := copy(p.buf, p.buf[p.off:])
				p.buf, p.off = p.buf[:n], 0
			}
			n := min(room, len(b))
			p.buf = append(p.buf, b[:n]...)
			b = b[n:]
			written += n
			p.cond.Broadcast() // data for the reader
			continue
		}
		p.cond.Wait()
	}
}

// setDeadline sets *dl to t and arms *timer to broadcast when it passes;
// it broadcasts now so that waiters recheck. p.mu must not be held.
func (p *pipe) setDeadline(dl *time.Time, timer **time.Timer, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*dl = t
	if *timer != nil {
		(*timer).Stop()
		*timer = nil
	}
	if !t.IsZero() {
		if d := time.Until(t); d > 0 {
			*timer = time.AfterFunc(d, func() {
				p.mu.Lock()
				p.cond.Broadcast()
				p.mu.Unlock()
			})
		}
	}
	p.cond.Broadcast()
}

// bufConn is one end of a buffered in-memory connection. Safe for
// concurrent use, as a net.Conn must be.
type bufConn struct {
	rx, tx    *pipe
	closeOnce sync.Once
}

// bufPipe returns the two ends of a buffered in-memory connection.
func bufPipe() (net.Conn, net.Conn) {
	ab, ba := newPipe(), newPipe()
	return &bufConn{rx: ba, tx: ab}, &bufConn{rx: ab, tx: ba}
}

func (c *bufConn) Read(b []byte) (int, error)  { return c.rx.read(b) }
func (c *bufConn) Write(b []byte) (int, error) { return c.tx.write(b) }

// Close ends both directions: the peer reads what was written, then EOF,
// and its writes fail; this end's reads and writes fail.
func (c *bufConn) Close() error {
	c.closeOnce.Do(func() {
		for _, side := range []struct {
			p     *pipe
			flag  *bool
			timer **time.Timer
		}{{c.rx, &c.rx.rclosed, &c.rx.rtimer}, {c.tx, &c.tx.wclosed, &c.tx.wtimer}} {
			side.p.mu.Lock()
			*side.flag = true
			if *side.timer != nil {
				(*side.timer).Stop()
			}
			side.p.cond.Broadcast()
			side.p.mu.Unlock()
		}
	})
	return nil
}

func (c *bufConn) LocalAddr() net.Addr  { return Addr{} }
func (c *bufConn) RemoteAddr() net.Addr { return Addr{} }

func (c *bufConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *bufConn) SetReadDeadline(t time.Time) error {
	c.rx.setDeadline(&c.rx.rdl, &c.rx.rtimer, t)
	return nil
}

func (c *bufConn) SetWriteDeadline(t time.Time) error {
	c.tx.setDeadline(&c.tx.wdl, &c.tx.wtimer, t)
	return nil
}
