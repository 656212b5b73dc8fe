package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"Name:\tparley\nVmPeak:\t  100 kB\nVmRSS:\t   33792 kB\nThreads: 5\n", 33792 * 1024, false},
		{"VmRSS: 1 kB", 1024, false},
		{"Name: x\n", 0, true},
		{"VmRSS: 12 MB\n", 0, true},
		{"VmRSS: x kB\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseVmRSS(strings.NewReader(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseVmRSS(%q): got %d, %v, want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseSockstat(t *testing.T) {
	in := "sockets: used 1234\nTCP: inuse 20012 orphan 3 tw 17 alloc 20020 mem 41\nUDP: inuse 2 mem 1\n"
	got, err := ParseSockstat(strings.NewReader(in))
	want := Sockstat{InUse: 20012, Orphan: 3, TimeWait: 17, Alloc: 20020, MemPages: 41}
	if err != nil || got != want {
		t.Errorf("got %+v, %v, want %+v", got, err, want)
	}
	if got.MemBytes() != 41*4096 {
		t.Errorf("MemBytes: got %d, want %d", got.MemBytes(), 41*4096)
	}
	for _, bad := range []string{"UDP: inuse 1\n", "TCP: inuse\n", "TCP: inuse x\n"} {
		if _, err := ParseSockstat(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseSockstat(%q): got nil error, want one", bad)
		}
	}
	if _, err := ReadSockstat(); err != nil {
		t.Errorf("ReadSockstat: %v", err)
	}
}

func TestParseMetrics(t *testing.T) {
	in := "# HELP x\ngo_memstats_heap_inuse_bytes 1.5e+06\nparley_drops_total{reason=\"slow consumer\"} 3\nbroken\nnan_metric NaN\n"
	m := ParseMetrics(strings.NewReader(in))
	if m["go_memstats_heap_inuse_bytes"] != 1.5e6 || m[`parley_drops_total{reason="slow consumer"}`] != 3 {
		t.Errorf("got %v", m)
	}
	if _, ok := m["broken"]; ok {
		t.Errorf("got a value for a malformed line")
	}
}

func TestRaiseNofile(t *testing.T) {
	lim, err := RaiseNofile(10)
	if err != nil || lim < 10+fdReserve {
		t.Fatalf("got %d, %v, want a limit and no error", lim, err)
	}
	_, err = RaiseNofile(1 << 30)
	if err == nil || !strings.Contains(err.Error(), "cannot hold") || !strings.Contains(err.Error(), "client processes") {
		t.Errorf("got %v, want an error that names the limit", err)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{Conns: 0, Hold: -1, SourceIPs: "1.2.3.4-1.2.3.1", SourceNet: 300, PerProc: -1}.Validate()
	for _, want := range []string{"url", "conns", "hold", "dial_concurrency", "dial_timeout", "source_ips", "source_net", "per_proc"} {
		if err == nil || !strings.Contains(err.Error(), "bench."+want) {
			t.Errorf("got %v, want it to mention bench.%s", err, want)
		}
	}
}

// idleServer upgrades, says hello, pings once and then reads until EOF.
// It answers sync with ok, one msg (seq 1 of chat "c") and synced, and
// counts syncs and acks of that msg.
func idleServer(t *testing.T) (url string, syncs, acks *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	syncs, acks = new(atomic.Int64), new(atomic.Int64)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				if _, err := ws.Upgrade(nc); err != nil {
					return
				}
				_ = wsutil.WriteServerText(nc, []byte(`{"type":"hello"}`))
				_ = wsutil.WriteServerMessage(nc, ws.OpPing, []byte("p"))
				for {
					b, _, err := wsutil.ReadClientData(nc)
					if err != nil {
						return
					}
					switch string(b) {
					case `{"type":"sync","id":"b"}`:
						syncs.Add(1)
						_ = wsutil.WriteServerText(nc, []byte(`{"type":"ok","id":"b"}`))
						_ = wsutil.WriteServerText(nc, []byte(`{"type":"msg","chat":"c","seq":1,"from":"x","kind":"text","body":"hi"}`))
						_ = wsutil.WriteServerText(nc, []byte(`{"type":"synced","id":"b"}`))
					case `{"type":"ack","chat":"c","seq":1}`:
						acks.Add(1)
					}
				}
			}()
		}
	}()
	return "ws://" + ln.Addr().String() + "/ws", syncs, acks
}

func TestRun(t *testing.T) {
	// A server that exports go_gc_heap_live_bytes, and an older one that
	// does not (the bench estimates the live heap from the GC goal).
	var withLive atomic.Bool
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("go_memstats_heap_inuse_bytes 1000\ngo_memstats_next_gc_bytes 4000\ngo_goroutines 7\n"))
		if withLive.Load() {
			_, _ = w.Write([]byte("go_gc_heap_live_bytes 1500\n"))
		}
	}))
	defer metrics.Close()
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			withLive.Store(sync)
			wantLive := 2000.0
			if sync {
				wantLive = 1500
			}
			url, syncs, acks := idleServer(t)
			cfg := Default()
			cfg.URL = url
			cfg.Sync = sync
			cfg.Conns = 50
			cfg.Hold = 200 * time.Millisecond
			cfg.Servers = []Server{{Name: "test", Role: "standalone", PID: os.Getpid(), MetricsURL: metrics.URL}}
			cfg.SourceIPs = "127.0.0.2-127.0.0.4"
			res, err := Run(context.Background(), cfg, func(u, _ string) (string, error) { return u, nil }, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Established != 50 || res.Held != 50 || len(res.ErrorsByKind) != 0 {
				t.Errorf("got established %d held %d errors %v, want 50, 50, none", res.Established, res.Held, res.ErrorsByKind)
			}
			want := int64(0)
			if sync {
				want = 50
			}
			if syncs.Load() != want || acks.Load() != want {
				t.Errorf("got %d syncs and %d acks, want %d each", syncs.Load(), acks.Load(), want)
			}
			checkResult(t, res, wantLive)
		})
	}
}

func checkResult(t *testing.T, res *Result, wantLive float64) {
	t.Helper()
	if len(res.Servers) != 1 {
		t.Fatalf("got %d servers, want 1", len(res.Servers))
	}
	if a := res.Servers[0].After; a.RSS == 0 || a.HeapIn != 1000 || a.HeapLive != wantLive || a.Gorout != 7 {
		t.Errorf("got after snapshot %+v, want RSS and the scraped metrics", a)
	}
	if res.After.Slab == 0 || res.After.MemAvail == 0 {
		t.Errorf("got host snapshot %+v, want slab and MemAvailable", res.After)
	}
	var b strings.Builder
	if err := res.WriteMarkdown(&b); err != nil || !strings.Contains(b.String(), "| established / target | 50 / 50 |") {
		t.Errorf("WriteMarkdown: got %q, %v", b.String(), err)
	}
}

func TestRunRefused(t *testing.T) {
	cfg := Default()
	cfg.URL = "ws://127.0.0.1:1/ws"
	cfg.Conns = 3
	cfg.Hold = 0
	res, err := Run(context.Background(), cfg, func(u, _ string) (string, error) { return u, nil }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Established != 0 || res.ErrorsByKind["dial:refused"] != 3 {
		t.Errorf("got established %d errors %v, want 0 and 3 dial:refused", res.Established, res.ErrorsByKind)
	}
}
