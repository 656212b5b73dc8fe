package bench

import (
	"encoding/binary"
	"errors"
)

// WebSocket opcodes a bench client sees (RFC 6455 section 5.2).
const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxServerFrame bounds one server frame's payload: bench clients are idle,
// so anything bigger is a protocol problem, not traffic.
const maxServerFrame = 1 << 20

var (
	errMaskedServerFrame = errors.New("masked server frame")
	errFrameTooLong      = errors.New("server frame too long")
	errBadControl        = errors.New("bad control frame")
)

// serverFrame is one parsed frame from a server (unmasked, RFC 6455).
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte // aliases the input
}

// parseServerFrame parses the frame at the start of b. It returns n == 0
// and no error when b does not hold a whole frame yet; n is the bytes the
// frame took.
func parseServerFrame(b []byte) (f serverFrame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0F
	if b[1]&0x80 != 0 {
		return f, 0, errMaskedServerFrame
	}
	length := uint64(b[1] & 0x7F)
	hdr := 2
	switch length {
	case 126:
		if len(b) < 4 {
			return f, 0, nil
		}
		length, hdr = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, nil
		}
		length, hdr = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if length > maxServerFrame {
		return f, 0, errFrameTooLong
	}
	if f.op >= opClose && (length > 125 || !f.fin) {
		return f, 0, errBadControl
	}
	end := hdr + int(length)
	if len(b) < end {
		return f, 0, nil
	}
	f.payload = b[hdr:end]
	return f, end, nil
}

// appendClientFrame appends one masked client frame (fin set) to dst.
// Payloads are small here (sync, ack, pong, close), at most 64 KiB.
func appendClientFrame(dst []byte, op byte, payload []byte, mask uint32) []byte {
	dst = append(dst, 0x80|op)
	if n := len(payload); n < 126 {
		dst = append(dst, 0x80|byte(n))
	} else {
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	}
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mask)
	dst = append(dst, m[:]...)
	off := len(dst)
	dst = append(dst, payload...)
	for i := range payload {
		dst[off+i] ^= m[i&3]
	}
	return dst
}
