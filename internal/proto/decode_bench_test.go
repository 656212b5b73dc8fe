package proto

import "testing"

// BenchmarkDecode measures Decode on the fast path (send, ack) and on the
// fallback (history, sync, and a send whose body has an escape).
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct{ name, frame string }{
		{"frame=ack/path=fast", `{"type":"ack","chat":"dm:alice:bob","seq":123456}`},
		{"frame=send/path=fast", `{"type":"send","id":"req-0123456789","chat":"dm:alice:bob","body":"hello bob, how are you today?"}`},
		{"frame=send/path=fallback", `{"type":"send","id":"req-0123456789","chat":"dm:alice:bob","body":"hello \"bob\", how are you today?"}`},
		{"frame=history/path=fallback", `{"type":"history","id":"req-0123456789","chat":"dm:alice:bob","before":1000,"limit":50}`},
		{"frame=sync/path=fallback", `{"type":"sync","id":"req-0123456789","chats":{"dm:alice:bob":17,"g:team":4242,"g:family":9}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			frame := []byte(bc.frame)
			if _, err := Decode(frame); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
