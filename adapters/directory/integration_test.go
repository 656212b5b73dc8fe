package directory

import (
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Integration tests against a real Redis (PARLEY_REDIS_ADDR). Two
// Directory instances on one key prefix play two nodes of a fleet. Reads
// go through the client-side cache, so every cross-node expectation is
// polled with a deadline; none asserts a duration.

const settle = 5 * time.Second // deadline for anything that should be prompt

func TestLocateAcrossNodes(t *testing.T) {
	addr := redisAddr(t)
	cfg := testConfig(t, addr)
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()
	mustNil(t, "register a", a.Register(ctx, logicNode("logic-a")))
	mustNil(t, "register b", b.Register(ctx, logicNode("logic-b")))

	mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "conn-1", Session: 1}))
	mustNil(t, "attach", b.Attach(ctx, record.DeviceLocation{User: "alice", Device: "laptop", Logic: "logic-b", Conn: "conn-2", Session: 7}))
	mustNil(t, "attach", b.Attach(ctx, record.DeviceLocation{User: "bob", Device: "phone", Logic: "logic-b", Conn: "conn-1", Session: 3}))

	users := []string{"alice", "bob", "carol"}
	want := "alice/laptop@logic-b/conn-2#7 alice/phone@logic-a/conn-1#1 bob/phone@logic-b/conn-1#3"
	eventually(t, settle, "locate on a", locateIs(a, users, want))
	eventually(t, settle, "locate on b", locateIs(b, users, want))

	mustNil(t, "detach", a.Detach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "conn-1", Session: 1}))
	want = "alice/laptop@logic-b/conn-2#7 bob/phone@logic-b/conn-1#3"
	eventually(t, settle, "locate on b after detach", locateIs(b, users, want))
	eventually(t, settle, "locate on a after detach", locateIs(a, users, want))

	// Empty input is fine.
	m, err := a.Locate(ctx, nil)
	if err != nil || len(m) != 0 {
		t.Fatalf("Locate(nil) = %v, %v; want empty, nil", m, err)
	}
	if !a.Healthy() || !b.Healthy() {
		t.Fatalf("Healthy = %v, %v; want true, true", a.Healthy(), b.Healthy())
	}
}

func TestNewerSessionWins(t *testing.T) {
	addr := redisAddr(t)
	cfg := testConfig(t, addr)
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()
	mustNil(t, "register a", a.Register(ctx, logicNode("logic-a")))
	mustNil(t, "register b", b.Register(ctx, logicNode("logic-b")))

	old := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "conn-1", Session: 1}
	newer := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-b", Conn: "conn-2", Session: 1}
	mustNil(t, "attach old", a.Attach(ctx, old))
	mustNil(t, "attach newer", b.Attach(ctx, newer))

	// The old session's node notices its socket closed late: its Refresh
	// and its Detach must not touch the newer session.
	mustNil(t, "stale refresh", a.Refresh(ctx, []record.DeviceLocation{old}))
	mustNil(t, "stale detach", a.Detach(ctx, old))
	// Same logic node and session id, other conn: still another session.
	mustNil(t, "stale detach", a.Detach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-b", Conn: "conn-1", Session: 1}))
	want := "alice/phone@logic-b/conn-2#1"
	eventually(t, settle, "newer session kept", locateIs(a, []string{"alice"}, want))
	eventually(t, settle, "newer session kept", locateIs(b, []string{"alice"}, want))

	mustNil(t, "detach newer", b.Detach(ctx, newer))
	eventually(t, settle, "detached", locateIs(a, []string{"alice"}, ""))

	// With the field gone, a Refresh of a session its node still holds
	// re-creates it (how locations come back after Redis lost them).
	mustNil(t, "refresh", a.Refresh(ctx, []record.DeviceLocation{old}))
	eventually(t, settle, "refresh re-creates", locateIs(b, []string{"alice"}, "alice/phone@logic-a/conn-1#1"))
}

