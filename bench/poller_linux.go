//go:build linux

package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/wsclient"
)

// maxServerFrame bounds one server frame's payload: bench clients are idle,
// so anything bigger is a protocol problem, not traffic.
const maxServerFrame = 1 << 20

// Connection states in the poller.
const (
	stHello  uint8 = iota // waiting for hello
	stSync                // sync sent, waiting for synced
	stHeld                // established; answering pings
	stClosed              // closed (slot free)
)

// pconn is one held connection: a raw, non-blocking socket descriptor and
// the little state an idle client needs. Leftover bytes of a partial frame
// live in buf only until the frame completes.
type pconn struct {
	fd       int32
	state    uint8
	mask     uint32
	deadline int64  // unix ns by which hello (and synced) must arrive
	buf      []byte // partial frame, nil when none
	ackBuf   []byte // scratch for ack frames, nil unless a msg arrived
}

// pollerEvents is what the poller reports to its owner. Calls come from
// the poller goroutine and from add's caller.
type pollerEvents interface {
	established(now time.Time)
	failed(reason string)  // setup failed (before established)
	dropped(reason string) // an established connection ended
	pinged()               // a ping was answered
}

// poller holds many idle client connections on one epoll instance and one
// goroutine, so a held connection costs a descriptor and a pconn instead
// of a goroutine and its stack.
type poller struct {
	epfd  int
	sync  bool
	ev    pollerEvents
	slots []atomic.Pointer[pconn] // by fd

	mu      sync.Mutex // guards pending
	pending map[int32]*pconn

	stopping atomic.Bool
	done     chan struct{}
	rbuf     []byte
	wbuf     []byte
	seed     uint32
}

func newPoller(maxFD int, doSync bool, ev pollerEvents) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errors.New("cannot create epoll instance: " + err.Error())
	}
	p := &poller{
		epfd: epfd, sync: doSync, ev: ev,
		slots:   make([]atomic.Pointer[pconn], maxFD),
		pending: map[int32]*pconn{},
		done:    make(chan struct{}),
		rbuf:    make([]byte, 64<<10),
		seed:    uint32(time.Now().UnixNano()),
	}
	go p.loop()
	return p, nil
}

// add takes ownership of fd (non-blocking, already upgraded) with the
// bytes the handshake read past the HTTP response. deadline bounds the
// wait for hello and synced.
func (p *poller) add(fd int, pending []byte, deadline time.Time) {
	if fd >= len(p.slots) {
		syscall.Close(fd)
		p.ev.failed("dial:fd_over_limit")
		return
	}
	c := &pconn{fd: int32(fd), mask: p.seed ^ uint32(fd)*2654435761, deadline: deadline.UnixNano()}
	if len(pending) > 0 {
		// Nobody else sees c yet: handle what the handshake read ahead.
		var wbuf []byte
		if !p.consume(c, pending, &wbuf) {
			return
		}
	}
	if c.state == stClosed {
		return
	}
	if c.state != stHeld {
		p.mu.Lock()
		p.pending[c.fd] = c
		p.mu.Unlock()
	}
	p.slots[fd].Store(c)
	if err := syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		p.close(c, "dial:epoll_add", false)
	}
}

func (p *poller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	lastSweep := time.Now()
	for !p.stopping.Load() {
		n, err := syscall.EpollWait(p.epfd, events, 200)
		if err != nil && err != syscall.EINTR {
			return
		}
		for i := 0; i < n; i++ {
			c := p.slots[events[i].Fd].Load()
			if c == nil || c.state == stClosed {
				continue
			}
			p.readable(c)
		}
		if now := time.Now(); now.Sub(lastSweep) >= 200*time.Millisecond {
			lastSweep = now
			p.sweep(now)
		}
	}
}

// sweep closes connections whose hello or synced is overdue.
func (p *poller) sweep(now time.Time) {
	var late []*pconn
	p.mu.Lock()
	for _, c := range p.pending {
		if c.deadline < now.UnixNano() {
			late = append(late, c)
		}
	}
	p.mu.Unlock()
	for _, c := range late {
		if c.state == stHello {
			p.close(c, "hello:timeout", true)
		} else if c.state == stSync {
			p.close(c, "sync:timeout", true)
		}
	}
}

// readable reads everything the socket has and handles whole frames.
func (p *poller) readable(c *pconn) {
	for c.state != stClosed {
		n, err := syscall.Read(int(c.fd), p.rbuf)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			return
		case err != nil:
			p.close(c, readErrReason(c, err), c.state != stHeld)
			return
		case n == 0:
			p.close(c, stateReason(c, "eof"), c.state != stHeld)
			return
		}
		data := p.rbuf[:n]
		if len(c.buf) > 0 {
			c.buf = append(c.buf, data...)
			data = c.buf
		}
		if !p.consume(c, data, &p.wbuf) {
			return
		}
		if n < len(p.rbuf) {
			return
		}
	}
}

