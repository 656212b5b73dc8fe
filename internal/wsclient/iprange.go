package wsclient

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
)

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
