package client

import (
	"testing"
	"time"
)

func BenchmarkDecodeServerFrame(b *testing.B) {
	for _, name := range []string{"msg", "sent", "history"} {
		var in []byte
		for _, tt := range frameCases {
			if tt.name == name {
				in = []byte(tt.in)
			}
		}
		b.Run("frame="+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, err := decodeServerFrame(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOrderer(b *testing.B) {
	b.ReportAllocs()
	o := newOrderer(nil, false)
	var seq uint64
	for b.Loop() {
		seq++
		o.add(Message{Chat: "g:x", Seq: seq}, false, time.Time{})
	}
}

func BenchmarkHandoff(b *testing.B) {
	b.ReportAllocs()
	h := newHandoff(nil)
	var seq uint64
	for b.Loop() {
		seq++
		recordSent(h, Message{Chat: "g:x", Seq: seq})
		h.mark("g:x", seq, false)
		if seq%64 == 0 {
			acks, _ := h.collect(fixed(0), false, 64)
			h.done(acks)
		}
	}
}
