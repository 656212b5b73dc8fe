package wsclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// DefaultMaxMessage is the largest server message a Conn accepts when the
// Dialer does not say (bytes).
const DefaultMaxMessage = 1 << 20

// HandshakeError is a refused WebSocket upgrade (an HTTP status other than
// 101).
type HandshakeError struct {
	Status int // HTTP status, e.g. 401
}

func (e *HandshakeError) Error() string {
	return "websocket upgrade refused: HTTP " + strconv.Itoa(e.Status)
}

// CloseError is a close frame received from the server.
type CloseError struct {
	Code   int // 1005 when the frame had no code
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("connection closed by server: code %d %q", e.Code, e.Reason)
}

// Dialer opens connections.
type Dialer struct {
	// URL is the WebSocket URL (ws:// or wss://host:port/path).
	URL string
	// TokenInQuery sends the token as the token query parameter instead
	// of an Authorization: Bearer header (what browsers must do).
	TokenInQuery bool
	// Timeout bounds the TCP connect plus the upgrade. Zero means 10s.
	Timeout time.Duration
	// WriteTimeout bounds the writes: a write fails when the socket takes
	// no data for between WriteTimeout/2 and WriteTimeout (the deadline is
	// moved only when half of it is used up: setting it costs a timer
	// update per write). Zero means 10s.
	WriteTimeout time.Duration
	// ReadBuffer is the size of the per-connection read buffer in bytes.
	// Zero means none: every frame header costs a read syscall, which is
	// right for idle connections and wrong for busy ones.
	ReadBuffer int
	// MaxMessage is the largest message (all its fragments) a Conn
	// accepts; a bigger one closes the connection with 1009. Zero means
	// DefaultMaxMessage.
	MaxMessage int
	// Observe, when set, sees every text message written (out) and every
	// message read, before it is written or returned. It must not keep
	// the slice.
	Observe func(out bool, msg []byte)
	// Control, when set, is the net.Dialer's Control: it runs on the
	// socket before it connects (bench sets IP_BIND_ADDRESS_NO_PORT).
	Control func(network, address string, c syscall.RawConn) error
}

// Dial opens one connection for token and device (the device query
// parameter, omitted when empty), binding the local end to local when it
// is not nil.
func (d *Dialer) Dial(ctx context.Context, token, device string, local net.IP) (*Conn, error) {
	nc, pending, err := d.DialRaw(ctx, token, device, local)
	if err != nil {
		return nil, err
	}
	var r io.Reader = nc
	if d.ReadBuffer > 0 {
		r = bufio.NewReaderSize(nc, d.ReadBuffer)
	}
	if len(pending) > 0 {
		r = io.MultiReader(bytes.NewReader(pending), r)
	}
	c := newConn(nc, r, d.MaxMessage, d.WriteTimeout)
	c.observe = d.Observe
	return c, nil
}

// DialRaw connects and upgrades like Dial but returns the socket itself
// and the bytes the server sent right after the upgrade (the hello
// frame, when it came with the response), for a caller that drives the
// socket with ParseServerFrame and AppendClientFrame (bench's poller). A
// refused upgrade is a *HandshakeError.
func (d *Dialer) DialRaw(ctx context.Context, token, device string, local net.IP) (nc net.Conn, pending []byte, err error) {
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot parse url %q: %w", d.URL, err)
	}
	q := u.Query()
	if device != "" {
		q.Set("device", device)
	}
	timeout := orDefault(d.Timeout, 10*time.Second)
	nd := net.Dialer{Timeout: timeout, Control: d.Control}
	if local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: local}
	}
	wd := ws.Dialer{Timeout: timeout, NetDial: nd.DialContext}
	if d.TokenInQuery {
		q.Set("token", token)
	} else {
		wd.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})
	}
	u.RawQuery = q.Encode()
	nc, br, _, err := wd.Dial(ctx, u.String())
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, nil, &HandshakeError{Status: int(se)}
		}
		return nil, nil, err
	}
	if br != nil {
		// Keep the buffered bytes, give the pooled buffer back.
		b, _ := br.Peek(br.Buffered())
		pending = bytes.Clone(b)
		ws.PutReader(br)
	}
	return nc, pending, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Conn is one client WebSocket connection.
