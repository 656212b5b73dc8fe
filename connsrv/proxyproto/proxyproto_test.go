package proxyproto

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), sigV2...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...)
}

var parseTests = []struct {
	name    string
	in      string
	want    Header
	wantN   int   // 0 with wantErr nil: need more
	wantErr error // nil: success or need more
}{
	{name: "v1 tcp4", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nGET /", want: Header{Version: 1, Src: ap("1.2.3.4:1111"), Dst: ap("5.6.7.8:2222")}, wantN: 38},
	{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 65535 0\r\n", want: Header{Version: 1, Src: ap("[2001:db8::1]:65535"), Dst: ap("[::ffff:10.0.0.1]:0")}, wantN: 48},
	{name: "v1 unknown", in: "PROXY UNKNOWN\r\n", want: Header{Version: 1, Local: true}, wantN: 15},
	{name: "v1 unknown with addresses", in: "PROXY UNKNOWN ffff:f...f:ffff 1 2\r\nX", want: Header{Version: 1, Local: true}, wantN: 35},
	{name: "v1 max length", in: "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		want:  Header{Version: 1, Src: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dst: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")},
		wantN: 104},
	{name: "v1 partial signature", in: "PRO"},
	{name: "v1 partial line", in: "PROXY TCP4 1.2.3.4 5.6"},
	{name: "v1 no crlf within 107", in: "PROXY UNKNOWN " + strings.Repeat("a", 100), wantErr: ErrTooLong},
	{name: "v1 bare lf", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", wantErr: ErrInvalid},
	{name: "v1 tcp4 with ipv6", in: "PROXY TCP4 ::1 ::1 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 tcp6 with ipv4", in: "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 bad port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", wantErr: ErrInvalid},
	{name: "v1 signed port", in: "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 leading zero", in: "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 octet over 255", in: "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 double space", in: "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 extra field", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", wantErr: ErrInvalid},
	{name: "v1 missing field", in: "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", wantErr: ErrInvalid},
	{name: "v1 zone", in: "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 unknown proto", in: "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrInvalid},
	{name: "v1 lowercase", in: "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", wantErr: ErrMissing},
	{name: "http request", in: "GET / HTTP/1.1\r\n", wantErr: ErrMissing},
	{name: "bad second byte", in: "PX", wantErr: ErrMissing},
	{name: "empty"},

	{name: "v2 tcp4", in: string(AppendV2(nil, ap("1.2.3.4:1111"), ap("5.6.7.8:2222"), nil)) + "GET",
		want: Header{Version: 2, Src: ap("1.2.3.4:1111"), Dst: ap("5.6.7.8:2222")}, wantN: 28},
	{name: "v2 tcp6 with tlvs", in: string(AppendV2(nil, ap("[2001:db8::7]:40000"), ap("[2001:db8::1]:443"), []byte{0x04, 0x00, 0x03, 'a', 'b', 'c', 0x20, 0, 0})),
		want: Header{Version: 2, Src: ap("[2001:db8::7]:40000"), Dst: ap("[2001:db8::1]:443")}, wantN: 16 + 36 + 9},
	{name: "v2 local", in: string(AppendV2Local(nil)), want: Header{Version: 2, Local: true}, wantN: 16},
	{name: "v2 local with body", in: string(v2(cmdLocal, famInet<<4|transStream, make([]byte, 12))), want: Header{Version: 2, Local: true}, wantN: 28},
	{name: "v2 unspec", in: string(v2(cmdProxy, 0, nil)), want: Header{Version: 2, Local: true}, wantN: 16},
	{name: "v2 partial signature", in: "\r\n\r\n\x00\r\nQU"},
	{name: "v2 partial header", in: string(sigV2) + "\x21\x11\x00"},
	{name: "v2 partial body", in: string(AppendV2(nil, ap("1.2.3.4:1"), ap("5.6.7.8:2"), nil))[:20]},
	{name: "v2 bad signature", in: "\r\n\r\n\x00\r\nQUIX\n", wantErr: ErrMissing},
	{name: "v2 version 1", in: string(sigV2) + "\x11\x11\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrInvalid},
	{name: "v2 bad command", in: string(sigV2) + "\x22\x11\x00\x0c" + strings.Repeat("\x00", 12), wantErr: ErrInvalid},
	{name: "v2 too long", in: string(sigV2) + "\x21\x11\x04\x01", wantErr: ErrTooLong},
	{name: "v2 short inet body", in: string(v2(cmdProxy, famInet<<4|transStream, make([]byte, 11))), wantErr: ErrInvalid},
	{name: "v2 short inet6 body", in: string(v2(cmdProxy, famInet6<<4|transStream, make([]byte, 35))), wantErr: ErrInvalid},
	{name: "v2 udp", in: string(v2(cmdProxy, famInet<<4|2, make([]byte, 12))), wantErr: ErrUnsupported},
	{name: "v2 unix", in: string(v2(cmdProxy, famUnix<<4|transStream, make([]byte, 216))), wantErr: ErrUnsupported},
	{name: "v2 bad family", in: string(v2(cmdProxy, 0x41, make([]byte, 12))), wantErr: ErrInvalid},
}

func TestParse(t *testing.T) {
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			h, n, err := Parse([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got err %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN || h != tt.want {
				t.Fatalf("got %+v n=%d, want %+v n=%d", h, n, tt.want, tt.wantN)
			}
			if err != nil || n == 0 {
				return
			}
			// Every proper prefix is "need more".
			for i := range n {
				if h, m, err := Parse([]byte(tt.in[:i])); err != nil || m != 0 || h != (Header{}) {
					t.Fatalf("prefix of %d bytes: got %+v n=%d err %v, want need more", i, h, m, err)
				}
			}
		})
	}
}

func TestParseIPv6(t *testing.T) {
	for _, s := range []string{
		"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::8",
		"2001:DB8::a:b", "::ffff:1.2.3.4", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1::5:6:1.2.3.4", "0:0:0:0:0:0:0:0",
		"", ":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::",
		"1:2:3:4:5:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3", "::1.2.3.4:5", "1:", ":1", "g::", "1.2.3.4", "::01.2.3.4",
	} {
		got, ok := parseIPv6([]byte(s))
		want, err := netip.ParseAddr(s)
		if wantOK := err == nil && want.Is6(); ok != wantOK || (ok && got != want) {
			t.Errorf("%q: got %v %v, want %v (err %v)", s, got, ok, want, err)
		}
	}
}

func TestAppendV1RoundTrip(t *testing.T) {
	for _, tt := range []struct{ src, dst string }{
		{"1.2.3.4:5", "6.7.8.9:10"},
		{"[2001:db8::1]:443", "[::1]:8080"},
		{"[::ffff:1.2.3.4]:1", "5.6.7.8:2"},
	} {
		b := AppendV1(nil, ap(tt.src), ap(tt.dst))
		h, n, err := Parse(b)
		if err != nil || n != len(b) || h.Src.Addr().Unmap() != ap(tt.src).Addr().Unmap() || h.Src.Port() != ap(tt.src).Port() {
			t.Errorf("%s: got %+v n=%d err %v from %q", tt.src, h, n, err, b)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	in := [][]byte{
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1111 2222\r\n"),
		[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"),
		AppendV2(nil, ap("[2001:db8::7]:40000"), ap("[2001:db8::1]:443"), []byte{1, 0, 2, 'h', '2'}),
		[]byte("PROXY TCP4 1.2.3.4 x 1 2\r\n"),
	}
	for _, b := range in {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = Parse(b) }); n != 0 {
			t.Errorf("%q: got %v allocs, want 0", b, n)
		}
	}
}
