package logic

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
)

// sinkStore is a memStore whose appends are acknowledged and dropped, so
// that a benchmark of the message path counts the logic tier's work and
// allocations, not a store's.
type sinkStore struct{ *memStore }

func (sinkStore) AppendMessages(_ context.Context, apps []record.ChatAppend) []record.AppendResult {
	res := make([]record.AppendResult, len(apps))
	for i, a := range apps {
		res[i].Stored = len(a.Msgs)
	}
	return res
}

// BenchmarkMessagePath is a 1-on-1 message's whole path through one
// logic node over a real tier link: a send frame in, the shard's batch,
// the store call (sinkStore), "sent" back to the sender, "msg" to the
// recipient's session and its ack, with window sends in flight. The
// connection node is a lean client on the same process that parses
// nothing but the frame type and the msg's seq, so allocs/op is the
// logic tier's per message (plus the Go runtime's network poller).
//
//	go test -run '^$' -bench MessagePath -benchtime 20000x ./logic/
func BenchmarkMessagePath(b *testing.B) {
	svc := startService(b, sinkStore{newMemStore()}, func(c *Config) { c.HTTPListen, c.AdminListen = "", "" })
	c, err := net.Dial("tcp", svc.LinkAddr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := tierlink.NewReader(c, 0, 0)
	if _, err := tierlink.DialHandshake(c, r, tierlink.TypeHello, "bench", testLinkSecret, tierlink.DialOptions{}); err != nil {
		b.Fatal(err)
	}
	const alice, bob = 1, 2
	var wmu sync.Mutex
	write := func(frame []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		if _, err := c.Write(frame); err != nil {
			b.Error(err)
		}
	}
	const chat = "dm:alice:bob"
	sent := make(chan struct{}, 1024) // one per "sent"
	synced := make(chan struct{}, 2)  // one per session
	delivered := make(chan int64, 1)  // the newest seq bob got, when asked
	want := make(chan int64, 1)       // "tell me when bob has this seq"
	go func() {
		var ack, ackFrame []byte
		var got, waitFor int64 = 0, -1
		for {
			f, err := r.Next()
			if err != nil {
				return
			}
			p := f.Payload
			switch {
			case f.Type != tierlink.TypeDeliver:
			case bytes.HasPrefix(p, []byte(`{"type":"sent"`)):
				sent <- struct{}{}
			case bytes.HasPrefix(p, []byte(`{"type":"synced"`)):
				synced <- struct{}{}
			case f.Session == bob && bytes.HasPrefix(p, []byte(`{"type":"msg"`)):
				var seq int64
				for i := bytes.Index(p, []byte(`"seq":`)) + len(`"seq":`); i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
					seq = seq*10 + int64(p[i]-'0')
				}
				got = max(got, seq)
				ack = append(ack[:0], `{"type":"ack","chat":"`+chat+`","seq":`...)
				ack = strconv.AppendInt(ack, seq, 10)
				ack = append(ack, '}')
				ackFrame = tierlink.AppendFrame(ackFrame[:0], tierlink.TypeData, bob, ack)
				write(ackFrame)
			}
			select {
			case w := <-want:
				waitFor = w
			default:
			}
			if waitFor >= 0 && got >= waitFor {
				delivered <- got
				waitFor = -1
			}
		}
	}()
	for _, s := range []struct {
		id   uint64
		user string
	}{{alice, "alice"}, {bob, "bob"}} {
		write(tierlink.AppendOpen(nil, s.id, tierlink.Open{User: s.user, Device: "d", Remote: "127.0.0.1:1"}))
		write(tierlink.AppendFrame(nil, tierlink.TypeData, s.id, []byte(`{"type":"sync","id":"sync"}`)))
		<-synced
	}
	const window = 64
	var frame, body []byte
	send := func(n int) {
		body = append(body[:0], `{"type":"send","id":"r`...)
		body = strconv.AppendInt(body, int64(n), 10)
		body = append(body, `","chat":"`+chat+`","body":"hello, this is a message of about the seed's average size, 100 bytes!"}`...)
		frame = tierlink.AppendFrame(frame[:0], tierlink.TypeData, alice, body)
		write(frame)
	}
	// The chat's first message creates it: outside the timing.
	send(0)
	<-sent
	b.ReportAllocs()
	b.ResetTimer()
	inflight := 0
	for n := 1; n <= b.N; n++ {
		if inflight == window {
			<-sent
			inflight--
		}
		send(n)
		inflight++
	}
	for ; inflight > 0; inflight-- {
		<-sent
	}
	want <- int64(b.N + 1)
	// A msg frame may already have arrived: nudge the reader with one more
	// round trip if it is idle.
	send(b.N + 1)
	<-sent
	<-delivered
	b.StopTimer()
}
