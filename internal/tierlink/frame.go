package tierlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is a frame type.
type Type uint8

// Frame types; see the package documentation for their payloads.
const (
	TypeHello    Type = 0x01
	TypeHelloAck Type = 0x02
	TypeOpen     Type = 0x03
	TypeClose    Type = 0x04
	TypeData     Type = 0x05
	TypeDeliver  Type = 0x06
	TypeKick     Type = 0x07
	TypePing     Type = 0x08
	TypePong     Type = 0x09
	TypeMulti    Type = 0x0A

	// Frames between logic nodes (see peer.go).
	TypePeerHello Type = 0x0B
	TypeForward   Type = 0x0C
	TypeReply     Type = 0x0D
	TypeFanout    Type = 0x0E
	TypeUsers     Type = 0x0F

	// TypeAuth ends the handshake (see handshake.go).
	TypeAuth Type = 0x10
)

func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeHelloAck:
		return "hello_ack"
	case TypeOpen:
		return "open"
	case TypeClose:
		return "close"
	case TypeData:
		return "data"
	case TypeDeliver:
		return "deliver"
	case TypeKick:
		return "kick"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeMulti:
		return "multi"
	case TypePeerHello:
		return "peer_hello"
	case TypeForward:
		return "forward"
	case TypeReply:
		return "reply"
	case TypeFanout:
		return "fanout"
	case TypeUsers:
		return "users"
	case TypeAuth:
		return "auth"
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Limits of the framing.
const (
	// HeaderSize is the size of length, type and session.
	HeaderSize = 4 + 1 + 8
	// MaxFrame is the largest value of the length field (1 MiB).
	MaxFrame = 1 << 20
	// MaxMultiSessions is the most sessions one Multi frame may name.
	MaxMultiSessions = 4096
	// MaxKickReason is the longest Kick reason in bytes (a WebSocket close
	// frame holds 125 bytes: 2 for the code and 123 for the reason).
	MaxKickReason = 123
)

// Errors returned by Parse and Reader. They are protocol errors: the link
// that produced them must be closed.
var (
	ErrShortFrame = errors.New("tierlink: frame shorter than its header")
	ErrTooLarge   = errors.New("tierlink: frame larger than MaxFrame")
	ErrBadPayload = errors.New("tierlink: malformed payload")
	ErrUnknown    = errors.New("tierlink: unknown frame type")
)

// Frame is one decoded frame. Payload aliases the buffer it was parsed from.
type Frame struct {
	Type    Type
	Session uint64
	Payload []byte
}

// AppendFrame appends a complete frame to dst and returns the extended slice.
// It does not allocate when dst has room.
func AppendFrame(dst []byte, t Type, session uint64, payload []byte) []byte {
	dst = AppendHeader(dst, t, session, len(payload))
	return append(dst, payload...)
}

// AppendHeader appends the 13-byte header of a frame whose payload is
// payloadLen bytes long; the caller appends the payload itself.
func AppendHeader(dst []byte, t Type, session uint64, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+8+payloadLen))
	dst = append(dst, byte(t))
	return binary.BigEndian.AppendUint64(dst, session)
}

// Parse decodes the first frame in b. It returns the frame and the number of
// bytes it used. n == 0 with a nil error means b holds only part of a frame:
// read more and call again. Parse validates the length field and the type
// but not the payload; use the payload decoders for that. It reports a bad
// length or type as soon as the header bytes holding them are present, even
// before the rest of the frame has arrived.
func Parse(b []byte, maxFrame int) (f Frame, n int, err error) {
	if maxFrame <= 0 || maxFrame > MaxFrame {
		maxFrame = MaxFrame
	}
	if len(b) < 4 {
		return Frame{}, 0, nil
	}
	l := binary.BigEndian.Uint32(b)
	if l < 9 {
		return Frame{}, 0, ErrShortFrame
	}
	if l > uint32(maxFrame) {
		return Frame{}, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, l, maxFrame)
	}
	if len(b) < 5 {
		return Frame{}, 0, nil
	}
	// Check the type before the whole frame is buffered, so a Reader fails
	// fast instead of buffering a large frame it will reject anyway.
	t := Type(b[4])
	if t < TypeHello || t > TypeAuth {
		return Frame{}, 0, fmt.Errorf("%w: 0x%02x", ErrUnknown, b[4])
	}
	total := 4 + int(l)
	if len(b) < total {
		return Frame{}, 0, nil
	}
	f = Frame{Type: t, Session: binary.BigEndian.Uint64(b[5:13]), Payload: b[13:total:total]}
	return f, total, nil
}

// Reader reads frames from a stream into one reusable buffer.
// It is owned by one goroutine.
type Reader struct {
	r        io.Reader
	buf      []byte
	start    int // first unread byte
	end      int // end of buffered data
	maxFrame int
}

// NewReader returns a Reader with a buffer of bufSize bytes (at least 4 KiB);
// the buffer grows up to the frame limit when a frame needs it.
func NewReader(r io.Reader, bufSize, maxFrame int) *Reader {
	if bufSize < 4096 {
		bufSize = 4096
	}
	if maxFrame <= 0 || maxFrame > MaxFrame {
		maxFrame = MaxFrame
	}
	return &Reader{r: r, buf: make([]byte, bufSize), maxFrame: maxFrame}
}

// Next returns the next frame. The frame's payload is valid until the next
// call to Next.
func (r *Reader) Next() (Frame, error) {
	for {
		f, n, err := Parse(r.buf[r.start:r.end], r.maxFrame)
		if err != nil {
			return Frame{}, err
		}
		if n > 0 {
			r.start += n
			return f, nil
		}
		if err := r.fill(); err != nil {
			return Frame{}, err
		}
	}
}

// fill reads more bytes, compacting or growing the buffer first when needed.
func (r *Reader) fill() error {
	need := 0
	if r.end-r.start >= 4 {
		need = 4 + int(binary.BigEndian.Uint32(r.buf[r.start:]))
	}
	if r.start > 0 && (r.end == len(r.buf) || need > len(r.buf)-r.start) {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if need > len(r.buf) {
		nb := make([]byte, need)
		r.end = copy(nb, r.buf[r.start:r.end])
		r.start = 0
		r.buf = nb
	}
	// Like bufio, tolerate a few empty reads (allowed but discouraged by
	// io.Reader) before giving up with io.ErrNoProgress.
	for range maxEmptyReads {
		n, err := r.r.Read(r.buf[r.end:])
		r.end += n
		if n > 0 {
			return nil
		}
		if err != nil {
			if err == io.EOF && r.end > r.start {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return io.ErrNoProgress
}

// maxEmptyReads is how many consecutive (0, nil) reads fill tolerates.
const maxEmptyReads = 100

// SetMaxFrame changes the largest frame r accepts (MaxFrame at most), e.g.
// a small bound while a link is not yet authenticated.
func (r *Reader) SetMaxFrame(n int) {
	if n <= 0 || n > MaxFrame {
		n = MaxFrame
	}
	r.maxFrame = n
}

// Buffered reports how many bytes are buffered but not yet returned.
func (r *Reader) Buffered() int { return r.end - r.start }
