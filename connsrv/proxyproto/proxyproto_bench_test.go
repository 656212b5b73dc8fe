package proxyproto

import "testing"

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"v=1/fam=tcp4", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 51234 443\r\n")},
		{"v=1/fam=tcp6", []byte("PROXY TCP6 2001:db8:85a3::8a2e:370:7334 2001:db8::1 51234 443\r\n")},
		{"v=2/fam=tcp4", AppendV2(nil, ap("203.0.113.7:51234"), ap("198.51.100.1:443"), nil)},
		{"v=2/fam=tcp6/tlvs=2", AppendV2(nil, ap("[2001:db8:85a3::8a2e:370:7334]:51234"), ap("[2001:db8::1]:443"), []byte{1, 0, 2, 'h', '2', 2, 0, 3, 'a', '.', 'b'})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				if _, n, err := Parse(bc.in); err != nil || n != len(bc.in) {
					b.Fatalf("got n=%d err %v", n, err)
				}
			}
		})
	}
}
