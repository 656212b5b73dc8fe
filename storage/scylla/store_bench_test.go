package scylla

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

// The benchmarks need PARLEY_CQL_HOSTS like the integration tests; each
// creates a keyspace of its own (a few seconds, excluded from the timing).
// They report p50/p99 latency per call as custom metrics:
//
//	PARLEY_CQL_HOSTS=127.0.0.1:19042 go test -run '^$' -bench . -benchtime 2000x ./storage/scylla/

func benchStore(b *testing.B) *Store {
	b.Helper()
	s := openStore(b, testConfig(b))
	b.Cleanup(func() { s.Close() })
	return s
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}

// BenchmarkAppend appends one message per call (a lightweight transaction
// plus its dedup key), serially or from several goroutines on distinct
// chats (the logic tier's shards).
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("writers=%d/msgs=1", writers), func(b *testing.B) {
			s := benchStore(b)
			ctx := context.Background()
			var seqs [64]atomic.Uint64
			lats := make([][]time.Duration, writers)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan struct{}, writers)
			for w := range writers {
				go func() {
					defer func() { done <- struct{}{} }()
					chat := fmt.Sprintf("g:bench%d", w)
					for next.Add(1) <= int64(b.N) {
						seq := seqs[w].Add(1)
						m := storetest.Msg(chat, seq)
						m.RequestID = fmt.Sprintf("r%d", seq)
						start := time.Now()
						if err := s.AppendMessages(ctx, []record.Message{m}); err != nil {
							b.Error(err)
							return
						}
						lats[w] = append(lats[w], time.Since(start))
					}
				}()
			}
			for range writers {
				<-done
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			reportLatency(b, slices.Concat(lats...))
		})
	}
}

// BenchmarkPage reads a 50-message history page (newest, and from the
// middle with Before) of a chat with 2,000 messages in two buckets.
func BenchmarkPage(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	const chat, n = "g:history", 2000
	for from := uint64(1); from <= n; from += 100 {
		if err := s.AppendMessages(ctx, storetest.Msgs(chat, from, from+99)); err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		page record.Page
	}{
		{"newest/limit=50", record.Page{Limit: 50}},
		{"before=1020/limit=50", record.Page{Before: 1020, Limit: 50}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				got, err := s.Messages(ctx, chat, tc.page)
				if err != nil || len(got) != 50 {
					b.Fatalf("Messages: got %d, %v", len(got), err)
				}
				lat = append(lat, time.Since(start))
			}
			reportLatency(b, lat)
		})
	}
}
