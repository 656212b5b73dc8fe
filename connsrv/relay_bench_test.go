package connsrv

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/parley-chat/parley/connsrv/wsframe"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/tierlink"
)

// nopConn is a gnet.Conn whose Wake does nothing; other methods are not
// used by the benchmarked paths.
type nopConn struct{ gnet.Conn }

func (nopConn) Wake(gnet.AsyncCallback) error { return nil }

func benchServer(b *testing.B) *Server {
	b.Helper()
	v, err := auth.NewVerifier(testAuth, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Default()
	cfg.LinkPoolSize = 1
	cfg.LinkSecret = string(testLinkSecret)
	srv, err := New(cfg, v, nil)
	if err != nil {
		b.Fatal(err)
	}
	return srv
}

// BenchmarkInbound measures the client-to-logic relay path: parse and
// unmask a client text frame from the read buffer, run it through the
// assembler and append the tierlink Data frame to the link queue.
func BenchmarkInbound(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("msg=%db", size), func(b *testing.B) {
			srv := benchServer(b)
			l := srv.links[0]
			l.markUp()
			s := &session{c: nopConn{}, id: 7}
			s.link.Store(l)
			s.gen.Store(1)
			frame := maskedFrame(0x81, bytes.Repeat([]byte("a"), size))
			buf := make([]byte, len(frame))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				copy(buf, frame)
				h, p, _, err := wsframe.ReadFrame(buf, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				msg, _, err := s.pushData(h, p, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				if err := l.sendData(1, s.id, msg); err != nil {
					b.Fatal(err)
				}
				if i%64 == 0 { // the writer goroutine drains the queue
					l.mu.Lock()
					l.buf = l.buf[:0]
					l.mu.Unlock()
				}
			}
		})
	}
}

// BenchmarkDeliver measures the logic-to-client path: parse a Deliver
// frame, find the session and append the WebSocket frame to its pending
// output, then the loop taking the batch and giving its buffer back to
// the pool.
func BenchmarkDeliver(b *testing.B) {
	for _, size := range []int{64, 256, 4096} {
		b.Run(fmt.Sprintf("msg=%db", size), func(b *testing.B) {
			srv := benchServer(b)
			s := &session{c: nopConn{}, id: 9}
			s.link.Store(srv.links[0])
			s.state.Store(stateOpen)
			srv.reg.add(s)
			frame := tierlink.AppendFrame(nil, tierlink.TypeDeliver, 9, bytes.Repeat([]byte("m"), size))
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ReportMetric(float64(unsafe.Sizeof(session{})), "bytes/session")
			for i := 0; b.Loop(); i++ {
				f, _, err := tierlink.Parse(frame, 0)
				if err != nil {
					b.Fatal(err)
				}
				srv.deliver(f.Session, f.Payload)
				if i%8 == 7 { // the loop flushes a batch
					buf, _, _ := s.takeOut()
					putOut(buf)
				}
			}
		})
	}
}

// BenchmarkAppendServerFrame is the framing step alone.
func BenchmarkAppendServerFrame(b *testing.B) {
	p := bytes.Repeat([]byte("m"), 256)
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		dst = wsframe.AppendFrame(dst[:0], ws.OpText, p)
	}
}
