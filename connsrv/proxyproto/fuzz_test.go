package proxyproto

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzParse feeds every input as a stream split in two at a fuzzed
// position, the way an event loop sees it across reads: the first part
// must be "need more" or the same outcome as the whole, never a different
// header.
func FuzzParse(f *testing.F) {
	for _, tt := range parseTests {
		f.Add([]byte(tt.in), uint16(len(tt.in)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		h, n, err := Parse(b)
		if n < 0 || n > len(b) || (err != nil && n != 0) {
			t.Fatalf("got n=%d err %v for %d bytes", n, err, len(b))
		}
		if n > MaxV1Size && h.Version == 1 || n > V2HeaderSize+MaxV2Body {
			t.Fatalf("header of %d bytes accepted (version %d)", n, h.Version)
		}
		if err == nil && n > 0 && !h.Local && (!h.Src.IsValid() || !h.Dst.IsValid()) {
			t.Fatalf("got non-local header without addresses: %+v", h)
		}
		c := int(cut) % (len(b) + 1)
		h1, n1, err1 := Parse(b[:c])
		switch {
		case err1 == nil && n1 == 0:
			// need more: fine for any prefix
		case err1 != nil:
			if err == nil {
				t.Fatalf("prefix of %d: got err %v, whole input parsed (n=%d)", c, err1, n)
			}
		default:
			if h1 != h || n1 != n {
				t.Fatalf("prefix of %d: got %+v n=%d, whole input %+v n=%d err %v", c, h1, n1, h, n, err)
			}
		}
		// A complete header followed by anything parses the same.
		if err == nil && n > 0 {
			h2, n2, err2 := Parse(append(b[:n:n], "GET / HTTP/1.1\r\n"...))
			if err2 != nil || h2 != h || n2 != n {
				t.Fatalf("with trailing bytes: got %+v n=%d err %v, want %+v n=%d", h2, n2, err2, h, n)
			}
		}
	})
}

// FuzzParseIP checks the address parsers against net/netip.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "::", "::ffff:1.2.3.4", "2001:db8::1", "1:2:3:4:5:6:7:8", "01.1.1.1", "1::2::3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if bytes.IndexByte([]byte(s), '%') >= 0 {
			return // zones: refused here, accepted by netip
		}
		want, err := netip.ParseAddr(s)
		if got, ok := parseIPv4([]byte(s)); ok != (err == nil && want.Is4()) || (ok && got != want) {
			t.Fatalf("parseIPv4(%q): got %v %v, want %v (err %v)", s, got, ok, want, err)
		}
		if got, ok := parseIPv6([]byte(s)); ok != (err == nil && want.Is6()) || (ok && got != want) {
			t.Fatalf("parseIPv6(%q): got %v %v, want %v (err %v)", s, got, ok, want, err)
		}
	})
}
