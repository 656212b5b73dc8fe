package logic

import (
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/parley-chat/parley/internal/tierlink"
)

// TestLinkFlushed: flushed waits for the frames queued before it to reach
// the connection, and for nothing queued after; a closed link is
// flushed.
func TestLinkFlushed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe()
		defer b.Close()
		l := newLink(a, 1<<20, time.Second)
		defer l.close()
		select {
		case <-l.flushed():
		default:
			t.Fatal("an idle link is not flushed")
		}
		go l.writeLoop()
		frame := tierlink.AppendFrame(nil, tierlink.TypeDeliver, 1, []byte(`{"type":"goaway"}`))
		l.appendFrames(func(buf []byte) []byte { return append(buf, frame...) })
		done := l.flushed()
		synctest.Wait() // the writer blocks: nobody reads b yet
		select {
		case <-done:
			t.Fatal("flushed before the frame was read")
		default:
		}
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(b, got); err != nil || string(got) != string(frame) {
			t.Fatalf("read %q, %v", got, err)
		}
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("not flushed after the frame was written")
		}
		// A link that closes with frames queued wakes its waiters.
		l.appendFrames(func(buf []byte) []byte { return append(buf, frame...) })
		done = l.flushed()
		l.close()
		<-done
	})
}
