package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

var testMask = [4]byte{0x11, 0x22, 0x33, 0x44}

// clientFrame builds a masked client frame with explicit first byte
// (FIN/RSV/opcode).
func clientFrame(b0 byte, payload []byte) []byte {
	var out []byte
	n := len(payload)
	switch {
	case n <= 125:
		out = append(out, b0, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, b0, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, testMask[:]...)
	start := len(out)
	out = append(out, payload...)
	ws.Cipher(out[start:], testMask, 0)
	return out
}

func text(fin bool, p string) []byte { return clientFrame(finBit(fin)|byte(ws.OpText), []byte(p)) }
func cont(fin bool, p string) []byte {
	return clientFrame(finBit(fin)|byte(ws.OpContinuation), []byte(p))
}
func finBit(fin bool) byte {
	if fin {
		return 0x80
	}
	return 0
}

func TestParseHeaderErrors(t *testing.T) {
	long := make([]byte, 200)
	tests := []struct {
		name string
		in   []byte
		max  int64
		want error
	}{
		{"rsv1", clientFrame(0x80|0x40|1, []byte("x")), 0, ErrReservedBits},
		{"rsv3", clientFrame(0x80|0x10|1, []byte("x")), 0, ErrReservedBits},
		{"opcode3", clientFrame(0x80|3, nil), 0, ErrUnknownOpCode},
		{"opcode11", clientFrame(0x80|0xb, nil), 0, ErrUnknownOpCode},
		{"unmasked", []byte{0x81, 0x01, 'x'}, 0, ErrUnmasked},
		{"ping too long", clientFrame(0x80|9, long), 0, ErrControlTooLong},
		{"ping fragmented", clientFrame(9, []byte("x")), 0, ErrControlFragment},
		{"close fragmented", clientFrame(8, nil), 0, ErrControlFragment},
		{"top bit length", append([]byte{0x81, 0x80 | 127}, 0x80, 0, 0, 0, 0, 0, 0, 1), 0, ErrBadLength},
		{"too big 16", clientFrame(0x81, long), 100, ErrFrameTooBig},
		{"too big 64 before mask", append([]byte{0x81, 0x80 | 127}, 0, 0, 0, 1, 0, 0, 0, 0), 1 << 16, ErrFrameTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseHeader(tt.in, tt.max)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"small", []byte("hello")},
		{"125", bytes.Repeat([]byte("a"), 125)},
		{"126", bytes.Repeat([]byte("b"), 126)},
		{"65535", bytes.Repeat([]byte("c"), 65535)},
		{"65536", bytes.Repeat([]byte("d"), 65536)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := clientFrame(0x81, tt.payload)
			for cut := 0; cut < len(f); cut += 1 + len(f)/50 {
				_, _, n, err := ReadFrame(append([]byte(nil), f[:cut]...), 1<<20)
				if n != 0 || err != nil {
					t.Fatalf("prefix %d: got n=%d err=%v, want 0, nil", cut, n, err)
				}
			}
			h, p, n, err := ReadFrame(f, 1<<20)
			if err != nil || n != len(f) {
				t.Fatalf("got n=%d err=%v, want %d, nil", n, err, len(f))
			}
			if !h.Fin || h.OpCode != ws.OpText || !bytes.Equal(p, tt.payload) {
				t.Fatalf("got fin=%v op=%v payload %d bytes, want text %d bytes", h.Fin, h.OpCode, len(p), len(tt.payload))
			}
		})
	}
}

func TestAssembler(t *testing.T) {
	type step struct {
		frame []byte
		msg   string // expected complete message, "" for none
		err   error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"single", []step{{frame: text(true, "hi"), msg: "hi"}}},
		{"fragments", []step{{frame: text(false, "a")}, {frame: cont(false, "b")}, {frame: cont(true, "c"), msg: "abc"}}},
		{"continuation first", []step{{frame: cont(true, "x"), err: ErrContinuation}}},
		{"interleaved", []step{{frame: text(false, "a")}, {frame: text(true, "b"), err: ErrInterleaved}}},
		{"binary", []step{{frame: clientFrame(0x82, []byte{1}), err: ErrBinary}}},
		{"bad utf8", []step{{frame: text(true, "\xff\xfe"), err: ErrInvalidUTF8}}},
		{"bad utf8 fragmented", []step{{frame: text(false, "\xe2\x82")}, {frame: cont(true, "x"), err: ErrInvalidUTF8}}},
		{"utf8 split across fragments", []step{{frame: text(false, "\xe2\x82")}, {frame: cont(true, "\xac"), msg: "€"}}},
		{"too big single", []step{{frame: text(true, "0123456789A"), err: ErrMessageTooBig}}},
		{"too big assembled", []step{{frame: text(false, "012345")}, {frame: cont(true, "6789A"), err: ErrMessageTooBig}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Assembler
			for i, s := range tt.steps {
				h, p, _, err := ReadFrame(s.frame, 0)
				if err != nil {
					t.Fatal(err)
				}
				msg, done, err := a.Push(h, p, 10)
				if !errors.Is(err, s.err) {
					t.Fatalf("step %d: got err %v, want %v", i, err, s.err)
				}
				if got := string(msg); done != (s.msg != "") || got != s.msg {
					t.Fatalf("step %d: got %q done=%v, want %q", i, got, done, s.msg)
				}
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		in   []byte
		code ws.StatusCode
		err  error
	}{
		{nil, ws.StatusNoStatusRcvd, nil},
		{[]byte{3}, 0, ErrBadClosePayload},
		{[]byte{0x03, 0xe8}, 1000, nil},
		{[]byte{0x03, 0xe8, 'o', 'k'}, 1000, nil},
		{[]byte{0x03, 0xed}, 1005, ErrBadCloseCode},
		{[]byte{0x0f, 0xa0}, 4000, nil},
		{[]byte{0x03, 0xe8, 0xff}, 1000, ErrInvalidUTF8Close},
	}
	for _, tt := range tests {
		code, _, err := ParseClose(tt.in)
		if code != tt.code || !errors.Is(err, tt.err) {
			t.Errorf("ParseClose(%x): got %d, %v, want %d, %v", tt.in, code, err, tt.code, tt.err)
		}
	}
}

func TestAppendFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		p := bytes.Repeat([]byte("z"), n)
		b := AppendFrame(nil, ws.OpText, p)
		f, err := readFrame(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpText || !bytes.Equal(f.Payload, p) {
			t.Fatalf("n=%d: got header %+v, want unmasked text FIN", n, f.Header)
		}
	}
	b := AppendClose(nil, ws.StatusCode(4002), string(bytes.Repeat([]byte("é"), 100)))
	f, err := readFrame(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if code != 4002 || len(f.Payload) > MaxControlPayload {
		t.Fatalf("got code %d payload %d bytes, want 4002 and <= 125", code, len(f.Payload))
	}
	if _, _, err := ParseClose(f.Payload); err != nil {
		t.Fatalf("got %v for reason %q, want valid UTF-8", err, reason)
	}
}

func TestCloseCode(t *testing.T) {
	if got := CloseCode(ErrFrameTooBig); got != 1009 {
		t.Errorf("got %d, want 1009", got)
	}
	if got := CloseCode(errors.New("x")); got != 1011 {
		t.Errorf("got %d, want 1011", got)
	}
}

// readFrame reads one server frame with gobwas/ws's header reader.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: p}, nil
}
