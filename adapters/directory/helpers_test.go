package directory

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/redis/rueidis"
)

// redisAddr returns PARLEY_REDIS_ADDR or skips: integration tests run
// against the Redis that scripts/redis.sh starts.
func redisAddr(tb testing.TB) string {
	tb.Helper()
	a := os.Getenv("PARLEY_REDIS_ADDR")
	if a == "" {
		tb.Skip("PARLEY_REDIS_ADDR not set (bash scripts/redis.sh start && export $(bash scripts/redis.sh env))")
	}
	return a
}

var prefixSeq atomic.Int64

// testConfig returns a config for addr with a key prefix of its own, so
// tests (and repeated runs) never see each other's keys.
func testConfig(tb testing.TB, addr string) Config {
	c := Default()
	c.Addrs = []string{addr}
	name := strings.NewReplacer("/", ".", "{", "(", "}", ")").Replace(tb.Name())
	c.KeyPrefix = fmt.Sprintf("parleytest:%s:%d.%d:", name, time.Now().UnixNano(), prefixSeq.Add(1))
	c.LastSeenTTL = 10 * time.Minute
	return c
}

// open opens a Directory closed at the end of the test, logging to the
// test log. It deletes the config's keys at the end.
func open(tb testing.TB, cfg Config) *Directory {
	tb.Helper()
	d, err := Open(tb.Context(), cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(d.Close)
	tb.Cleanup(func() { deleteKeys(tb, cfg) })
	return d
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// deleteKeys removes every key under cfg.KeyPrefix (best effort).
func deleteKeys(tb testing.TB, cfg Config) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cfg.Addrs, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(cfg.KeyPrefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Logf("cannot clean up keys %s*: %v", cfg.KeyPrefix, err)
			return
		}
		for _, k := range e.Elements {
			c.Do(ctx, c.B().Del().Key(k).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// raw returns a plain client to inspect keys directly.
func raw(tb testing.TB, addr string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		tb.Fatalf("raw client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// eventually polls f every 20ms until it returns nil or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logicNode(id string) record.Node {
	return record.Node{Kind: record.NodeLogic, ID: id, Addr: "127.0.0.1:7070", Started: time.Now().UnixMilli()}
}

func mustNil(tb testing.TB, what string, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}

// locsString prints a Locate result as
// "user/device@logic/conn#session" entries, by user then device.
func locsString(m map[string][]record.DeviceLocation) string {
	var users []string
	for u := range m {
		users = append(users, u)
	}
	slices.Sort(users)
	var b strings.Builder
	for _, u := range users {
		for _, l := range m[u] {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s/%s@%s/%s#%d", l.User, l.Device, l.Logic, l.Conn, l.Session)
		}
	}
	return b.String()
}

// locateIs returns a poll function that succeeds when d.Locate(users)
// prints as want.
func locateIs(d *Directory, users []string, want string) func() error {
	return func() error {
		m, err := d.Locate(context.Background(), users)
		if err != nil {
			return err
		}
		if got := locsString(m); got != want {
			return fmt.Errorf("Locate = %q, want %q", got, want)
		}
		return nil
	}
}
