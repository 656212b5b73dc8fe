package loadtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

// devSecret is the example secret of configs/standalone.yaml.
const devSecret = "change-me-parley-dev-secret-0123456789"

// freeAddr returns a loopback address free now, for the child to listen
// on. It picks below the ephemeral range: a port handed out for :0 can be
// reused as some connection's source port before the child binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	start := rand.IntN(12000)
	for i := range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+(start+i*7)%12000)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatal("cannot find a free port in 20000-31999")
	return ""
}

// TestStandalone runs tiny pairs and population load tests against a real
// standalone process (built from ./cmd/parley) and expects every message
// delivered, also to users who were offline when it was sent.
func TestStandalone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the parley binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "parley")
	build := exec.Command("go", "build", "-o", bin, "./cmd/parley")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cannot build parley: %v\n%s", err, out)
	}
	ws, wsHTTP, link, api := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	srv := exec.Command(bin, "standalone", "-config", "../configs/standalone.yaml",
		"-set", "connsrv.listen=tcp://"+ws, "-set", "connsrv.http_listen="+wsHTTP,
		"-set", "logic.link_listen="+link, "-set", "logic.http_listen="+api, "-set", "logic.admin_listen=",
		"-set", "store.pebble.dir="+filepath.Join(dir, "data"), "-set", "log.level=warn",
		"-set", "logic.send_rate=0", // one chat gets 1000 messages at once
		// A small window and a short retransmit timeout: a generator that
		// does not ack stalls after 64 messages per chat and sees resends.
		"-set", "logic.delivery_window=64", "-set", "logic.retransmit_timeout=1s")
	var logs strings.Builder
	srv.Stdout, srv.Stderr = &logs, &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + wsHTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("standalone not ready after 10s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tok := func(user, device string) (string, error) {
		return auth.Issue(auth.Config{Secret: devSecret}, user, device, time.Hour, time.Now())
	}
	tests := []struct {
		name  string
		pairs int
		rate  float64
		sent  int64 // whole run, warmup 0.5 s + 2 s
	}{
		{"5 pairs", 5, 50, 125},
		{"one chat past the window", 1, 400, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.URL = "ws://" + ws + "/ws"
			cfg.Pairs = tt.pairs
			cfg.Rate = tt.rate
			cfg.Warmup = 500 * time.Millisecond
			cfg.Duration = 2 * time.Second
			cfg.Grace = 2 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := Run(ctx, cfg, tok, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Lost != 0 || res.Unacked != 0 || res.Duplicates != 0 || res.OutOfOrder != 0 || res.Retransmits != 0 || len(res.ErrorsByKind) != 0 {
				t.Errorf("got lost %d unacked %d dups %d ooo %d retransmits %d errors %v, want none",
					res.Lost, res.Unacked, res.Duplicates, res.OutOfOrder, res.Retransmits, res.ErrorsByKind)
			}
			if want := tt.sent * 4 / 5; res.Sent != tt.sent || res.Delivered != res.Sent || int64(res.Deliver.Count) != want {
				t.Errorf("got sent %d delivered %d measured %d, want %d, %d, %d", res.Sent, res.Delivered, res.Deliver.Count, tt.sent, tt.sent, want)
			}
		})
	}
	t.Run("population with churn and a storm", func(t *testing.T) {
		cfg := Default()
		cfg.URL = "ws://" + ws + "/ws"
		cfg.Mode = ModePopulation
		cfg.Users = 80
		cfg.Rate = 150
		cfg.Contacts = 3
		cfg.BurstGap = 200 * time.Millisecond
		cfg.ReplyDelay = 300 * time.Millisecond
		// A third of the users offline at any time, for about a second:
		// many messages reach users who are away and come back.
		cfg.OfflineShare = 0.3
		cfg.OfflineMean = time.Second
		cfg.StormAt = 1500 * time.Millisecond
		cfg.StormFraction = 0.5
		cfg.StormJitter = 500 * time.Millisecond
		cfg.Warmup = 500 * time.Millisecond
		cfg.Duration = 3 * time.Second
		cfg.Grace = 5 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := Run(ctx, cfg, tok, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Lost != 0 || res.Unacked != 0 || res.Duplicates != 0 || res.OutOfOrder != 0 || len(res.ErrorsByKind) != 0 {
			t.Errorf("got lost %d unacked %d dups %d ooo %d errors %v, want none",
				res.Lost, res.Unacked, res.Duplicates, res.OutOfOrder, res.ErrorsByKind)
		}
		if res.Sent == 0 || res.Acked != res.Sent {
			t.Errorf("got sent %d acked %d, want every send acked", res.Sent, res.Acked)
		}
		if res.OfflineDelivered == 0 || res.Reconnects == 0 || res.StormDrops == 0 {
			t.Errorf("got offline deliveries %d reconnects %d storm drops %d, want some of each",
				res.OfflineDelivered, res.Reconnects, res.StormDrops)
		}
		if res.Population == nil || res.Population.Groups == 0 || len(res.Intervals) == 0 {
			t.Errorf("got population %+v and %d intervals, want groups and intervals", res.Population, len(res.Intervals))
		}
		t.Logf("sent %d delivered %d (offline %d) skipped %d resent %d reconnects %d storm %d",
			res.Sent, res.Delivered, res.OfflineDelivered, res.Skipped, res.Resent, res.Reconnects, res.StormDrops)
	})
}
