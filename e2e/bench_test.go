package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/parley-chat/parley/bench"
)

// benchPorts finds a base port p with p, p+1, p+2 and p+10.. p+10+n-1 free:
// `parley bench -spawn n -port p` uses them.
func benchPorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		if p+10+n > 32000 {
			continue
		}
		ok := true
		for _, q := range append([]int{p + 1, p + 2}, seq(p+10, n)...) {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("cannot find free ports for bench")
	return 0
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

// TestBenchSpawn runs the density harness the way docs/tuning.md does, on
// a small scale: `parley bench -spawn 2` starts a logic node and two
// connsrv processes sharing one port (SO_REUSEPORT), opens the connections
// from three client processes, holds them, and reports per process.
func TestBenchSpawn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and client processes")
	}
	exe := parleyBinary(t)
	port := benchPorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "bench", "-config", "../configs/standalone.yaml",
		"-spawn", "2", "-conns", "400", "-per-proc", "150", "-hold", "2s", "-dial-timeout", "30s",
		"-connsrv-nice", "7", "-port", fmt.Sprint(port), "-q", "-json")
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var res struct {
		Established int            `json:"established"`
		Held        int            `json:"held"`
		ClientProcs int            `json:"client_procs"`
		Errors      map[string]int `json:"errors"`
		Servers     []struct {
			Role  string `json:"role"`
			Nice  int    `json:"nice"`
			After struct {
				Anon  float64 `json:"rss_anon_bytes"`
				Conns float64 `json:"conns"`
			} `json:"after"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("bench output: %v\n%s", err, stdout.String())
	}
	if res.Established != 400 || res.Held != 400 || res.ClientProcs != 3 || len(res.Errors) != 0 {
		t.Fatalf("established %d held %d in %d client processes, errors %v; want 400, 400, 3, none\n%s",
			res.Established, res.Held, res.ClientProcs, res.Errors, stderr.String())
	}
	if len(res.Servers) != 3 {
		t.Fatalf("got %d servers, want logic and 2 connsrv", len(res.Servers))
	}
	// nice adds to the caller's value (the test may itself run niced),
	// up to 19.
	own, err := bench.ReadNice(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	conns := 0.0
	for _, s := range res.Servers {
		wantNice := own
		if s.Role == "connsrv" {
			wantNice = min(own+7, 19)
			conns += s.After.Conns
		}
		if s.Nice != wantNice {
			t.Errorf("%s ran at nice %d, want %d", s.Role, s.Nice, wantNice)
		}
		if s.After.Anon <= 0 {
			t.Errorf("%s: no memory readings: %+v", s.Role, s.After)
		}
	}
	if conns != 400 {
		t.Errorf("the connsrv processes report %v open connections, want 400", conns)
	}
}
