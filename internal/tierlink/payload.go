package tierlink

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Open is the payload of an Open frame: who the session belongs to.
type Open struct {
	User   string
	Device string
	Remote string // client address as seen by connsrv, "ip:port"
}

// AppendOpen appends an Open frame. Fields longer than 255 bytes are cut.
func AppendOpen(dst []byte, session uint64, o Open) []byte {
	u, d, r := cut255(o.User), cut255(o.Device), cut255(o.Remote)
	dst = AppendHeader(dst, TypeOpen, session, 3+len(u)+len(d)+len(r))
	dst = append(dst, byte(len(u)))
	dst = append(dst, u...)
	dst = append(dst, byte(len(d)))
	dst = append(dst, d...)
	dst = append(dst, byte(len(r)))
	return append(dst, r...)
}

func cut255(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// ParseOpen decodes an Open payload.
func ParseOpen(p []byte) (Open, error) {
	var o Open
	var f [3]string
	for i := range f {
		if len(p) < 1 || len(p) < 1+int(p[0]) {
			return o, fmt.Errorf("%w: open field %d truncated", ErrBadPayload, i)
		}
		n := int(p[0])
		f[i] = string(p[1 : 1+n])
		p = p[1+n:]
	}
	if len(p) != 0 {
		return o, fmt.Errorf("%w: open has %d trailing bytes", ErrBadPayload, len(p))
	}
	return Open{User: f[0], Device: f[1], Remote: f[2]}, nil
}

// AppendClose appends a Close frame carrying the WebSocket close code.
func AppendClose(dst []byte, session uint64, code uint16) []byte {
	dst = AppendHeader(dst, TypeClose, session, 2)
	return binary.BigEndian.AppendUint16(dst, code)
}

// ParseClose decodes a Close payload.
func ParseClose(p []byte) (code uint16, err error) {
	if len(p) != 2 {
		return 0, fmt.Errorf("%w: close of %d bytes", ErrBadPayload, len(p))
	}
	return binary.BigEndian.Uint16(p), nil
}

// AppendKick appends a Kick frame: close the session with a WebSocket close
// code and reason. A reason longer than MaxKickReason bytes is cut to at most
// MaxKickReason bytes at a UTF-8 character boundary, so a valid UTF-8 reason
// stays valid (RFC 6455 requires a valid UTF-8 close reason).
func AppendKick(dst []byte, session uint64, code uint16, reason string) []byte {
	if len(reason) > MaxKickReason {
		n := MaxKickReason
		// Back up over continuation bytes (at most 3) to a rune start.
		for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(reason[n]); i++ {
			n--
		}
		reason = reason[:n]
	}
	dst = AppendHeader(dst, TypeKick, session, 2+len(reason))
	dst = binary.BigEndian.AppendUint16(dst, code)
	return append(dst, reason...)
}

// ParseKick decodes a Kick payload. reason aliases p.
func ParseKick(p []byte) (code uint16, reason []byte, err error) {
	if len(p) < 2 || len(p) > 2+MaxKickReason {
		return 0, nil, fmt.Errorf("%w: kick of %d bytes", ErrBadPayload, len(p))
	}
	return binary.BigEndian.Uint16(p), p[2:], nil
}

// AppendPing appends a Ping or Pong frame.
func AppendPing(dst []byte, t Type, nonce uint64) []byte {
	dst = AppendHeader(dst, t, 0, 8)
	return binary.BigEndian.AppendUint64(dst, nonce)
}

// ParsePing decodes a Ping or Pong payload.
func ParsePing(p []byte) (uint64, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("%w: ping of %d bytes", ErrBadPayload, len(p))
	}
	return binary.BigEndian.Uint64(p), nil
}

// AppendMulti appends a Multi frame delivering data to every session in
// sessions. sessions must hold 1 to MaxMultiSessions entries (the caller
// splits larger sets); ParseMulti rejects any other count.
func AppendMulti(dst []byte, sessions []uint64, data []byte) []byte {
	dst = AppendHeader(dst, TypeMulti, 0, 2+8*len(sessions)+len(data))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(sessions)))
	for _, s := range sessions {
		dst = binary.BigEndian.AppendUint64(dst, s)
	}
	return append(dst, data...)
}

// Multi is a decoded Multi payload. Sessions is the raw big-endian list;
// use Session(i) to read it without allocating.
type Multi struct {
	Count    int
	sessions []byte
	Data     []byte
}

// Session returns the i-th session of the Multi frame.
func (m Multi) Session(i int) uint64 { return binary.BigEndian.Uint64(m.sessions[8*i:]) }

// ParseMulti decodes a Multi payload. The result aliases p.
func ParseMulti(p []byte) (Multi, error) {
	if len(p) < 2 {
		return Multi{}, fmt.Errorf("%w: multi of %d bytes", ErrBadPayload, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if n == 0 || n > MaxMultiSessions || len(p) < 2+8*n {
		return Multi{}, fmt.Errorf("%w: multi names %d sessions in %d bytes", ErrBadPayload, n, len(p))
	}
	return Multi{Count: n, sessions: p[2 : 2+8*n], Data: p[2+8*n:]}, nil
}
