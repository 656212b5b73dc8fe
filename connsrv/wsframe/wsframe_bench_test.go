package wsframe

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkReadFrame(b *testing.B) {
	for _, size := range []int{64, 1024, 16384} {
		b.Run(fmt.Sprintf("msg=%db", size), func(b *testing.B) {
			f := clientFrame(0x81, bytes.Repeat([]byte("a"), size))
			buf := make([]byte, len(f))
			var a Assembler
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				copy(buf, f)
				h, p, _, err := ReadFrame(buf, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := a.Push(h, p, 1<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	p := bytes.Repeat([]byte("a"), 256)
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		dst = AppendFrame(dst[:0], ws.OpText, p)
	}
}
