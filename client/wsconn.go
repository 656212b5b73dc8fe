package client

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/parley-chat/parley/internal/proto"
)

// wsConn is one WebSocket connection. read is called by one goroutine only;
// write and close are safe for concurrent use.
type wsConn struct {
	nc       net.Conn
	r        io.Reader
	maxFrame int
	wtimeout time.Duration
	readIdle time.Duration // read deadline after each frame; 0 = none

	observe  func(out bool, frame []byte) // Config.Observe; nil for none
	msg      []byte                       // reassembly buffer for fragmented messages (reader only)
	lastRead atomic.Int64                 // Unix ns of the last frame header read

	wmu     sync.Mutex // guards the following
	wbuf    []byte
	wclosed bool
}

// dialWS connects to rawURL with the token and device and returns the
// connection (the hello frame is not read yet).
func dialWS(ctx context.Context, rawURL, token string, inQuery bool, device string,
	timeout time.Duration, maxFrame int, wtimeout time.Duration) (*wsConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url %q: %w", rawURL, err)
	}
	q := u.Query()
	if device != "" {
		q.Set("device", device)
	}
	d := ws.Dialer{Timeout: timeout}
	if inQuery {
		q.Set("token", token)
	} else {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})
	}
	u.RawQuery = q.Encode()
	nc, br, _, err := d.Dial(ctx, u.String())
	if err != nil {
		var se ws.StatusError
		if errors.As(err, &se) {
			return nil, &HandshakeError{Status: int(se)}
		}
		return nil, err
	}
	c := &wsConn{nc: nc, r: nc, maxFrame: maxFrame, wtimeout: wtimeout}
	if br != nil {
		// The server sent data right after the handshake: drain the
		// buffered bytes first, then read the socket.
		c.r = io.MultiReader(br, nc)
	}
	return c, nil
}

// read returns the next complete data message. It answers pings and
// returns a *CloseError when the server closes.
func (c *wsConn) read() ([]byte, error) {
	c.msg = c.msg[:0]
	inMsg := false
	for {
		if c.readIdle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readIdle))
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			return nil, err
		}
		c.lastRead.Store(time.Now().UnixNano())
		if h.Length < 0 || h.Length > int64(c.maxFrame) {
			c.closeWith(proto.CloseTooBig, "frame too big")
			return nil, fmt.Errorf("cannot read frame: %w: %d bytes exceeds max_frame %d", ErrProtocol, h.Length, c.maxFrame)
		}
		if h.OpCode.IsControl() {
			if h.Length > 125 || !h.Fin {
				c.closeWith(proto.CloseProtocolError, "bad control frame")
				return nil, fmt.Errorf("cannot read frame: %w: bad control frame", ErrProtocol)
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(c.r, p); err != nil {
				return nil, err
			}
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			switch h.OpCode {
			case ws.OpPing:
				_ = c.writeFrame(ws.OpPong, p)
			case ws.OpClose:
				code, reason := 0, ""
				if len(p) >= 2 {
					code = int(binary.BigEndian.Uint16(p))
					reason = string(p[2:])
				}
				echo := code
				if echo == 0 {
					echo = proto.CloseNormal
				}
				c.closeWith(echo, "")
				return nil, &CloseError{Code: code, Reason: reason}
			}
			continue
		}
		switch h.OpCode {
		case ws.OpContinuation:
			if !inMsg {
				c.closeWith(proto.CloseProtocolError, "unexpected continuation")
				return nil, fmt.Errorf("cannot read frame: %w: unexpected continuation", ErrProtocol)
			}
		case ws.OpText, ws.OpBinary:
			if inMsg {
				c.closeWith(proto.CloseProtocolError, "expected continuation")
				return nil, fmt.Errorf("cannot read frame: %w: expected continuation", ErrProtocol)
			}
			inMsg = true
		default:
			c.closeWith(proto.CloseProtocolError, "reserved opcode")
			return nil, fmt.Errorf("cannot read frame: %w: reserved opcode %d", ErrProtocol, h.OpCode)
		}
		if int64(len(c.msg))+h.Length > int64(c.maxFrame) {
			c.closeWith(proto.CloseTooBig, "message too big")
			return nil, fmt.Errorf("cannot read message: %w: exceeds max_frame %d", ErrProtocol, c.maxFrame)
		}
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c.r, c.msg[start:]); err != nil {
			return nil, err
		}
		if h.Masked {
			ws.Cipher(c.msg[start:], h.Mask, 0)
		}
		if h.Fin {
			if c.observe != nil {
				c.observe(false, c.msg)
			}
			return c.msg, nil
		}
	}
}

// writeText writes one masked text frame. p is not modified.
func (c *wsConn) writeText(p []byte) error {
	if c.observe != nil {
		c.observe(true, p)
	}
	return c.writeFrame(ws.OpText, p)
}

func (c *wsConn) writeFrame(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wclosed {
		return net.ErrClosed
	}
	return c.writeLocked(op, p)
}

func (c *wsConn) writeLocked(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p)), Masked: true, Mask: ws.NewMask()}
	need := ws.HeaderSize(h) + len(p)
	if cap(c.wbuf) < need {
		c.wbuf = make([]byte, 0, need)
	}
	w := sliceWriter{b: c.wbuf[:0]}
	if err := ws.WriteHeader(&w, h); err != nil {
		return fmt.Errorf("cannot encode frame header: %w", err)
	}
	off := len(w.b)
	w.b = append(w.b, p...)
	ws.Cipher(w.b[off:], h.Mask, 0)
	c.wbuf = w.b
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.wtimeout))
	if _, err := c.nc.Write(w.b); err != nil {
		return fmt.Errorf("cannot write frame: %w", err)
	}
	return nil
}

// closeWith sends a close frame (best effort, once) and closes the socket.
func (c *wsConn) closeWith(code int, reason string) {
	c.wmu.Lock()
	if !c.wclosed {
		c.wclosed = true
		body := ws.NewCloseFrameBody(ws.StatusCode(code), reason)
		wt := c.wtimeout
		if wt > time.Second {
			c.wtimeout = time.Second
		}
		_ = c.writeLocked(ws.OpClose, body)
		c.wtimeout = wt
	}
	c.wmu.Unlock()
	_ = c.nc.Close()
}

type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
