package wsframe

import (
	"bytes"
	"fmt"
	"testing"
)

// drain runs the server's frame loop over a stream delivered in chunks cut
// at the given positions, and returns a transcript of what it saw.
func drain(stream []byte, cuts []int) string {
	var (
		out bytes.Buffer
		buf []byte
		a   Assembler
	)
	feed := func(chunk []byte) bool {
		buf = append(buf, chunk...)
		for {
			h, p, n, err := ReadFrame(buf, 256)
			if err != nil {
				fmt.Fprintf(&out, "err %d;", CloseCode(err))
				return false
			}
			if n == 0 {
				return true
			}
			if h.OpCode.IsControl() {
				fmt.Fprintf(&out, "ctl %d %q;", h.OpCode, p)
			} else {
				msg, done, err := a.Push(h, p, 512)
				if err != nil {
					fmt.Fprintf(&out, "err %d;", CloseCode(err))
					return false
				}
				if done {
					fmt.Fprintf(&out, "msg %q;", msg)
				}
			}
			buf = buf[n:]
		}
	}
	prev := 0
	for _, c := range cuts {
		if c < prev || c > len(stream) {
			continue
		}
		if !feed(stream[prev:c]) {
			return out.String()
		}
		prev = c
	}
	feed(stream[prev:])
	return out.String()
}

func FuzzParse(f *testing.F) {
	seeds := [][]byte{
		text(true, "hello"),
		append(text(false, "he"), cont(true, "llo")...),
		append(text(false, "a"), append(clientFrame(0x89, []byte("p")), cont(true, "b")...)...),
		clientFrame(0x88, []byte{0x03, 0xe8}),
		clientFrame(0x82, []byte{1, 2}),
		text(true, "\xff"),
		{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'},
		append([]byte{0x81, 0x80 | 127}, 0xff, 0, 0, 0, 0, 0, 0, 1),
		clientFrame(0x81, bytes.Repeat([]byte("x"), 300)),
		cont(true, "x"),
		clientFrame(0xc1, []byte("x")),
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16) {
		whole := drain(append([]byte(nil), stream...), nil)
		if got := drain(append([]byte(nil), stream...), []int{int(cut)}); got != whole {
			t.Fatalf("split at %d: got %s, want %s", cut, got, whole)
		}
		if len(stream) <= 64 {
			cuts := make([]int, len(stream))
			for i := range cuts {
				cuts[i] = i
			}
			if got := drain(append([]byte(nil), stream...), cuts); got != whole {
				t.Fatalf("byte by byte: got %s, want %s", got, whole)
			}
		}
	})
}