func TestDeadNodeLocations(t *testing.T) {
	addr := redisAddr(t)
	t.Run("deregistered", func(t *testing.T) {
		cfg := testConfig(t, addr)
		a, b := open(t, cfg), open(t, cfg)
		ctx := t.Context()
		n := logicNode("logic-a")
		mustNil(t, "register", a.Register(ctx, n))
		mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}))
		eventually(t, settle, "attached", locateIs(b, []string{"alice"}, "alice/phone@logic-a/c#1"))
		mustNil(t, "deregister", a.Deregister(ctx, n))
		eventually(t, settle, "dead node's location hidden", locateIs(b, []string{"alice"}, ""))
	})
	t.Run("node ttl passed", func(t *testing.T) {
		cfg := testConfig(t, addr)
		cfg.NodeTTL = 300 * time.Millisecond
		a, b := open(t, cfg), open(t, cfg)
		ctx := t.Context()
		mustNil(t, "register", a.Register(ctx, logicNode("logic-a"))) // and never again: the node died
		mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}))
		// Not asserted: that b sees it before the node TTL passes (timing).
		eventually(t, settle, "dead node's location hidden", locateIs(b, []string{"alice"}, ""))
		// The reader pruned the dead id from the member set.
		c := raw(t, addr)
		eventually(t, settle, "member pruned", func() error {
			ok, err := c.Do(ctx, c.B().Sismember().Key(b.nodesKey(record.NodeLogic)).Member("logic-a").Build()).AsBool()
			if err != nil || ok {
				return fmt.Errorf("SISMEMBER = %v, %v; want false", ok, err)
			}
			return nil
		})
	})
	t.Run("location ttl passed", func(t *testing.T) {
		cfg := testConfig(t, addr)
		cfg.LocationTTL = 300 * time.Millisecond
		a, b := open(t, cfg), open(t, cfg)
		ctx := t.Context()
		mustNil(t, "register", a.Register(ctx, logicNode("logic-a")))
		mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}))
		eventually(t, settle, "location expired", locateIs(b, []string{"alice"}, ""))
		c := raw(t, addr)
		eventually(t, settle, "key expired", func() error {
			n, err := c.Do(ctx, c.B().Exists().Key(b.locKey("alice")).Build()).AsInt64()
			if err != nil || n != 0 {
				return fmt.Errorf("EXISTS = %v, %v; want 0", n, err)
			}
			return nil
		})
	})
	t.Run("refresh moves the deadline", func(t *testing.T) {
		cfg := testConfig(t, addr)
		a := open(t, cfg)
		ctx := t.Context()
		c := raw(t, addr)
		loc := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}
		stored := func() locEntry {
			v, err := c.Do(ctx, c.B().Hget().Key(a.locKey("alice")).Field("phone").Build()).ToString()
			mustNil(t, "HGET", err)
			e, err := parseLocValue(v)
			mustNil(t, "parse", err)
			return e
		}
		mustNil(t, "attach", a.Attach(ctx, loc))
		before := stored()
		if got := before.Deadline - before.Written; got != cfg.LocationTTL.Milliseconds() {
			t.Fatalf("deadline - written = %dms, want the location TTL %v", got, cfg.LocationTTL)
		}
		// Shorten the key's TTL behind the directory's back: Refresh raises
		// it again and moves the field's deadline forward.
		mustNil(t, "PEXPIRE", c.Do(ctx, c.B().Pexpire().Key(a.locKey("alice")).Milliseconds(5000).Build()).Error())
		time.Sleep(5 * time.Millisecond) // the clock moves past the attach's millisecond
		mustNil(t, "refresh", a.Refresh(ctx, []record.DeviceLocation{loc}))
		after := stored()
		if after.Deadline <= before.Deadline || after.Written <= before.Written {
			t.Fatalf("after Refresh: %+v, want deadline and write time past %+v", after, before)
		}
		pttl, err := c.Do(ctx, c.B().Pttl().Key(a.locKey("alice")).Build()).AsInt64()
		mustNil(t, "PTTL", err)
		if pttl <= 5000 || pttl > cfg.LocationTTL.Milliseconds() {
			t.Fatalf("PTTL after Refresh = %dms, want in (5000, %d]", pttl, cfg.LocationTTL.Milliseconds())
		}
	})
	t.Run("restarted node id", func(t *testing.T) {
		cfg := testConfig(t, addr)
		a, b := open(t, cfg), open(t, cfg)
		ctx := t.Context()
		n := logicNode("logic-a")
		n.Started = time.Now().UnixMilli() - 1000
		mustNil(t, "register", a.Register(ctx, n))
		mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c", Session: 1}))
		eventually(t, settle, "attached", locateIs(b, []string{"alice"}, "alice/phone@logic-a/c#1"))
		// A new process takes the same id: its predecessor's sessions are gone.
		n.Started = time.Now().UnixMilli() + 1
		mustNil(t, "re-register", a.Register(ctx, n))
		eventually(t, settle, "old process's location hidden", locateIs(b, []string{"alice"}, ""))
	})
}

