package wsc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// MaxMessage is the largest server message ReadMessage accepts (bytes).
const MaxMessage = 1 << 20

// HandshakeError is returned by Dial when the server refused the upgrade.
type HandshakeError struct{ Status int }

func (e *HandshakeError) Error() string {
	return "wsc: upgrade refused with HTTP " + strconv.Itoa(e.Status)
}

// CloseError is returned by ReadMessage when the server closed the
// WebSocket with a close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("wsc: closed by server with %d %s", e.Code, e.Reason)
}

// Dialer opens connections. The zero value plus a URL works.
type Dialer struct {
	// URL is the WebSocket URL (ws://host:port/path).
	URL string
	// Timeout bounds the TCP connect plus the upgrade. Zero means 10s.
	Timeout time.Duration
	// WriteTimeout bounds each write. Zero means 10s.
	WriteTimeout time.Duration
	// ReadBuffer is the size of the per-connection read buffer in bytes.
	// Zero means none: every frame header costs a read syscall, which is
	// right for idle connections (bench) and wrong for busy ones.
	ReadBuffer int
}

// Dial opens one connection for token and device, binding the local end to
// local when it is not nil (to spread connections over source addresses).
func (d *Dialer) Dial(ctx context.Context, token, device string, local net.IP) (*Conn, error) {
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url %q: %w", d.URL, err)
	}
	if device != "" {
		q := u.Query()
		q.Set("device", device)
		u.RawQuery = q.Encode()
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout}
	if local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: local}
	}
	wd := ws.Dialer{
		Timeout: timeout,
		Header:  ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}}),
		NetDial: nd.DialContext,
	}
	nc, br, _, err := wd.Dial(ctx, u.String())
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, &HandshakeError{Status: int(se)}
		}
		return nil, err
	}
	c := &Conn{nc: nc, wtimeout: d.WriteTimeout}
	if c.wtimeout <= 0 {
		c.wtimeout = 10 * time.Second
	}
	var r io.Reader = nc
	if d.ReadBuffer > 0 {
		r = bufio.NewReaderSize(nc, d.ReadBuffer)
	}
	if br != nil {
		// The server wrote right after the upgrade (the hello frame):
		// keep those bytes, give the pooled buffer back.
		pending, _ := br.Peek(br.Buffered())
		pending = bytes.Clone(pending)
		ws.PutReader(br)
		r = io.MultiReader(bytes.NewReader(pending), r)
	}
	c.r = r
	return c, nil
}

// Conn is one client WebSocket connection.
type Conn struct {
	nc       net.Conn
	r        io.Reader
	wtimeout time.Duration
	hdr      [ws.MaxHeaderSize]byte // header scratch (reader only)
	msg      []byte                 // message buffer (reader only)

	wmu      sync.Mutex // guards the following
	wbuf     []byte
	mask     uint32
	wclosed  bool
	deadline time.Time // the write deadline set on nc
}

