package proto

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkAppendMsg(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("body=%db", size), func(b *testing.B) {
			m := testMsg
			m.Body = strings.Repeat("hello wörld ", size/12+1)[:size]
			buf := AppendMsg(nil, &m)
			b.ReportAllocs()
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				buf = AppendMsg(buf[:0], &m)
			}
		})
	}
}

func BenchmarkAppendSent(b *testing.B) {
	buf := AppendSent(nil, "req-0123456789", "dm:alice:bob", 123456, 1700000000123)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = AppendSent(buf[:0], "req-0123456789", "dm:alice:bob", 123456, 1700000000123)
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("plain ascii text, some \"quotes\" and <html> ", 8)
	buf := AppendString(nil, s)
	b.ReportAllocs()
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}

func BenchmarkDecodeSend(b *testing.B) {
	frame := []byte(`{"type":"send","id":"req-0123456789","chat":"dm:alice:bob","body":"hello bob, how are you today?"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
