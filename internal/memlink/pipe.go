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
// a close, a deadline passed) broadcasts.
type pipe struct {
	mu       sync.Mutex // guards the following
	cond     sync.Cond  // on mu
	buf      []byte     // buf[off:] is unread
	off      int
	wclosed  bool     // the writing end closed: EOF after the rest
	rclosed  bool     // the reading end closed: writes fail
	rdl, wdl deadline // of reads and writes

	wmu sync.Mutex // serialises Writes, so that one Write's bytes stay together
}

// deadline is one direction's deadline and the timer that broadcasts when
// it passes. The timer is made once and re-armed only when a deadline
// moves earlier than its next firing: callers that push a deadline ahead
// before every read or write (as the tier link does) cost no timer work,
// and a timer that fires before the deadline re-arms itself. Guarded by
// the pipe's mu.
type deadline struct {
	at      time.Time   // zero: none
	timer   *time.Timer // nil until first armed
	fires   time.Time   // when timer fires next; zero when not armed
	stopped bool        // the connection closed: never armed again
}

// passed reports whether the deadline is set and past.
func (d *deadline) passed() bool { return !d.at.IsZero() && !time.Now().Before(d.at) }

func newPipe() *pipe {
	p := &pipe{}
	p.cond.L = &p.mu
	return p
}

func (p *pipe) read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch {
		case p.rclosed:
			return 0, net.ErrClosed
		case p.rdl.passed():
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
		case p.wdl.passed():
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

// setDeadline sets d to t. A deadline already past wakes the waiters
// now; a later one arms d's timer unless it fires earlier anyway. p.mu
// must not be held.
func (p *pipe) setDeadline(d *deadline, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.at = t
	if t.IsZero() || d.stopped {
		return // a pending timer fires and finds nothing to do
	}
	until := time.Until(t)
	if until <= 0 {
		p.cond.Broadcast()
		return
	}
	if !d.fires.IsZero() && !d.fires.After(t) {
		return // fires first, then re-arms for t
	}
	d.fires = t
	if d.timer == nil {
		d.timer = time.AfterFunc(until, func() { p.fire(d) })
	} else {
		d.timer.Reset(until)
	}
}

// fire runs when d's timer fires: waiters recheck once the deadline has
// passed, and the timer re-arms for a deadline that moved later.
func (p *pipe) fire(d *deadline) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d.fires = time.Time{}
	if d.at.IsZero() || d.stopped {
		return
	}
	if until := time.Until(d.at); until > 0 {
		d.fires = d.at
		d.timer.Reset(until)
		return
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
			p    *pipe
			flag *bool
			dl   *deadline
		}{{c.rx, &c.rx.rclosed, &c.rx.rdl}, {c.tx, &c.tx.wclosed, &c.tx.wdl}} {
			side.p.mu.Lock()
			*side.flag = true
			side.dl.stopped = true
			if side.dl.timer != nil {
				side.dl.timer.Stop()
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
	c.rx.setDeadline(&c.rx.rdl, t)
	return nil
}

func (c *bufConn) SetWriteDeadline(t time.Time) error {
	c.tx.setDeadline(&c.tx.wdl, t)
	return nil
}
