package events

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// BenchmarkPublish measures Publish throughput against the broker named by
// PARLEY_KAFKA_BROKERS (skipped without it), including the final Flush, so
// msgs/s counts acknowledged records. When Publish returns ErrFull the loop
// sleeps 100µs and retries (counted as full_retries/op):
//
//	go test -run '^$' -bench BenchmarkPublish -benchtime 200000x ./adapters/events/
func BenchmarkPublish(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run("goroutines="+strconv.Itoa(par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
			cfg := testConfig(b, 12)
			cfg.MaxBufferedRecords = 100000
			p := newProducer(b, cfg)
			ctx := context.Background()
			users := make([]string, 1000)
			for i := range users {
				users[i] = "user-" + strconv.Itoa(i)
			}
			var fulls atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(par)
			start := time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					ev := record.PushEvent{Recipient: users[i%len(users)], ChatID: "dm:bench", Seq: uint64(i),
						Sender: "sender", Preview: "a short preview of the message text", TS: 1700000000000}
					for {
						err := p.Publish(ctx, ev)
						if err == nil {
							break
						}
						if !errors.Is(err, ErrFull) {
							b.Error(err)
							return
						}
						fulls.Add(1)
						time.Sleep(100 * time.Microsecond)
					}
				}
			})
			if err := p.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			full := fulls.Load()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(full)/float64(b.N), "full_retries/op")
		})
	}
}
