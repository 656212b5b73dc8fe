package wsclient

import (
	"encoding/binary"
	"errors"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Close codes this package sends (RFC 6455 section 7.4.1).
const (
	CloseNormal        = 1000
	CloseProtocolError = 1002
	CloseTooBig        = 1009
	closeNoStatus      = 1005 // received as "no code", never sent
)

// Frame errors of ParseServerFrame; each wraps ErrProtocol.
var (
	ErrMaskedServerFrame = protoErr("masked server frame")
	ErrFrameTooLong      = protoErr("server frame too long")
	ErrBadControl        = protoErr("bad control frame")
)

// ErrProtocol is wrapped by every error that reports a broken WebSocket
// stream.
var ErrProtocol = errors.New("protocol error")

type protoError string

func (e protoError) Error() string { return ErrProtocol.Error() + ": " + string(e) }
func (e protoError) Unwrap() error { return ErrProtocol }

func protoErr(s string) error { return protoError(s) }

// Frame is one parsed server frame (unmasked).
type Frame struct {
	Fin     bool
	Op      byte
	Payload []byte // aliases the input
}

// ParseServerFrame parses the frame at the start of b, whose payload may
// be at most max bytes. It returns n == 0 and no error when b does not
// hold a whole frame yet; n is the bytes the frame took.
func ParseServerFrame(b []byte, max int) (f Frame, n int, err error) {
	if len(b) < 2 {
		return f, 0, nil
	}
	f.Fin = b[0]&0x80 != 0
	f.Op = b[0] & 0x0F
	if b[0]&0x70 != 0 {
		return f, 0, protoErr("reserved bits set")
	}
	if b[1]&0x80 != 0 {
		return f, 0, ErrMaskedServerFrame
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
	if f.Op >= OpClose && (length > 125 || !f.Fin) {
		return f, 0, ErrBadControl
	}
	if length > uint64(max) {
		return f, 0, ErrFrameTooLong
	}
	end := hdr + int(length)
	if len(b) < end {
		return f, 0, nil
	}
	f.Payload = b[hdr:end]
	return f, end, nil
}

// AppendClientFrame appends one masked client frame with fin set.
func AppendClientFrame(dst []byte, op byte, payload []byte, mask uint32) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mask)
	dst = append(dst, m[:]...)
	off := len(dst)
	dst = append(dst, payload...)
	cipher(dst[off:], m)
	return dst
}

// cipher masks (or unmasks) p in place with mask, from offset 0.
func cipher(p []byte, mask [4]byte) {
	m := binary.LittleEndian.Uint32(mask[:])
	m64 := uint64(m) | uint64(m)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		v := binary.LittleEndian.Uint64(p[i:])
		binary.LittleEndian.PutUint64(p[i:], v^m64)
	}
	for ; i < len(p); i++ {
		p[i] ^= mask[i&3]
	}
}
