package directory

import (
	"fmt"
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

// BenchmarkLocate: Locate of 100 users (one or two devices each, the
// recipients of a large group message) with the client-side cache warm
// (the steady state: entries change only when a user's devices come, go or
// refresh) and with caching off (every call reads Redis).
func BenchmarkLocate(b *testing.B) {
	addr := redisAddr(b)
	for _, tc := range []struct {
		name  string
		cache bool
	}{{"cache=on", true}, {"cache=off", false}} {
		b.Run("users=100/"+tc.name, func(b *testing.B) {
			cfg := testConfig(b, addr)
			if !tc.cache {
				cfg.CacheTTL = 0
			}
			d := open(b, cfg)
			ctx := b.Context()
			if err := d.Register(ctx, logicNode("logic-a")); err != nil {
				b.Fatal(err)
			}
			users := make([]string, 100)
			var locs []record.DeviceLocation
			for i := range users {
				users[i] = fmt.Sprintf("user-%03d", i)
				for dev := range 1 + i%2 {
					locs = append(locs, record.DeviceLocation{User: users[i], Device: fmt.Sprintf("dev-%d", dev), Logic: "logic-a", Conn: "conn-1", Session: uint64(i*2 + dev)})
				}
			}
			if err := d.Refresh(ctx, locs); err != nil {
				b.Fatal(err)
			}
			m, err := d.Locate(ctx, users)
			if err != nil || len(m) != len(users) {
				b.Fatalf("Locate: %d users, %v; want %d", len(m), err, len(users))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Locate(ctx, users); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