type Conn struct {
	nc       net.Conn
	maxMsg   int
	wtimeout time.Duration
	observe  func(out bool, msg []byte)
	lastRead atomic.Int64 // Unix ns of the last frame header read

	// The reader's alone.
	r        io.Reader
	readIdle time.Duration          // read deadline after each frame; 0 = none
	hdr      [ws.MaxHeaderSize]byte // header scratch
	ctl      [125]byte              // control frame payload
	msg      []byte                 // message buffer

	wmu      sync.Mutex // guards the following
	wbuf     []byte
	wclosed  bool      // a close frame was written, or a write failed
	deadline time.Time // the write deadline set on nc
}

func newConn(nc net.Conn, r io.Reader, maxMsg int, wtimeout time.Duration) *Conn {
	if maxMsg <= 0 {
		maxMsg = DefaultMaxMessage
	}
	return &Conn{nc: nc, r: r, maxMsg: maxMsg, wtimeout: orDefault(wtimeout, 10*time.Second)}
}

// LocalAddr returns the local address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// LastRead returns when the last frame header arrived (the zero time
// before the first).
func (c *Conn) LastRead() time.Time {
	if ns := c.lastRead.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// SetReadIdle makes ReadMessage give up when no frame arrives for d
// (moved after every frame); 0 turns it off. Reader only.
func (c *Conn) SetReadIdle(d time.Duration) {
	c.readIdle = d
	if d == 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// SetReadDeadline sets the socket's read deadline (for example, for the
// first frame). Reader only.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// ReadMessage returns the next data message (fragments reassembled). The
// slice is valid until the next call. It answers pings, echoes a close and
// returns *CloseError (Code 1005 when the frame had no code), and closes
// the connection on a protocol violation (including a masked server
// frame, RFC 6455 section 5.1) with an error wrapping ErrProtocol. Reader
// only.
func (c *Conn) ReadMessage() ([]byte, error) {
	c.msg = c.msg[:0]
	inMsg := false
	for {
		if c.readIdle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readIdle))
		}
		h, err := ws.ReadHeaderBuffer(c.r, c.hdr[:2:len(c.hdr)])
		if err != nil {
			return nil, err
		}
		c.lastRead.Store(time.Now().UnixNano())
		if h.Rsv != 0 {
			return nil, c.fail(CloseProtocolError, "reserved bits set")
		}
		if h.Masked {
			return nil, c.fail(CloseProtocolError, "masked server frame")
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				return nil, c.fail(CloseProtocolError, "bad control frame")
			}
			p := c.ctl[:h.Length]
			if _, err := io.ReadFull(c.r, p); err != nil {
				return nil, err
			}
			switch byte(h.OpCode) {
			case OpPing:
				_ = c.write(OpPong, p) // a failed write shows in the next read
			case OpClose:
				ce := &CloseError{Code: closeNoStatus}
				if len(p) >= 2 {
					ce.Code = int(binary.BigEndian.Uint16(p))
					ce.Reason = string(p[2:])
				}
				echo := ce.Code
				if echo == closeNoStatus {
					echo = CloseNormal
				}
				_ = c.CloseWith(echo, "")
				return nil, ce
			}
			continue
		}
		switch byte(h.OpCode) {
		case OpContinuation:
			if !inMsg {
				return nil, c.fail(CloseProtocolError, "unexpected continuation")
			}
		case OpText, OpBinary:
			if inMsg {
				return nil, c.fail(CloseProtocolError, "expected continuation")
			}
			inMsg = true
		default:
			return nil, c.fail(CloseProtocolError, "reserved opcode")
		}
		if h.Length < 0 || int64(len(c.msg))+h.Length > int64(c.maxMsg) {
			_ = c.CloseWith(CloseTooBig, "message too big")
			return nil, fmt.Errorf("cannot read message: %w: longer than %d bytes", ErrProtocol, c.maxMsg)
		}
		n := len(c.msg)
		c.msg = slices.Grow(c.msg, int(h.Length))[:n+int(h.Length)]
		if _, err := io.ReadFull(c.r, c.msg[n:]); err != nil {
			return nil, err
		}
		if h.Fin {
			if c.observe != nil {
				c.observe(false, c.msg)
			}
			return c.msg, nil
		}
	}
}