func TestPresence(t *testing.T) {
	addr := redisAddr(t)
	cfg := testConfig(t, addr)
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()
	mustNil(t, "register a", a.Register(ctx, logicNode("logic-a")))
	mustNil(t, "register b", b.Register(ctx, logicNode("logic-b")))
	phone := record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-a", Conn: "c1", Session: 1}
	laptop := record.DeviceLocation{User: "alice", Device: "laptop", Logic: "logic-b", Conn: "c2", Session: 2}
	t0 := time.UnixMilli(1_700_000_000_000)

	lookupIs := func(d *Directory, want ...record.Presence) func() error {
		return func() error {
			users := make([]string, len(want))
			for i, w := range want {
				users[i] = w.User
			}
			got, err := d.Lookup(context.Background(), users)
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("Lookup = %+v, want %+v", got, want)
			}
			return nil
		}
	}

	eventually(t, settle, "nobody seen", lookupIs(a, record.Presence{User: "alice"}, record.Presence{User: "bob"}))

	mustNil(t, "attach", a.Attach(ctx, phone))
	mustNil(t, "set online", a.SetOnline(ctx, "alice", t0))
	mustNil(t, "attach", b.Attach(ctx, laptop))
	mustNil(t, "set online", b.SetOnline(ctx, "alice", t0.Add(time.Second)))
	eventually(t, settle, "online", lookupIs(b, record.Presence{User: "alice", Online: true}, record.Presence{User: "bob"}))

	// The phone leaves; the laptop is still online on the other node, so
	// SetOffline records nothing.
	mustNil(t, "detach", a.Detach(ctx, phone))
	mustNil(t, "set offline", a.SetOffline(ctx, "alice", t0.Add(10*time.Second)))
	eventually(t, settle, "still online", lookupIs(a, record.Presence{User: "alice", Online: true}))

	mustNil(t, "detach", b.Detach(ctx, laptop))
	mustNil(t, "set offline", b.SetOffline(ctx, "alice", t0.Add(20*time.Second)))
	want := record.Presence{User: "alice", LastSeen: t0.Add(20 * time.Second).UnixMilli()}
	eventually(t, settle, "offline with last seen", lookupIs(a, want, record.Presence{User: "bob"}))

	// Last seen never moves back (a late SetOnline or SetOffline).
	mustNil(t, "late set offline", a.SetOffline(ctx, "alice", t0.Add(15*time.Second)))
	mustNil(t, "late set online", a.SetOnline(ctx, "alice", t0.Add(5*time.Second)))
	eventually(t, settle, "last seen kept", lookupIs(b, want))

	// A node that dies without SetOffline: the user reads offline, last
	// seen when they came online.
	mustNil(t, "register dead", a.Register(ctx, logicNode("logic-dead")))
	mustNil(t, "attach", a.Attach(ctx, record.DeviceLocation{User: "bob", Device: "phone", Logic: "logic-dead", Conn: "c1", Session: 9}))
	mustNil(t, "set online", a.SetOnline(ctx, "bob", t0.Add(30*time.Second)))
	eventually(t, settle, "bob online", lookupIs(b, record.Presence{User: "bob", Online: true}))
	mustNil(t, "deregister", a.Deregister(ctx, logicNode("logic-dead")))
	eventually(t, settle, "bob offline", lookupIs(b, record.Presence{User: "bob", LastSeen: t0.Add(30 * time.Second).UnixMilli()}))
}

