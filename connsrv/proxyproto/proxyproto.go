package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
)

// Limits.
const (
	// MaxV1Size is the longest version 1 header, CRLF included (the
	// protocol's own bound).
	MaxV1Size = 107
	// V2HeaderSize is the fixed part of a version 2 header.
	V2HeaderSize = 16
	// MaxV2Body is the longest version 2 address block plus TLVs accepted;
	// longer headers are refused (ErrTooLong).
	MaxV2Body = 1024
)

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Errors returned by Parse. They are static values: Parse never allocates.
var (
	// ErrMissing: the bytes cannot start a PROXY header of either version.
	ErrMissing = errors.New("proxyproto: no PROXY header")
	// ErrInvalid: the header is malformed.
	ErrInvalid = errors.New("proxyproto: malformed PROXY header")
	// ErrTooLong: a version 1 line without CRLF within MaxV1Size bytes, or
	// a version 2 length above MaxV2Body.
	ErrTooLong = errors.New("proxyproto: PROXY header too long")
	// ErrUnsupported: a well-formed version 2 header for a transport this
	// tier does not serve (UNIX sockets, datagrams).
	ErrUnsupported = errors.New("proxyproto: unsupported PROXY address family or transport")
)

// Header is a decoded PROXY header.
type Header struct {
	// Version is 1 or 2.
	Version uint8
	// Local is true when the header carries no client address (v1
	// UNKNOWN, v2 LOCAL or family UNSPEC): keep the socket's address.
	Local bool
	// Src is the client's address and Dst the address it connected to;
	// zero when Local.
	Src, Dst netip.AddrPort
}

// Parse decodes the PROXY header at the start of b. It returns the header
// and its length in bytes; n == 0 with a nil error means b is a valid
// prefix and more bytes are needed. It does not allocate.
func Parse(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, nil
	}
	if b[0] == sigV1[0] {
		if m := min(len(b), len(sigV1)); !bytes.Equal(b[:m], sigV1[:m]) {
			return Header{}, 0, ErrMissing
		}
		return parseV1(b)
	}
	if m := min(len(b), len(sigV2)); !bytes.Equal(b[:m], sigV2[:m]) {
		return Header{}, 0, ErrMissing
	}
	return parseV2(b)
}

func parseV1(b []byte) (Header, int, error) {
	lim := b[:min(len(b), MaxV1Size)]
	e := bytes.IndexByte(lim, '\n')
	if e < 0 {
		if len(b) >= MaxV1Size {
			return Header{}, 0, ErrTooLong
		}
		return Header{}, 0, nil
	}
	if e == 0 || b[e-1] != '\r' {
		return Header{}, 0, ErrInvalid
	}
	line := b[len(sigV1) : e-1]
	h := Header{Version: 1}
	proto, rest, _ := cut(line)
	switch string(proto) { // no allocation: compared, not stored
	case "UNKNOWN":
		h.Local = true
		return h, e + 1, nil
	case "TCP4", "TCP6":
	default:
		return Header{}, 0, ErrInvalid
	}
	src, rest, ok1 := cut(rest)
	dst, rest, ok2 := cut(rest)
	sp, dp, ok3 := cut(rest)
	if !ok1 || !ok2 || !ok3 || bytes.IndexByte(dp, ' ') >= 0 {
		return Header{}, 0, ErrInvalid
	}
	var sa, da netip.Addr
	var ok bool
	if proto[3] == '4' {
		if sa, ok = parseIPv4(src); !ok {
			return Header{}, 0, ErrInvalid
		}
		if da, ok = parseIPv4(dst); !ok {
			return Header{}, 0, ErrInvalid
		}
	} else {
		if sa, ok = parseIPv6(src); !ok {
			return Header{}, 0, ErrInvalid
		}
		if da, ok = parseIPv6(dst); !ok {
			return Header{}, 0, ErrInvalid
		}
	}
	spn, ok1 := parsePort(sp)
	dpn, ok2 := parsePort(dp)
	if !ok1 || !ok2 {
		return Header{}, 0, ErrInvalid
	}
	h.Src, h.Dst = netip.AddrPortFrom(sa, spn), netip.AddrPortFrom(da, dpn)
	return h, e + 1, nil
}

// cut splits b at the first space; ok is false when there is none.
func cut(b []byte) (before, after []byte, ok bool) {
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil, false
	}
	return b[:i], b[i+1:], true
}

// parsePort parses 1-5 decimal digits up to 65535.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	if v > 0xffff {
		return 0, false
	}
	return uint16(v), true
}

