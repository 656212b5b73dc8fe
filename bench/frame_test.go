package bench

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
		{"text", serverBytes(t, true, ws.OpText, []byte("hi")), opText, 2, 4, nil},
		{"ping", serverBytes(t, true, ws.OpPing, []byte("p")), opPing, 1, 3, nil},
		{"len16", serverBytes(t, true, ws.OpText, long), opText, 300, 304, nil},
		{"len64", serverBytes(t, true, ws.OpText, huge), opText, 70000, 70010, nil},
		{"short header", []byte{0x81}, 0, 0, 0, nil},
		{"short payload", serverBytes(t, true, ws.OpText, long)[:100], 0, 0, 0, nil},
		{"short ext len", []byte{0x81, 126, 1}, 0, 0, 0, nil},
		{"masked", []byte{0x81, 0x81, 1, 2, 3, 4, 'a'}, 0, 0, 0, errMaskedServerFrame},
		{"too long", []byte{0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}, 0, 0, 0, errFrameTooLong},
		{"long ping", serverBytes(t, true, ws.OpPing, long), 0, 0, 0, errBadControl},
		{"fragmented close", serverBytes(t, false, ws.OpClose, nil), 0, 0, 0, errBadControl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := parseServerFrame(tt.in)
			if !errors.Is(err, tt.wantErr) || n != tt.wantN {
				t.Fatalf("got n %d err %v, want %d, %v", n, err, tt.wantN, tt.wantErr)
			}
			if n > 0 && (f.op != tt.wantOp || len(f.payload) != tt.wantLen) {
				t.Errorf("got op %d len %d, want %d, %d", f.op, len(f.payload), tt.wantOp, tt.wantLen)
			}
		})
	}
}

func TestAppendClientFrame(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 1000} {
		p := bytes.Repeat([]byte("a"), n)
		b := appendClientFrame(nil, opText, p, 0xdeadbeef)
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

func FuzzParseServerFrame(f *testing.F) {
	f.Add(serverBytes(f, true, ws.OpText, []byte(`{"type":"hello"}`)))
	f.Add(serverBytes(f, true, ws.OpPing, nil))
	f.Add([]byte{0x81, 126, 0, 200})
	f.Add([]byte{0x88, 127, 0, 0, 0, 0, 0, 0, 0, 2, 3, 232})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			fr, n, err := parseServerFrame(b)
			if err != nil || n == 0 {
				return
			}
			if n > len(b) || len(fr.payload) > n || len(fr.payload) > maxServerFrame {
				t.Fatalf("n %d payload %d input %d", n, len(fr.payload), len(b))
			}
			b = b[n:]
		}
	})
}
