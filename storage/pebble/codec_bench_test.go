package pebble

import (
	"testing"

	"github.com/parley-chat/parley/storage/storetest"
)

func BenchmarkEncodeMessage(b *testing.B) {
	m := storetest.Msg("g:bench", 2)
	buf := appendMessage(nil, &m)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = appendMessage(buf[:0], &m)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	m := storetest.Msg("g:bench", 2)
	v := appendMessage(nil, &m)
	b.ReportAllocs()
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, err := decodeMessage(m.ChatID, m.Seq, v); err != nil {
			b.Fatal(err)
		}
	}
}