// parseIPv4 parses a dotted quad: four decimal fields 0-255 without
// leading zeros.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var ip [4]byte
	f, digits, v := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || f > 3 {
				return netip.Addr{}, false
			}
			ip[f] = byte(v)
			f++
			digits, v = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits == 1 && v == 0) {
			return netip.Addr{}, false // not a digit, or a leading zero
		}
		v = v*10 + int(c-'0')
		digits++
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if f != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// parseIPv6 parses an IPv6 text address (RFC 4291 section 2.2: groups of
// 1-4 hex digits, one "::", an optional trailing dotted quad). Zones are
// refused.
func parseIPv6(b []byte) (netip.Addr, bool) {
	var ip [16]byte
	j := 0         // next byte of ip
	ellipsis := -1 // byte index where "::" stands, -1 if none
	i := 0
	if len(b) >= 2 && b[0] == ':' && b[1] == ':' {
		ellipsis = 0
		i = 2
		if i == len(b) {
			return netip.AddrFrom16(ip), true
		}
	}
	for j < 16 {
		start := i
		v, digits := 0, 0
		for i < len(b) {
			d := hexVal(b[i])
			if d < 0 {
				break
			}
			v = v<<4 | d
			digits++
			i++
			if digits > 4 {
				return netip.Addr{}, false
			}
		}
		if i < len(b) && b[i] == '.' {
			// Embedded IPv4: the rest of the input, in the last 4 bytes
			// (or anywhere a "::" leaves room).
			if (ellipsis < 0 && j != 12) || j+4 > 16 {
				return netip.Addr{}, false
			}
			v4, ok := parseIPv4(b[start:])
			if !ok {
				return netip.Addr{}, false
			}
			a4 := v4.As4()
			copy(ip[j:], a4[:])
			j += 4
			i = len(b)
			break
		}
		if digits == 0 {
			return netip.Addr{}, false
		}
		ip[j], ip[j+1] = byte(v>>8), byte(v)
		j += 2
		if i == len(b) {
			break
		}
		if b[i] != ':' {
			return netip.Addr{}, false
		}
		i++
		if i < len(b) && b[i] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // a second "::"
			}
			ellipsis = j
			i++
			if i == len(b) {
				break
			}
		} else if i == len(b) {
			return netip.Addr{}, false // trailing single colon
		}
	}
	if i != len(b) {
		return netip.Addr{}, false
	}
	if j < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - j
		copy(ip[ellipsis+n:], ip[ellipsis:j])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}

// Version 2 commands and families.
const (
	cmdLocal = 0x0
	cmdProxy = 0x1

	famUnspec = 0x0
	famInet   = 0x1
	famInet6  = 0x2
	famUnix   = 0x3

	transStream = 0x1
)

func parseV2(b []byte) (Header, int, error) {
	if len(b) < V2HeaderSize {
		return Header{}, 0, nil
	}
	if b[12]>>4 != 2 {
		return Header{}, 0, ErrInvalid
	}
	cmd := b[12] & 0xf
	if cmd != cmdLocal && cmd != cmdProxy {
		return Header{}, 0, ErrInvalid
	}
	fam, trans := b[13]>>4, b[13]&0xf
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > MaxV2Body {
		return Header{}, 0, ErrTooLong
	}
	n := V2HeaderSize + length
	if len(b) < n {
		return Header{}, 0, nil
	}
	h := Header{Version: 2}
	if cmd == cmdLocal {
		h.Local = true
		return h, n, nil
	}
	body := b[V2HeaderSize:n]
	switch fam {
	case famUnspec:
		h.Local = true
		return h, n, nil
	case famInet:
		if trans != transStream {
			return Header{}, 0, ErrUnsupported
		}
		if len(body) < 12 {
			return Header{}, 0, ErrInvalid
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case famInet6:
		if trans != transStream {
			return Header{}, 0, ErrUnsupported
		}
		if len(body) < 36 {
			return Header{}, 0, ErrInvalid
		}
		h.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	case famUnix:
		return Header{}, 0, ErrUnsupported
	default:
		return Header{}, 0, ErrInvalid
	}
	return h, n, nil
}

// AppendV1 appends a version 1 header for a TCP connection from src to
// dst (both IPv4 or both IPv6; an IPv4-mapped address counts as IPv4).
// Meant for tests and tools.
func AppendV1(dst []byte, src, to netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), to.Addr().Unmap()
	proto := "TCP4 "
	if s.Is6() || d.Is6() {
		proto = "TCP6 "
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	dst = append(dst, sigV1...)
	dst = append(dst, proto...)
	dst = s.AppendTo(dst)
	dst = append(dst, ' ')
	dst = d.AppendTo(dst)
	dst = append(dst, ' ')
	dst = appendUint(dst, src.Port())
	dst = append(dst, ' ')
	dst = appendUint(dst, to.Port())
	return append(dst, "\r\n"...)
}

func appendUint(dst []byte, v uint16) []byte {
	var buf [5]byte
	i := len(buf)
	for {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, buf[i:]...)
}

// AppendV2 appends a version 2 PROXY header for a TCP connection from src
// to dst, followed by tlvs (raw type-length-value bytes, may be nil).
// Meant for tests and tools.
func AppendV2(dst []byte, src, to netip.AddrPort, tlvs []byte) []byte {
	dst = append(dst, sigV2...)
	dst = append(dst, 0x20|cmdProxy)
	s, d := src.Addr().Unmap(), to.Addr().Unmap()
	if s.Is4() && d.Is4() {
		dst = append(dst, famInet<<4|transStream)
		dst = binary.BigEndian.AppendUint16(dst, uint16(12+len(tlvs)))
		a, b := s.As4(), d.As4()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	} else {
		dst = append(dst, famInet6<<4|transStream)
		dst = binary.BigEndian.AppendUint16(dst, uint16(36+len(tlvs)))
		a, b := src.Addr().As16(), to.Addr().As16()
		dst = append(dst, a[:]...)
		dst = append(dst, b[:]...)
	}
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	dst = binary.BigEndian.AppendUint16(dst, to.Port())
	return append(dst, tlvs...)
}

// AppendV2Local appends a version 2 LOCAL header (a health check from the
// proxy itself).
func AppendV2Local(dst []byte) []byte {
	dst = append(dst, sigV2...)
	return append(dst, 0x20|cmdLocal, 0, 0, 0)
}
