package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

// BenchmarkCatchup measures how long a device takes to catch up on missed
// messages: from the WebSocket dial to the last message received, with the
// device acking every 256 messages (the window is 512). Each iteration is a
// new device of bob, so it receives the whole history.
//
//	go test -run '^$' -bench Catchup -benchtime 3x ./e2e
func BenchmarkCatchup(b *testing.B) {
	for _, missed := range []int{10000} {
		b.Run(fmt.Sprintf("missed=%d", missed), func(b *testing.B) {
			sys := startSystemB(b)
			fill(b, sys, missed)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				catchUp(b, sys, fmt.Sprintf("dev-%d", i), missed)
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/catchup")
			b.ReportMetric(float64(missed)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// fill makes alice send n messages to bob, pipelined in windows of 256
// (below the shard queue, so none is refused as overloaded).
func fill(b *testing.B, sys *system, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := rawWS(ctx, sys.wsURL+"?token="+sys.token("alice", "a", time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	for start := 0; start < n; start += 256 {
		end := min(n, start+256)
		for i := start; i < end; i++ {
			if err := wsutil.WriteClientText(c, fmt.Appendf(nil, `{"type":"send","id":"f%d","to":"bob","body":"missed message %d"}`, i, i)); err != nil {
				b.Fatal(err)
			}
		}
		for sent := start; sent < end; {
			data, _, err := wsutil.ReadServerData(c)
			if err != nil {
				b.Fatal(err)
			}
			var f struct{ Type, Code string }
			_ = json.Unmarshal(data, &f)
			switch f.Type {
			case "sent":
				sent++
			case "error":
				b.Fatalf("send refused: %s", data)
			}
		}
	}
}

// catchUp connects a new device of bob, syncs and reads until all n
// messages arrived in order.
func catchUp(b *testing.B, sys *system, device string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := rawWS(ctx, sys.wsURL+"?device="+device+"&token="+sys.token("bob", device, time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := wsutil.WriteClientText(c, []byte(`{"type":"sync","id":"s"}`)); err != nil {
		b.Fatal(err)
	}
	got := 0
	for got < n {
		data, _, err := wsutil.ReadServerData(c)
		if err != nil {
			b.Fatal(err)
		}
		var f struct {
			Type string
			Chat string
			Seq  uint64
		}
		if err := json.Unmarshal(data, &f); err != nil {
			b.Fatal(err)
		}
		if f.Type != "msg" {
			continue
		}
		if f.Seq != uint64(got+1) {
			b.Fatalf("got seq %d, want %d", f.Seq, got+1)
		}
		got++
		if got%256 == 0 || got == n {
			if err := wsutil.WriteClientText(c, fmt.Appendf(nil, `{"type":"ack","chat":%q,"seq":%d}`, f.Chat, f.Seq)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