// LocalAddr returns the local address of the connection.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// ReadMessage returns the next text message. The slice is valid until the
// next call. It answers pings and returns a *CloseError when the server
// closes. Not safe for concurrent use (one reader).
func (c *Conn) ReadMessage() ([]byte, error) {
	c.msg = c.msg[:0]
	for {
		h, err := ws.ReadHeaderBuffer(c.r, c.hdr[:2:len(c.hdr)])
		if err != nil {
			return nil, err
		}
		if h.Length > MaxMessage || int64(len(c.msg))+h.Length > MaxMessage {
			return nil, fmt.Errorf("cannot read message: longer than %d bytes", MaxMessage)
		}
		if h.OpCode.IsControl() {
			var p [125]byte
			if h.Length > 125 {
				return nil, errors.New("cannot read control frame: longer than 125 bytes")
			}
			b := p[:h.Length]
			if _, err := io.ReadFull(c.r, b); err != nil {
				return nil, err
			}
			if h.Masked {
				ws.Cipher(b, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				if err := c.write(ws.OpPong, b); err != nil {
					return nil, err
				}
			case ws.OpClose:
				ce := &CloseError{Code: 1005}
				if len(b) >= 2 {
					ce.Code = int(binary.BigEndian.Uint16(b))
					ce.Reason = string(b[2:])
				}
				_ = c.write(ws.OpClose, b[:min(len(b), 2)])
				return nil, ce
			}
			continue
		}
		n := len(c.msg)
		c.msg = slices.Grow(c.msg, int(h.Length))[:n+int(h.Length)]
		if _, err := io.ReadFull(c.r, c.msg[n:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(c.msg[n:], h.Mask, 0)
		}
		if h.Fin {
			if h.OpCode == ws.OpBinary {
				return nil, errors.New("cannot read message: unexpected binary frame")
			}
			return c.msg, nil
		}
	}
}

// WriteText writes one masked text frame. Safe for concurrent use.
func (c *Conn) WriteText(p []byte) error { return c.write(ws.OpText, p) }

// WriteTexts writes one masked text frame per payload with a single write
// call (one syscall for a batch, e.g. acks of several chats). Safe for
// concurrent use.
func (c *Conn) WriteTexts(ps [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return net.ErrClosed
	}
	b := c.wbuf[:0]
	for _, p := range ps {
		b = c.appendFrame(b, ws.OpText, p)
	}
	return c.flushLocked(b, ws.OpText)
}

func (c *Conn) write(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return net.ErrClosed
	}
	return c.flushLocked(c.appendFrame(c.wbuf[:0], op, p), op)
}

// appendFrame appends one masked frame. c.wmu held.
func (c *Conn) appendFrame(b []byte, op ws.OpCode, p []byte) []byte {
	c.mask = c.mask*1664525 + 1013904223
	var mask [4]byte
	binary.BigEndian.PutUint32(mask[:], c.mask)
	b = append(b, 0x80|byte(op))
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	off := len(b)
	b = append(b, p...)
	ws.Cipher(b[off:], mask, 0)
	return b
}

// flushLocked writes b (frames ending with one of opcode op). The write
// deadline is moved only when less than half of the write timeout is
// left, not on every write: setting it costs a runtime timer update per
// call. c.wmu held.
func (c *Conn) flushLocked(b []byte, op ws.OpCode) error {
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
	if op == ws.OpClose {
		c.wclosed = true
	}
	return nil
}

// Drop closes the socket without a close frame, as a network failure
// would. Safe for concurrent use.
func (c *Conn) Drop() error {
	err := c.nc.Close() // first: it unblocks a writer holding wmu
	c.wmu.Lock()
	c.wclosed = true
	c.wmu.Unlock()
	return err
}

// Close sends a normal close frame (best effort) and closes the socket.
// Safe for concurrent use; later calls do nothing.
func (c *Conn) Close() error {
	_ = c.write(ws.OpClose, []byte{0x03, 0xe8})
	return c.nc.Close()
}

// ParseIPRange parses "a.b.c.d" or "a.b.c.d-a.b.c.e" (IPv4, same /24 or
// wider, inclusive) into the list of addresses; "" gives nil.
func ParseIPRange(s string) ([]net.IP, error) {
	if s == "" {
		return nil, nil
	}
	var out []net.IP
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			hi = lo
		}
		a, b := net.ParseIP(lo).To4(), net.ParseIP(hi).To4()
		if a == nil || b == nil {
			return nil, fmt.Errorf("cannot parse IPv4 range %q", part)
		}
		x, y := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)
		if y < x || y-x >= 1<<16 {
			return nil, fmt.Errorf("cannot parse IPv4 range %q: end before start or more than 65536 addresses", part)
		}
		for v := x; v <= y; v++ {
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, v)
			out = append(out, ip)
		}
	}
	return out, nil
}