// fail closes the connection with code and returns the protocol error.
func (c *Conn) fail(code int, what string) error {
	_ = c.CloseWith(code, what)
	return fmt.Errorf("cannot read frame: %w: %s", ErrProtocol, what)
}

// WriteText writes one masked text frame; p is not modified.
func (c *Conn) WriteText(p []byte) error {
	if c.observe != nil {
		c.observe(true, p)
	}
	return c.write(OpText, p)
}

// WriteTexts writes one masked text frame per payload with a single write
// call (one syscall for a batch, e.g. acks of several chats).
func (c *Conn) WriteTexts(ps [][]byte) error {
	if c.observe != nil {
		for _, p := range ps {
			c.observe(true, p)
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return net.ErrClosed
	}
	b := c.wbuf[:0]
	for _, p := range ps {
		b = AppendClientFrame(b, OpText, p, c.nextMaskLocked())
	}
	return c.flushLocked(b, OpText)
}

func (c *Conn) write(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return net.ErrClosed
	}
	return c.flushLocked(AppendClientFrame(c.wbuf[:0], op, p, c.nextMaskLocked()), op)
}

// nextMaskLocked returns a fresh masking key: RFC 6455 (section 5.3) asks
// that a frame's key cannot be predicted from earlier ones. c.wmu held.
func (c *Conn) nextMaskLocked() uint32 { return rand.Uint32() }

// flushLocked writes b (frames ending with one of opcode op). The write
// deadline is moved only when less than half of the write timeout is
// left, not on every write: setting it costs a runtime timer update per
// call. c.wmu held.
func (c *Conn) flushLocked(b []byte, op byte) error {
	c.wbuf = b
	if len(c.wbuf) > 64<<10 {
		c.wbuf = nil // do not pin a large buffer
	}
	if now := time.Now(); c.deadline.Sub(now) < c.wtimeout/2 {
		c.deadline = now.Add(c.wtimeout)
		_ = c.nc.SetWriteDeadline(c.deadline)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.wclosed = true
		return fmt.Errorf("cannot write frame: %w", err)
	}
	if op == OpClose {
		c.wclosed = true
	}
	return nil
}

// CloseWith sends a close frame with code and reason (best effort, at
// most a second, once) and closes the socket.
func (c *Conn) CloseWith(code int, reason string) error {
	// First, so that a write stuck on a peer that stopped reading (holding
	// wmu) fails within the second too.
	_ = c.nc.SetWriteDeadline(time.Now().Add(min(c.wtimeout, time.Second)))
	c.wmu.Lock()
	if !c.wclosed {
		if len(reason) > 123 {
			reason = reason[:123]
		}
		body := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
		body = append(body, reason...)
		// At most a second for the close frame, whatever the write timeout:
		// the peer may have stopped reading.
		c.deadline = time.Time{}
		_ = c.nc.SetWriteDeadline(time.Now().Add(min(c.wtimeout, time.Second)))
		_, _ = c.nc.Write(AppendClientFrame(c.wbuf[:0], OpClose, body, c.nextMaskLocked()))
		c.wclosed = true
	}
	c.wmu.Unlock()
	return c.nc.Close()
}

// Close sends a normal close frame (best effort) and closes the socket.
// Later calls do nothing but close the socket again.
func (c *Conn) Close() error { return c.CloseWith(CloseNormal, "") }

// Drop closes the socket without a close frame, as a network failure
// would.
func (c *Conn) Drop() error {
	err := c.nc.Close() // first: it unblocks a writer holding wmu
	c.wmu.Lock()
	c.wclosed = true
	c.wmu.Unlock()
	return err
}