// consume handles the whole frames in data and keeps a partial one in
// c.buf. It returns false when c was closed.
func (p *poller) consume(c *pconn, data []byte, wbuf *[]byte) bool {
	for len(data) > 0 {
		f, n, err := wsclient.ParseServerFrame(data, maxServerFrame)
		if err != nil {
			p.close(c, stateReason(c, "protocol"), c.state != stHeld)
			return false
		}
		if n == 0 {
			break
		}
		if !p.frame(c, f, wbuf) {
			return false
		}
		data = data[n:]
	}
	if len(data) == 0 {
		c.buf = nil
	} else {
		c.buf = append(c.buf[:0:0], data...)
	}
	return true
}

// setupFrame is the part of a server frame the setup looks at.
type setupFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Code string `json:"code"`
	Chat string `json:"chat"`
	Seq  uint64 `json:"seq"`
}

var typeMsg = []byte(`"type":"msg"`)

// frame handles one frame; false means c was closed.
func (p *poller) frame(c *pconn, f wsclient.Frame, wbuf *[]byte) bool {
	switch f.Op {
	case wsclient.OpPing:
		p.pinged()
		return p.write(c, wsclient.OpPong, f.Payload, wbuf)
	case wsclient.OpPong:
		return true
	case wsclient.OpClose:
		code := 1005
		if len(f.Payload) >= 2 {
			code = int(binary.BigEndian.Uint16(f.Payload))
		}
		_ = p.write(c, wsclient.OpClose, f.Payload[:min(2, len(f.Payload))], wbuf)
		p.close(c, stateReason(c, "close_"+strconv.Itoa(code)), c.state != stHeld)
		return false
	case wsclient.OpText:
	default:
		p.close(c, stateReason(c, "unexpected_frame"), c.state != stHeld)
		return false
	}
	if !f.Fin {
		// connsrv never fragments; a bench client does not reassemble.
		p.close(c, stateReason(c, "fragmented"), c.state != stHeld)
		return false
	}
	if c.state == stHeld && !bytes.Contains(f.Payload, typeMsg) {
		return true
	}
	var sf setupFrame
	if json.Unmarshal(f.Payload, &sf) != nil {
		return true
	}
	switch {
	case sf.Type == "msg":
		c.ackBuf = append(c.ackBuf[:0], `{"type":"ack","chat":`...)
		c.ackBuf = strconv.AppendQuote(c.ackBuf, sf.Chat)
		c.ackBuf = append(c.ackBuf, `,"seq":`...)
		c.ackBuf = strconv.AppendUint(c.ackBuf, sf.Seq, 10)
		c.ackBuf = append(c.ackBuf, '}')
		return p.write(c, wsclient.OpText, c.ackBuf, wbuf)
	case c.state == stHello && sf.Type == "hello":
		if !p.sync {
			p.held(c)
			return true
		}
		c.state = stSync
		return p.write(c, wsclient.OpText, []byte(`{"type":"sync","id":"b"}`), wbuf)
	case c.state == stSync && sf.Type == "synced" && sf.ID == "b":
		p.held(c)
	case c.state == stSync && sf.Type == "error" && sf.ID == "b":
		p.close(c, "sync:error_"+sf.Code, true)
		return false
	}
	return true
}

func (p *poller) pinged() { p.ev.pinged() }

func (p *poller) held(c *pconn) {
	c.state = stHeld
	p.mu.Lock()
	delete(p.pending, c.fd)
	p.mu.Unlock()
	p.ev.established(time.Now())
}

// write sends one small frame; a socket that cannot take ~130 bytes at
// once is treated as broken (an idle client never has a backlog).
func (p *poller) write(c *pconn, op byte, payload []byte, wbuf *[]byte) bool {
	c.mask = c.mask*1664525 + 1013904223
	b := wsclient.AppendClientFrame((*wbuf)[:0], op, payload, c.mask)
	*wbuf = b
	n, err := syscall.Write(int(c.fd), b)
	if err == nil && n == len(b) {
		return true
	}
	reason := "write:error"
	if err == syscall.EAGAIN || err == nil {
		reason = "write:blocked"
	}
	p.close(c, stateReason(c, reason), c.state != stHeld)
	return false
}

// close closes c and reports it as a setup failure or a drop (none while
// stopping).
func (p *poller) close(c *pconn, reason string, setup bool) {
	if c.state == stClosed {
		return
	}
	c.state = stClosed
	p.mu.Lock()
	delete(p.pending, c.fd)
	p.mu.Unlock()
	p.slots[c.fd].CompareAndSwap(c, nil)
	syscall.Close(int(c.fd))
	c.buf, c.ackBuf = nil, nil
	if p.stopping.Load() {
		return
	}
	if setup {
		p.ev.failed(reason)
	} else {
		p.ev.dropped(reason)
	}
}

// stop ends the loop and closes every connection (without close frames:
// the server sees EOF).
func (p *poller) stop() {
	p.stopping.Store(true)
	<-p.done
	for i := range p.slots {
		if c := p.slots[i].Load(); c != nil {
			p.close(c, "", false)
		}
	}
	syscall.Close(p.epfd)
}

func stateReason(c *pconn, what string) string {
	switch c.state {
	case stHello:
		return "hello:" + what
	case stSync:
		return "sync:" + what
	}
	return what
}

func readErrReason(c *pconn, err error) string {
	if err == syscall.ECONNRESET {
		return stateReason(c, "reset")
	}
	return stateReason(c, "read_error")
}
