package scylla

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
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
//
// With PARLEY_CQL_PID set to the Cassandra JVM's process id (one node on
// this machine), BenchmarkAppend also reports that process's CPU time per
// append (utime+stime from /proc, over the timed part): "cass-us/msg".

func benchStore(b *testing.B, sequencing string) *Store {
	b.Helper()
	cfg := testConfig(b)
	cfg.Sequencing = sequencing
	s := openStore(b, cfg)
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

// BenchmarkAppend appends one message per call (with its dedup key) from
// several goroutines, each on a chat of its own (the logic tier's shards),
// in both sequencing modes: a lightweight transaction per call under
// "lwt", plain writes stamped with the epoch under "lease".
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{SequencingLWT, SequencingLease} {
		for _, writers := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("sequencing=%s/writers=%d/msgs=1", mode, writers), func(b *testing.B) {
				s := benchStore(b, mode)
				ctx := context.Background()
				seqs := make([]atomic.Uint64, writers)
				lats := make([][]time.Duration, writers)
				var next atomic.Int64
				b.ReportAllocs()
				cpu0 := serverCPU(b)
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
							if r := s.AppendMessages(ctx, []record.ChatAppend{{Epoch: 1, Msgs: []record.Message{m}}}); r[0].Err != nil {
								b.Error(r[0].Err)
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
				if cpu0 >= 0 {
					b.ReportMetric(float64((serverCPU(b)-cpu0).Microseconds())/float64(b.N), "cass-us/msg")
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				reportLatency(b, slices.Concat(lats...))
			})
		}
	}
}

// serverCPU returns the CPU time (utime+stime) of the process
// PARLEY_CQL_PID names, -1 when it is not set.
func serverCPU(b *testing.B) time.Duration {
	pid := os.Getenv("PARLEY_CQL_PID")
	if pid == "" {
		return -1
	}
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatalf("PARLEY_CQL_PID: %v", err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the whole line, in clock ticks (100 a second).
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("PARLEY_CQL_PID: cannot parse /proc/%s/stat", pid)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// BenchmarkPage reads a 50-message history page (newest, and from the
// middle with Before) of a chat with 2,000 messages in two buckets.
func BenchmarkPage(b *testing.B) {
	s := benchStore(b, SequencingLease)
	ctx := context.Background()
	const chat, n = "g:history", 2000
	for from := uint64(1); from <= n; from += 100 {
		if err := storetest.Append(ctx, s, 1, storetest.Msgs(chat, from, from+99)); err != nil {
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
