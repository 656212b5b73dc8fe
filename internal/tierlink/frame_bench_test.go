package tierlink

import (
	"bytes"
	"fmt"
	"testing"
)

var benchSizes = []int{64, 1024}

func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%db", size), func(b *testing.B) {
			payload := bytes.Repeat([]byte("x"), size)
			buf := make([]byte, 0, HeaderSize+size)
			b.ReportAllocs()
			b.SetBytes(int64(HeaderSize + size))
			for b.Loop() {
				buf = AppendFrame(buf[:0], TypeDeliver, 12345, payload)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%db", size), func(b *testing.B) {
			frame := AppendFrame(nil, TypeDeliver, 12345, bytes.Repeat([]byte("x"), size))
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, _, err := Parse(frame, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// loopReader replays the same bytes forever without allocating.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off += n
	if r.off == len(r.b) {
		r.off = 0
	}
	return n, nil
}

func BenchmarkReaderNext(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%db", size), func(b *testing.B) {
			var stream []byte
			frame := AppendFrame(nil, TypeDeliver, 12345, bytes.Repeat([]byte("x"), size))
			for range 64 {
				stream = append(stream, frame...)
			}
			r := NewReader(&loopReader{b: stream}, 64<<10, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
