package wsframe

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxControlPayload is the largest payload of a control frame (RFC 6455 5.5).
const MaxControlPayload = 125

// MaxHeaderSize is the largest frame header: 2 bytes, 8 length bytes and a
// 4-byte mask.
const MaxHeaderSize = 2 + 8 + 4

// Error is a frame or message error and the close code that answers it.
// The package's errors are preallocated, so returning one never allocates.
type Error struct {
	Code   ws.StatusCode
	Reason string
}

func (e *Error) Error() string { return "wsframe: " + e.Reason }

// Errors returned by the parsers. Compare with errors.Is.
var (
	ErrReservedBits     = &Error{ws.StatusProtocolError, "reserved bits set"}
	ErrUnknownOpCode    = &Error{ws.StatusProtocolError, "unknown opcode"}
	ErrUnmasked         = &Error{ws.StatusProtocolError, "client frame not masked"}
	ErrControlTooLong   = &Error{ws.StatusProtocolError, "control frame payload over 125 bytes"}
	ErrControlFragment  = &Error{ws.StatusProtocolError, "fragmented control frame"}
	ErrBadLength        = &Error{ws.StatusProtocolError, "64-bit length with the top bit set"}
	ErrFrameTooBig      = &Error{ws.StatusMessageTooBig, "frame larger than the frame limit"}
	ErrMessageTooBig    = &Error{ws.StatusMessageTooBig, "message larger than the message limit"}
	ErrContinuation     = &Error{ws.StatusProtocolError, "continuation frame without a started message"}
	ErrInterleaved      = &Error{ws.StatusProtocolError, "new data frame inside a fragmented message"}
	ErrInvalidUTF8      = &Error{ws.StatusInvalidFramePayloadData, "text message is not valid UTF-8"}
	ErrBinary           = &Error{ws.StatusUnsupportedData, "binary messages are not accepted"}
	ErrBadClosePayload  = &Error{ws.StatusProtocolError, "close frame payload of 1 byte"}
	ErrBadCloseCode     = &Error{ws.StatusProtocolError, "close code not allowed on the wire"}
	ErrInvalidUTF8Close = &Error{ws.StatusInvalidFramePayloadData, "close reason is not valid UTF-8"}
)

// CloseCode returns the close code that answers err: the code of a *Error,
// 1011 (internal error) for any other non-nil error, 1000 for nil.
func CloseCode(err error) ws.StatusCode {
	if err == nil {
		return ws.StatusNormalClosure
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ws.StatusInternalServerError
}

// ParseHeader decodes the frame header at the start of b. n is the header
// size; n == 0 with a nil error means b holds only part of the header.
//
// The declared payload length is checked against maxPayload (when > 0) as
// soon as the length field is complete, so an oversized frame is refused
// before its payload or even its mask has arrived. Client frames must be
// masked; see the package documentation for everything else it rejects.
func ParseHeader(b []byte, maxPayload int64) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Rsv = (b0 >> 4) & 0x07
	h.OpCode = ws.OpCode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	if h.Rsv != 0 {
		return h, 0, ErrReservedBits
	}
	switch h.OpCode {
	case ws.OpContinuation, ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong:
	default:
		return h, 0, ErrUnknownOpCode
	}
	if !h.Masked {
		return h, 0, ErrUnmasked
	}
	l7 := b1 & 0x7f
	control := h.OpCode.IsControl()
	if control {
		if !h.Fin {
			return h, 0, ErrControlFragment
		}
		if l7 > MaxControlPayload {
			return h, 0, ErrControlTooLong
		}
	}
	n = 2
	switch l7 {
	case 126:
		if len(b) < 4 {
			return h, 0, nil
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, 0, ErrBadLength
		}
		h.Length = int64(u)
		n = 10
	default:
		h.Length = int64(l7)
	}
	if maxPayload > 0 && h.Length > maxPayload {
		return h, 0, ErrFrameTooBig
	}
	if len(b) < n+4 {
		return h, 0, nil
	}
	copy(h.Mask[:], b[n:n+4])
	return h, n + 4, nil
}