func TestNodeRegistry(t *testing.T) {
	addr := redisAddr(t)
	cfg := testConfig(t, addr)
	cfg.NodeTTL = 300 * time.Millisecond
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()

	c1 := record.Node{Kind: record.NodeConnsrv, ID: "conn-1", Addr: "127.0.0.1:9001", Started: 1}
	c2 := record.Node{Kind: record.NodeConnsrv, ID: "conn-2", Addr: "127.0.0.1:9002", Started: 2}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); b.Heartbeat(hctx, c2, 0) }() // conn-2 stays alive
	mustNil(t, "register", a.Register(ctx, c1))                 // conn-1 registers once: it dies

	nodesAre := func(d *Directory, kind string, want ...record.Node) func() error {
		return func() error {
			got, err := d.Nodes(context.Background(), kind)
			if err != nil {
				return err
			}
			if len(got) == 0 && len(want) == 0 {
				return nil
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("Nodes(%s) = %+v, want %+v", kind, got, want)
			}
			return nil
		}
	}
	// Both may be seen for a moment (not asserted: timing); then conn-1's
	// TTL passes and only the heartbeating node remains, on both nodes.
	eventually(t, settle, "dead node expired", nodesAre(a, record.NodeConnsrv, c2))
	eventually(t, settle, "dead node expired", nodesAre(b, record.NodeConnsrv, c2))
	eventually(t, settle, "other kinds empty", nodesAre(a, record.NodeLogic))

	// A node joins: seen promptly through the cached listing.
	mustNil(t, "register", a.Register(ctx, c1))
	eventually(t, settle, "joined", func() error {
		got, err := b.Nodes(ctx, record.NodeConnsrv)
		if err != nil {
			return err
		}
		if len(got) < 1 || got[len(got)-1] != c2 {
			return fmt.Errorf("Nodes = %+v, want conn-2 last", got)
		}
		for _, n := range got {
			if n == c1 {
				return nil
			}
		}
		return fmt.Errorf("Nodes = %+v, want conn-1 among them", got)
	})

	// Heartbeat deregisters when its context ends.
	stop()
	<-done
	eventually(t, settle, "heartbeat deregistered", func() error {
		got, err := a.Nodes(ctx, record.NodeConnsrv)
		if err != nil {
			return err
		}
		for _, n := range got {
			if n.ID == "conn-2" {
				return fmt.Errorf("Nodes = %+v, want no conn-2", got)
			}
		}
		return nil
	})
}

// TestCacheInvalidation: reads on node A are served from its client-side
// cache, and node B's writes invalidate them. The cache TTL (30s) is far
// beyond the poll deadline, so a lost invalidation fails the test.
func TestCacheInvalidation(t *testing.T) {
	addr := redisAddr(t)
	cfg := testConfig(t, addr)
	cfg.CacheTTL = time.Minute
	a, b := open(t, cfg), open(t, cfg)
	ctx := t.Context()
	mustNil(t, "register b", b.Register(ctx, logicNode("logic-b")))

	users := []string{"alice", "bob"}
	if err := locateIs(a, users, "")(); err != nil { // caches alice and bob as absent on A
		t.Fatal(err)
	}
	// Served from A's cache: Redis runs (almost) no HGETALL for them. Other
	// clients of the same Redis could add some; a few are tolerated.
	before := commandCalls(t, addr, "hgetall")
	for range 20 {
		if err := locateIs(a, users, "")(); err != nil {
			t.Fatal(err)
		}
	}
	if n := commandCalls(t, addr, "hgetall") - before; n > 5 {
		t.Fatalf("20 cached Locates of 2 users ran %d HGETALL on Redis, want (almost) none", n)
	}
	mustNil(t, "attach on b", b.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-b", Conn: "c", Session: 1}))
	eventually(t, settle, "a sees b's attach", locateIs(a, users, "alice/phone@logic-b/c#1"))

	mustNil(t, "attach on b", b.Attach(ctx, record.DeviceLocation{User: "alice", Device: "phone", Logic: "logic-b", Conn: "c", Session: 2}))
	eventually(t, settle, "a sees b's re-attach", locateIs(a, users, "alice/phone@logic-b/c#2"))

	// The node registry: A has cached logic nodes {logic-b}; a new node's
	// locations appear once it registers.
	mustNil(t, "attach before register", b.Attach(ctx, record.DeviceLocation{User: "bob", Device: "tab", Logic: "logic-c", Conn: "c", Session: 3}))
	eventually(t, settle, "unregistered node hidden", locateIs(a, users, "alice/phone@logic-b/c#2"))
	mustNil(t, "register c", b.Register(ctx, logicNode("logic-c")))
	// logic-c's Started is after the attach: register an older start.
	n := logicNode("logic-c")
	n.Started -= 60_000
	mustNil(t, "register c", b.Register(ctx, n))
	eventually(t, settle, "a sees logic-c", locateIs(a, users, "alice/phone@logic-b/c#2 bob/tab@logic-c/c#3"))
}

// commandCalls returns how many times Redis ran cmd (INFO commandstats).
func commandCalls(t *testing.T, addr, cmd string) int {
	t.Helper()
	c := raw(t, addr)
	info, err := c.Do(t.Context(), c.B().Info().Section("commandstats").Build()).ToString()
	mustNil(t, "INFO commandstats", err)
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		mustNil(t, "parse commandstats", err)
		return n
	}
	return 0
}
