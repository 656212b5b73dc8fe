package memlink

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// pipeCap is how many bytes one direction of a connection holds before a
// writer waits: like a socket buffer, it lets a writer go on while its
// reader is busy, and bounds what a slow reader leaves queued.
const pipeCap = 4 << 20

// pipe is one direction of a connection: bytes written and not yet read.
type pipe struct {
	mu       sync.Mutex // guards the following
	buf      []byte     // buf[off:] is unread
	off      int
	wclosed  bool // the writing end closed: EOF after the rest
	rclosed  bool // the reading end closed: writes fail
	rdl, wdl time.Time
	// readable and writable (capacity 1) wake a waiting reader or writer
	// after a change; a waiter rechecks, so a spurious wake is harmless.
	readable chan struct{}
	writable chan struct{}
}

func newPipe() *pipe {
	return &pipe{readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// wait blocks until c is signalled or the deadline dl (zero: none) passes;
// it reports false on the deadline.
func wait(c chan struct{}, dl time.Time) bool {
	if dl.IsZero() {
		<-c
		return true
	}
	d := time.Until(dl)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

func (p *pipe) read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		switch {
		case p.rclosed:
			p.mu.Unlock()
			return 0, net.ErrClosed
		case len(p.buf) > p.off:
			n := copy(b, p.buf[p.off:])
			p.off += n
			if p.off == len(p.buf) {
				p.buf, p.off = p.buf[:0], 0
			}
			p.mu.Unlock()
			wake(p.writable)
			return n, nil
		case p.wclosed:
			p.mu.Unlock()
			return 0, io.EOF
		}
		dl := p.rdl
		p.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if !wait(p.readable, dl) {
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (p *pipe) write(b []byte) (int, error) {
	written := 0
	for {
		p.mu.Lock()
		if p.rclosed || p.wclosed {
			p.mu.Unlock()
			return written, net.ErrClosed
		}
		if p.off > 0 && len(p.buf)+len(b) > cap(p.buf) {
			n := copy(p.buf, p.buf[p.off:]) // reclaim what was read
			p.buf, p.off = p.buf[:n], 0
		}
		if room := pipeCap - (len(p.buf) - p.off); room > 0 {
			n := min(room, len(b))
			p.buf = append(p.buf, b[:n]...)
			b = b[n:]
			written += n
			p.mu.Unlock()
			wake(p.readable)
			if len(b) == 0 {
				return written, nil
			}
			continue
		}
		dl := p.wdl
		p.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return written, os.ErrDeadlineExceeded
		}
		if !wait(p.writable, dl) {
			return written, os.ErrDeadlineExceeded
		}
	}
}

// bufConn is one end of a buffered in-memory connection.
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
		c.rx.mu.Lock()
		c.rx.rclosed = true
		c.rx.mu.Unlock()
		wake(c.rx.readable)
		wake(c.rx.writable)
		c.tx.mu.Lock()
		c.tx.wclosed = true
		c.tx.mu.Unlock()
		wake(c.tx.readable)
		wake(c.tx.writable)
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
	c.rx.mu.Lock()
	c.rx.rdl = t
	c.rx.mu.Unlock()
	wake(c.rx.readable) // a waiting reader rechecks its deadline
	return nil
}

func (c *bufConn) SetWriteDeadline(t time.Time) error {
	c.tx.mu.Lock()
	c.tx.wdl = t
	c.tx.mu.Unlock()
	wake(c.tx.writable)
	return nil
}
