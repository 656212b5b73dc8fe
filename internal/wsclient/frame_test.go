package wsclient

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

func serverBytes(t testing.TB, fin bool, op ws.OpCode, p []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := ws.WriteFrame(&b, ws.Frame{Header: ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))}, Payload: p}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestParseServerFrame(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 300)
	huge := bytes.Repeat([]byte("y"), 70000)
	tests := []struct {
		name    string
		in      []byte
		wantOp  byte
		wantLen int
		wantN   int
		wantErr error
	}{
		{"text", serverBytes(t, true, ws.OpText, []byte("hi")), OpText, 2, 4, nil},
		{"ping", serverBytes(t, true, ws.OpPing, []byte("p")), OpPing, 1, 3, nil},
		{"len16", serverBytes(t, true, ws.OpText, long), OpText, 300, 304, nil},
		{"len64", serverBytes(t, true, ws.OpText, huge), OpText, 70000, 70010, nil},
		{"short header", []byte{0x81}, 0, 0, 0, nil},
		{"short payload", serverBytes(t, true, ws.OpText, long)[:100], 0, 0, 0, nil},
		{"short ext len", []byte{0x81, 126, 1}, 0, 0, 0, nil},
		{"masked", []byte{0x81, 0x81, 1, 2, 3, 4, 'a'}, 0, 0, 0, ErrMaskedServerFrame},
		{"reserved bits", []byte{0xC1, 0}, 0, 0, 0, ErrProtocol},
		{"too long", []byte{0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}, 0, 0, 0, ErrFrameTooLong},
		{"over the limit", serverBytes(t, true, ws.OpText, huge), 0, 0, 0, ErrFrameTooLong},
		{"long ping", serverBytes(t, true, ws.OpPing, long), 0, 0, 0, ErrBadControl},
		{"fragmented close", serverBytes(t, false, ws.OpClose, nil), 0, 0, 0, ErrBadControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := 1 << 20
			if tt.name == "over the limit" {
				limit = 65536
			}
			f, n, err := ParseServerFrame(tt.in, limit)
			if !errors.Is(err, tt.wantErr) || n != tt.wantN {
				t.Fatalf("got n %d err %v, want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrProtocol) {
				t.Errorf("%v does not wrap ErrProtocol", err)
			}
			if n > 0 && (f.Op != tt.wantOp || len(f.Payload) != tt.wantLen) {
				t.Errorf("got op %d len %d, want %d, %d", f.Op, len(f.Payload), tt.wantOp, tt.wantLen)
			}
		})
	}
}

func TestAppendClientFrame(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 1000, 65535, 65536, 70001} {
		p := bytes.Repeat([]byte("a"), n)
		b := AppendClientFrame(nil, OpText, p, 0xdeadbeef)
		r := bytes.NewReader(b)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if !h.Masked || !h.Fin || h.OpCode != ws.OpText || h.Length != int64(n) || r.Len() != n {
			t.Fatalf("len %d: got header %+v and %d payload bytes", n, h, r.Len())
		}
		payload := b[len(b)-n:]
		ws.Cipher(payload, h.Mask, 0)
		if !bytes.Equal(payload, p) {
			t.Errorf("len %d: payload differs after unmasking", n)
		}
	}
}

func BenchmarkAppendClientFrame(b *testing.B) {
	p := bytes.Repeat([]byte("x"), 200)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for i := 0; b.Loop(); i++ {
		buf = AppendClientFrame(buf[:0], OpText, p, uint32(i))
	}
}

func FuzzParseServerFrame(f *testing.F) {
	f.Add(serverBytes(f, true, ws.OpText, []byte(`{"type":"hello"}`)))
	f.Add(serverBytes(f, true, ws.OpPing, nil))
	f.Add([]byte{0x81, 126, 0, 200})
	f.Add([]byte{0x88, 127, 0, 0, 0, 0, 0, 0, 0, 2, 3, 232})
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1 << 16
		for len(b) > 0 {
			fr, n, err := ParseServerFrame(b, limit)
			if err != nil || n == 0 {
				return
			}
			if n > len(b) || len(fr.Payload) > n || len(fr.Payload) > limit {
				t.Fatalf("n %d payload %d input %d", n, len(fr.Payload), len(b))
			}
			b = b[n:]
		}
	})
}