// ReadFrame decodes the first complete frame in b and unmasks its payload
// in place. payload aliases b. n is the number of bytes the frame used;
// n == 0 with a nil error means b holds only part of a frame.
func ReadFrame(b []byte, maxPayload int64) (h ws.Header, payload []byte, n int, err error) {
	h, hn, err := ParseHeader(b, maxPayload)
	if err != nil || hn == 0 {
		return h, nil, 0, err
	}
	if int64(len(b)-hn) < h.Length {
		return h, nil, 0, nil
	}
	end := hn + int(h.Length)
	payload = b[hn:end:end]
	ws.Cipher(payload, h.Mask, 0)
	return h, payload, end, nil
}

// ParseClose decodes the payload of a client close frame. An empty payload
// yields ws.StatusNoStatusRcvd. The reason aliases p.
func ParseClose(p []byte) (code ws.StatusCode, reason []byte, err error) {
	switch {
	case len(p) == 0:
		return ws.StatusNoStatusRcvd, nil, nil
	case len(p) == 1:
		return 0, nil, ErrBadClosePayload
	}
	code = ws.StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCode(code) {
		return code, nil, ErrBadCloseCode
	}
	reason = p[2:]
	if !utf8.Valid(reason) {
		return code, nil, ErrInvalidUTF8Close
	}
	return code, reason, nil
}

// validWireCode reports whether code may appear in a close frame
// (RFC 6455 7.4).
func validWireCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendHeader appends an unmasked server frame header with FIN set for a
// payload of n bytes.
func AppendHeader(dst []byte, op ws.OpCode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// AppendFrame appends a complete unmasked server frame (FIN set) to dst:
// header and payload go into the same buffer so a batch of frames leaves in
// one write. It does not allocate when dst has room.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = AppendHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// AppendClose appends a close frame with code and reason; the reason is cut
// so the payload fits a control frame (123 bytes). A zero code yields an
// empty close payload.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 {
		return AppendHeader(dst, ws.OpClose, 0)
	}
	if len(reason) > MaxControlPayload-2 {
		reason = cutUTF8(reason, MaxControlPayload-2)
	}
	dst = AppendHeader(dst, ws.OpClose, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// cutUTF8 cuts s to at most n bytes without splitting a rune.
func cutUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Assembler reassembles fragmented data messages of one connection. The
// zero value is ready; its buffer is allocated only when a message is
// actually fragmented and released when the message completes, so an idle
// connection holds none.
type Assembler struct {
	buf    []byte
	op     ws.OpCode
	active bool
}

// Push feeds one data frame (text, binary or continuation; its payload
// already unmasked). When a message is complete it returns done == true and
// the message; msg aliases payload for an unfragmented message and the
// Assembler's buffer otherwise, and is valid until the next Push. Messages
// over maxMessage bytes (when > 0) fail with ErrMessageTooBig; binary
// messages fail with ErrBinary; text messages that are not valid UTF-8 fail
// with ErrInvalidUTF8. After an error the Assembler must not be used again
// except through Reset.
func (a *Assembler) Push(h ws.Header, payload []byte, maxMessage int) (msg []byte, done bool, err error) {
	switch h.OpCode {
	case ws.OpText, ws.OpBinary:
		if a.active {
			return nil, false, ErrInterleaved
		}
		if h.OpCode == ws.OpBinary {
			return nil, false, ErrBinary
		}
		if maxMessage > 0 && len(payload) > maxMessage {
			return nil, false, ErrMessageTooBig
		}
		if h.Fin {
			if !utf8.Valid(payload) {
				return nil, false, ErrInvalidUTF8
			}
			return payload, true, nil
		}
		a.active, a.op = true, h.OpCode
		a.buf = append(a.buf[:0], payload...)
		return nil, false, nil
	case ws.OpContinuation:
		if !a.active {
			return nil, false, ErrContinuation
		}
		if maxMessage > 0 && len(a.buf)+len(payload) > maxMessage {
			a.Reset()
			return nil, false, ErrMessageTooBig
		}
		a.buf = append(a.buf, payload...)
		if !h.Fin {
			return nil, false, nil
		}
		msg = a.buf
		a.Reset()
		if !utf8.Valid(msg) {
			return nil, false, ErrInvalidUTF8
		}
		return msg, true, nil
	}
	return nil, false, ErrUnknownOpCode
}

// Active reports whether a fragmented message is in progress.
func (a *Assembler) Active() bool { return a.active }

// Reset drops any partial message and releases the buffer.
func (a *Assembler) Reset() { *a = Assembler{} }
