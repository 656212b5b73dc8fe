package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/ring"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/logic/lease"
)

// startPair starts two logic nodes sharing one store, the second dialing
// the first, and waits until both see a ring of two.
func startPair(t *testing.T, st Store) (*Service, *Service) {
	t.Helper()
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true })
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()} })
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	return a, b
}

func waitRing(t *testing.T, s *Service, n int) {
	t.Helper()
	waitRingIn(t, s, n, 10*time.Second)
}

// waitRingIn is waitRing with a bound of d.
func waitRingIn(t *testing.T, s *Service, n int, d time.Duration) {
	t.Helper()
	eventually(t, d, func() (bool, string) {
		s.cluster.mu.RLock()
		got := len(s.cluster.members)
		s.cluster.mu.RUnlock()
		return got == n, fmt.Sprintf("node %s: ring has %d members, want %d", s.cfg.NodeID, got, n)
	})
}

// usersHomedAt returns n user ids whose home is node among {n1, n2}.
func usersHomedAt(node string, n int, prefix string) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		u := fmt.Sprintf("%s%d", prefix, i)
		if ring.Owner(u, []string{"n1", "n2"}) == node {
			out = append(out, u)
		}
	}
	return out
}

// TestClusterDirectChatAcrossNodes: alice's home is n1, bob's is n2; they
// chat both ways, with receipts, whichever node sequences their chat.
func TestClusterDirectChatAcrossNodes(t *testing.T) {
	st := newMemStore()
	a, b := startPair(t, st)
	na, nb := dialNode(t, a.LinkAddr()), dialNode(t, b.LinkAddr())
	forwards, fanouts, badFrames := peerForwards.Get(), peerFanouts.Get(), linkProtocolError.Get()
	for k, pair := range [][2]string{{usersHomedAt("n1", 1, "a")[0], usersHomedAt("n2", 1, "b")[0]}, {usersHomedAt("n1", 2, "c")[1], usersHomedAt("n2", 2, "d")[1]}} {
		alice, bob := pair[0], pair[1]
		sa, sb := uint64(10*k+1), uint64(10*k+2)
		na.open(sa, alice, "phone")
		nb.open(sb, bob, "laptop")
		chat := record.DirectChatID(alice, bob)
		for i := 1; i <= 20; i++ {
			na.send(sa, fmt.Sprintf(`{"type":"send","id":"a%d","to":"%s","body":"m%d"}`, i, bob, i))
			if s := na.nextType(sa, "sent"); s["seq"] != float64(2*i-1) || s["chat"] != chat {
				t.Fatalf("alice's send %d: got %v, want seq %d", i, s, 2*i-1)
			}
			if m := nb.nextType(sb, "msg"); m["seq"] != float64(2*i-1) || m["body"] != fmt.Sprintf("m%d", i) {
				t.Fatalf("bob got %v, want m%d", m, i)
			}
			nb.send(sb, fmt.Sprintf(`{"type":"send","id":"b%d","chat":"%s","body":"r%d"}`, i, chat, i))
			if s := nb.nextType(sb, "sent"); s["seq"] != float64(2*i) {
				t.Fatalf("bob's send %d: got %v, want seq %d", i, s, 2*i)
			}
			if m := na.nextType(sa, "msg"); m["seq"] != float64(2*i) || m["body"] != fmt.Sprintf("r%d", i) || m["from"] != bob {
				t.Fatalf("alice got %v, want seq %d, r%d from %s", m, 2*i, i, bob)
			}
		}
		nb.send(sb, fmt.Sprintf(`{"type":"ack","chat":"%s","seq":39}`, chat))
		if r := na.nextType(sa, "receipt"); r["user"] != bob || r["seq"] != float64(39) {
			t.Fatalf("alice got %v, want bob's receipt for 39", r)
		}
		na.close(sa)
		nb.close(sb)
	}
	if peerForwards.Get() == forwards || peerFanouts.Get() == fanouts {
		t.Fatalf("no request crossed nodes: forwards %d, fan-outs %d", peerForwards.Get()-forwards, peerFanouts.Get()-fanouts)
	}
	// A frame the receiving node cannot parse closes the peer link, and
	// catch-up from the store would still deliver: count them.
	if n := linkProtocolError.Get() - badFrames; n != 0 {
		t.Fatalf("%d frames refused on the links", n)
	}
}

// TestClusterGroupAcrossNodes: a 5-member group spread over both nodes;
// every member gets every message once and in order.
func TestClusterGroupAcrossNodes(t *testing.T) {
	st := newMemStore()
	a, b := startPair(t, st)
	na, nb := dialNode(t, a.LinkAddr()), dialNode(t, b.LinkAddr())
	members := append(usersHomedAt("n1", 3, "g"), usersHomedAt("n2", 2, "g")...)
	type dev struct {
		n *fakeNode
		s uint64
	}
	devs := map[string]dev{}
	for i, u := range members {
		n := na
		if i >= 3 {
			n = nb
		}
		devs[u] = dev{n, uint64(10 + i)}
		n.open(uint64(10+i), u, "d")
	}
	creator := devs[members[0]]
	others := fmt.Sprintf(`["%s","%s","%s","%s"]`, members[1], members[2], members[3], members[4])
	creator.n.send(creator.s, `{"type":"group_create","id":"g1","name":"five","members":`+others+`}`)
	// The ok comes from the owner node and the "created" message on the
	// fan-out path: either may arrive first.
	var early []uint64
	var chat string
	for chat == "" {
		switch m := creator.n.next(creator.s); m["type"] {
		case "ok":
			chat = m["chat"].(string)
		case "msg":
			early = append(early, uint64(m["seq"].(float64)))
		}
	}
	const perSender = 10
	for i := range perSender {
		for _, u := range members {
			d := devs[u]
			d.n.send(d.s, fmt.Sprintf(`{"type":"send","id":"%s-%d","chat":"%s","body":"%s %d"}`, u, i, chat, u, i))
		}
	}
	total := perSender*len(members) + 1 // plus the "created" system message
	for _, u := range members {
		d := devs[u]
		var seqs []uint64
		if u == members[0] {
			seqs = early
		}
		sent := 0
		for len(seqs) < total-perSender || sent < perSender {
			m := d.n.next(d.s)
			switch m["type"] {
			case "msg":
				seqs = append(seqs, uint64(m["seq"].(float64)))
			case "sent":
				sent++
			case "ok", "presence", "receipt":
			default:
				t.Fatalf("%s got %v", u, m)
			}
		}
		if !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != len(seqs) {
			t.Fatalf("%s got seqs %v, want ascending and unique", u, seqs)
		}
	}
}

// TestClusterOwnerLeaves: when n2 stops, n1 sequences every chat and the
// seqs continue from the store.
func TestClusterOwnerLeaves(t *testing.T) {
	st := newMemStore()
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true })
	bStop := make(chan struct{})
	b := startServiceStoppable(t, st, bStop, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()} })
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	na := dialNode(t, a.LinkAddr())
	alice := usersHomedAt("n1", 1, "x")[0]
	na.open(1, alice, "d")
	// Chats to users whose DM is owned by n2.
	var peers []string
	for i := 0; len(peers) < 3; i++ {
		u := fmt.Sprintf("y%d", i)
		if ring.Owner(record.DirectChatID(alice, u), []string{"n1", "n2"}) == "n2" {
			peers = append(peers, u)
		}
	}
	for i, u := range peers {
		na.send(1, fmt.Sprintf(`{"type":"send","id":"p%d","to":"%s","body":"before"}`, i, u))
		if s := na.nextType(1, "sent"); s["seq"] != float64(1) {
			t.Fatalf("got %v, want seq 1", s)
		}
	}
	close(bStop)
	waitRing(t, a, 1)
	for i, u := range peers {
		na.send(1, fmt.Sprintf(`{"type":"send","id":"q%d","to":"%s","body":"after"}`, i, u))
		if s := na.nextType(1, "sent"); s["seq"] != float64(2) {
			t.Fatalf("got %v, want seq 2", s)
		}
	}
}

// startServiceStoppable is startService for a node the test stops by
// closing stop.
func startServiceStoppable(t *testing.T, st Store, stop <-chan struct{}, tune ...func(*Config)) *Service {
	t.Helper()
	cfg := Default()
	cfg.LinkListen, cfg.HTTPListen, cfg.Shards = "127.0.0.1:0", "", 8
	cfg.LinkSecret = string(testLinkSecret)
	cfg.AdminListen = ""
	cfg.SendRate = 0
	for _, f := range tune {
		f(&cfg)
	}
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, st, nil, v, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if ls, ok := st.(LeaseStore); ok {
		svc.SetLeases(ls)
	}
	if err := svc.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	<-svc.Ready()
	go func() {
		<-stop
		cancel()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return svc
}

// TestClusterForwardedAckIsOneWay: an ack forwarded to the chat's owner
// gets no answer when it succeeds, and must not time out into an error.
func TestClusterForwardedAckIsOneWay(t *testing.T) {
	st := newMemStore()
	short := func(c *Config) { c.Cluster.ForwardTimeout = 200 * time.Millisecond }
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true }, short)
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()} }, short)
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	na := dialNode(t, a.LinkAddr())
	alice := usersHomedAt("n1", 1, "oa")[0]
	var bob string
	for i := 0; bob == ""; i++ {
		u := fmt.Sprintf("ob%d", i)
		if ring.Owner(u, []string{"n1", "n2"}) == "n1" && ring.Owner(record.DirectChatID(alice, u), []string{"n1", "n2"}) == "n2" {
			bob = u
		}
	}
	na.open(1, alice, "d")
	na.open(2, bob, "d")
	na.send(1, `{"type":"send","id":"x","to":"`+bob+`","body":"hi"}`)
	na.nextType(1, "sent")
	na.nextType(2, "msg")
	na.send(2, `{"type":"ack","chat":"`+record.DirectChatID(alice, bob)+`","seq":1}`)
	na.nextType(1, "receipt")
	time.Sleep(600 * time.Millisecond) // three forward timeouts
	select {
	case m := <-na.ch(2):
		if m["type"] == "error" {
			t.Fatalf("bob got %v after a successful ack", m)
		}
	default:
	}
}

// TestMaxSessionsPerUser: the session over the per-user limit closes the
// user's oldest one with 4004; other users are unaffected.
func TestMaxSessionsPerUser(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) { c.MaxSessionsPerUser = 3 })
	n := dialNode(t, svc.LinkAddr())
	for i := uint64(1); i <= 3; i++ {
		n.open(i, "max", fmt.Sprintf("d%d", i))
	}
	n.open(10, "other", "d")
	n.open(4, "max", "d4")
	eventually(t, 5*time.Second, func() (bool, string) {
		n.mu.Lock()
		code, kicked := n.kick[1]
		others := len(n.kick)
		n.mu.Unlock()
		if kicked && (code != 4004 || others != 1) {
			t.Fatalf("got kick %d and %d kicked sessions, want 4004 for session 1 only", code, others)
		}
		return kicked, "the oldest session was not closed"
	})
}

// TestClusterLostFanoutIsCaughtUp: a fan-out lost with a peer link that
// dropped (here: closed by hand) reaches the recipient once the ring is
// whole again, without waiting for the chat's next message.
func TestClusterLostFanoutIsCaughtUp(t *testing.T) {
	st := newMemStore()
	a, b := startPair(t, st)
	na, nb := dialNode(t, a.LinkAddr()), dialNode(t, b.LinkAddr())
	alice := usersHomedAt("n1", 1, "pa")[0]
	var bob string
	for i := 0; bob == ""; i++ {
		u := fmt.Sprintf("pb%d", i)
		if ring.Owner(u, []string{"n1", "n2"}) == "n2" && ring.Owner(record.DirectChatID(alice, u), []string{"n1", "n2"}) == "n1" {
			bob = u
		}
	}
	na.open(1, alice, "d")
	nb.open(2, bob, "d")
	na.send(1, `{"type":"send","id":"w","to":"`+bob+`","body":"warm"}`)
	na.nextType(1, "sent")
	nb.nextType(2, "msg")

	a.cluster.peer("n2").l.close() // n1 -> n2 drops (any cause)
	waitRing(t, a, 1)
	na.send(1, `{"type":"send","id":"x","to":"`+bob+`","body":"during"}`)
	if s := na.nextType(1, "sent"); s["seq"] != float64(2) {
		t.Fatalf("got %v, want sent seq 2", s)
	}
	waitRing(t, a, 2)
	// nextType waits up to 5s: the seen refresh after the ring change
	// (1s settle) must bring seq 2.
	if m := nb.nextType(2, "msg"); m["seq"] != float64(2) || m["body"] != "during" {
		t.Fatalf("bob got %v, want seq 2", m)
	}
}

// TestClusterOneWayForwardsDoNotPile: forwarded acks are answered with an
// empty reply when they succeed, so the pending table stays small.
func TestClusterOneWayForwardsDoNotPile(t *testing.T) {
	st := newMemStore()
	a, _ := startPair(t, st)
	na := dialNode(t, a.LinkAddr())
	alice := usersHomedAt("n1", 1, "qa")[0]
	var bob string
	for i := 0; bob == ""; i++ {
		u := fmt.Sprintf("qb%d", i)
		if ring.Owner(u, []string{"n1", "n2"}) == "n1" && ring.Owner(record.DirectChatID(alice, u), []string{"n1", "n2"}) == "n2" {
			bob = u
		}
	}
	na.open(1, alice, "d")
	na.open(2, bob, "d")
	chat := record.DirectChatID(alice, bob)
	for i := 1; i <= 20; i++ {
		na.send(1, fmt.Sprintf(`{"type":"send","id":"m%d","to":"%s","body":"x"}`, i, bob))
		na.nextType(1, "sent")
	}
	for i := range 500 {
		na.send(2, fmt.Sprintf(`{"type":"ack","chat":"%s","seq":%d}`, chat, 1+i%20))
	}
	eventually(t, 5*time.Second, func() (bool, string) {
		a.cluster.pmu.Lock()
		n := len(a.cluster.pending)
		a.cluster.pmu.Unlock()
		return n < 50, fmt.Sprintf("%d forwarded acks still pending after 500 were sent, want them answered", n)
	})
}

// leaseTiming makes takeovers quick in tests.
func leaseTiming(c *Config) {
	c.Lease.Duration, c.Lease.Margin, c.Lease.Poll = 600*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
}

// TestLeasedClusterChat: under leases, the two nodes split the slots,
// requests go to the holder of their chat's slot, and chats on both sides
// work both ways with receipts.
func TestLeasedClusterChat(t *testing.T) {
	st := newLeasedStore(8)
	a := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true; leaseTiming(c) })
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()}; leaseTiming(c) })
	waitRing(t, a, 2)
	waitRing(t, b, 2)
	waitSlots(t, st, map[string]int{"n1": 4, "n2": 4}, 8, 5*time.Second)
	waitViews(t, st, a, b)
	na, nb := dialNode(t, a.LinkAddr()), dialNode(t, b.LinkAddr())
	forwards := leaseForwards.Get()
	for k := range 6 {
		alice, bob := usersHomedAt("n1", 6, "la")[k], usersHomedAt("n2", 6, "lb")[k]
		sa, sb := uint64(10*k+1), uint64(10*k+2)
		na.open(sa, alice, "phone")
		nb.open(sb, bob, "laptop")
		chat := record.DirectChatID(alice, bob)
		for i := 1; i <= 5; i++ {
			na.send(sa, fmt.Sprintf(`{"type":"send","id":"a%d","to":"%s","body":"m%d"}`, i, bob, i))
			if s := na.nextType(sa, "sent"); s["seq"] != float64(2*i-1) || s["chat"] != chat {
				t.Fatalf("alice's send %d: got %v, want seq %d", i, s, 2*i-1)
			}
			if m := nb.nextType(sb, "msg"); m["seq"] != float64(2*i-1) {
				t.Fatalf("bob got %v, want seq %d", m, 2*i-1)
			}
			nb.send(sb, fmt.Sprintf(`{"type":"send","id":"b%d","chat":"%s","body":"r%d"}`, i, chat, i))
			if s := nb.nextType(sb, "sent"); s["seq"] != float64(2*i) {
				t.Fatalf("bob's send %d: got %v, want seq %d", i, s, 2*i)
			}
			if m := na.nextType(sa, "msg"); m["seq"] != float64(2*i) {
				t.Fatalf("alice got %v, want seq %d", m, 2*i)
			}
		}
		nb.send(sb, fmt.Sprintf(`{"type":"ack","chat":"%s","seq":9}`, chat))
		if r := na.nextType(sa, "receipt"); r["user"] != bob || r["seq"] != float64(9) {
			t.Fatalf("alice got %v, want bob's receipt for 9", r)
		}
		st.lmu.Lock()
		fenced := st.fences[chat]
		st.lmu.Unlock()
		if fenced == 0 {
			t.Fatalf("chat %s was sequenced without a fence", chat)
		}
	}
	if leaseForwards.Get() == forwards {
		t.Fatalf("no request went to the other node's slots")
	}
}

// crashedLeases is a node's view of the lease store that cannot release:
// the node dies without handing its slots over.
type crashedLeases struct{ *leasedStore }

func (crashedLeases) ReleaseLease(_ context.Context, l record.Lease) (record.Lease, bool, error) {
	return l, false, errors.New("injected: the node died")
}

// TestLeasedTakeover: when a node dies, its slots stay unavailable until
// the lease runs out, then the survivor holds every slot at a new epoch
// and sends to the dead node's chats work again.
func TestLeasedTakeover(t *testing.T) {
	st := newLeasedStore(8)
	stopA := make(chan struct{})
	a := startServiceStoppable(t, crashedLeases{st}, stopA, func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true; leaseTiming(c) })
	b := startService(t, st, func(c *Config) { c.NodeID, c.Cluster.Peers = "n2", []string{a.LinkAddr()}; leaseTiming(c) })
	waitRing(t, b, 2)
	waitSlots(t, st, map[string]int{"n1": 4, "n2": 4}, 8, 5*time.Second)
	waitViews(t, st, a, b)
	// A user homed at n2 writes to a chat whose slot n1 holds.
	nb := dialNode(t, b.LinkAddr())
	var chat, peer string
	for i := 0; chat == ""; i++ {
		p := fmt.Sprintf("peer%d", i)
		c := record.DirectChatID("zed", p)
		if b.leases.Holder(leaseSlot(b, c)).Owner == "n1" {
			chat, peer = c, p
		}
	}
	nb.open(1, "zed", "d")
	nb.send(1, fmt.Sprintf(`{"type":"send","id":"r1","to":"%s","body":"before"}`, peer))
	if s := nb.nextType(1, "sent"); s["seq"] != float64(1) {
		t.Fatalf("send before the stop: got %v", s)
	}
	close(stopA) // n1 dies, its slots still leased to it
	start := time.Now()
	waitRing(t, b, 1)
	for i := 2; ; i++ {
		nb.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"%s","body":"after"}`, i, peer))
		m := nb.next(1)
		if m["type"] == "sent" {
			if m["seq"] != float64(2) {
				t.Fatalf("first send after the takeover: got %v, want seq 2", m)
			}
			break
		}
		if m["type"] != "error" || m["code"] != "unavailable" {
			t.Fatalf("send during the takeover: got %v, want sent or unavailable", m)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the survivor did not take the chat over within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	resumed := time.Since(start)
	t.Logf("sends resumed %v after the stop", resumed.Round(time.Millisecond))
	if lc := b.leases.Config(); resumed < lc.Duration-lc.Margin {
		t.Fatalf("sends resumed %v after the stop, before the dead node's lease could have run out", resumed)
	}
	waitSlots(t, st, map[string]int{"n2": 8}, 8, 5*time.Second)
	if g := b.leases.Grant(leaseSlot(b, chat)); g == nil || g.Epoch < 2 {
		t.Fatalf("the survivor's grant of the chat's slot: got %+v, want epoch 2 or more", g)
	}
}

// waitViews waits until every node's view of the lease table matches the
// store.
func waitViews(t *testing.T, st *leasedStore, nodes ...*Service) {
	t.Helper()
	eventually(t, 5*time.Second, func() (bool, string) {
		rows, _ := st.Leases(t.Context())
		same := true
		for _, n := range nodes {
			for _, r := range rows {
				same = same && n.leases.Holder(r.Slot) == r
			}
		}
		return same, "the nodes' views of the leases do not match the store"
	})
}

func leaseSlot(s *Service, chat string) int { return lease.Slot(chat, s.leases.Slots()) }

// waitSlots waits until the lease table shows want slots per owner.
func waitSlots(t *testing.T, st *leasedStore, want map[string]int, slots int, within time.Duration) {
	t.Helper()
	eventually(t, within, func() (bool, string) {
		got := map[string]int{}
		st.lmu.Lock()
		for _, l := range st.leases {
			if l.Owner != "" {
				got[l.Owner]++
			}
		}
		st.lmu.Unlock()
		total := 0
		for _, n := range want {
			total += n
		}
		if maps.Equal(got, want) || (total == slots && len(got) == len(want) && func() bool {
			for o := range want {
				if got[o] == 0 {
					return false
				}
			}
			return sumMap(got) == slots
		}()) {
			return true, ""
		}
		return false, fmt.Sprintf("lease owners: got %v, want %v", got, want)
	})
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// TestClusterPeerHelloBeforeRun: Run starts the cluster loop and the link
// listener in separate goroutines, so a peer's hello can be served before
// the loop runs. It is not forgotten: the loop dials the peer back when it
// starts (with no peers configured and no directory nothing else would).
func TestClusterPeerHelloBeforeRun(t *testing.T) {
	cfg := Default()
	cfg.NodeID, cfg.Cluster.Enabled = "n1", true
	cfg.LinkListen, cfg.LinkSecret = "127.0.0.1:0", string(testLinkSecret)
	cfg.HTTPListen, cfg.AdminListen = "", ""
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, newMemStore(), nil, v, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.linkLn.Close() })
	s.cluster = newCluster(s, nil)
	const addr = "127.0.0.1:1" // nothing listens: the dial loop keeps trying
	if !s.onPeerHello(nil, "n2", addr) {
		t.Fatal("hello refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.cluster.run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	eventually(t, 10*time.Second, func() (bool, string) {
		s.cluster.mu.RLock()
		dialing := s.cluster.dialers[addr] != nil
		s.cluster.mu.RUnlock()
		return dialing, "the peer that said hello before run is never dialed"
	})
}

// TestRunStopsRefreshPasses: a refreshAllSeen pass is the Service's
// background goroutine: stopping Run ends it before it completes (none of
// its reads after Run returned), Run waits for it, and nothing new starts.
func TestRunStopsRefreshPasses(t *testing.T) {
	stop := make(chan struct{})
	svc := startServiceStoppable(t, newMemStore(), stop)
	before := seenRefreshes.Get()
	svc.refreshAllSeen() // waits out seenSettle before it reads
	close(stop)
	<-svc.quit
	svc.bg.Wait()
	if got := seenRefreshes.Get(); got != before {
		t.Fatalf("refresh passes completed after Run stopped: %d, want %d", got, before)
	}
	if svc.background(func() {}) {
		t.Fatal("background started a goroutine after Run stopped")
	}
}

// TestPeerFanoutOfOlderNode: a logic node of the previous release (link
// version 2, the fixed Fanout layout) hands this node a message; the link
// runs at version 2 and the message arrives whole (a fleet upgrades one
// node at a time).
func TestPeerFanoutOfOlderNode(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) { c.NodeID, c.Cluster.Enabled = "n1", true })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "bob", "phone")

	c, err := net.Dial("tcp", svc.LinkAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := tierlink.NewReader(c, 0, 0)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	d, err := tierlink.DialHandshake(c, r, tierlink.TypePeerHello, "old|127.0.0.1:1", testLinkSecret, tierlink.DialOptions{MaxVersion: 2})
	if err != nil || d.Version != 2 {
		t.Fatalf("handshake: version %d, %v; want version 2", d.Version, err)
	}
	m := record.Message{ChatID: record.DirectChatID("alice", "bob"), Seq: 1, TS: 1, Kind: record.MsgText, Sender: "alice", Device: "web", RequestID: "r1", Body: "from an older node"}
	if _, err := c.Write(tierlink.AppendFanout(nil, d.Version, []tierlink.PeerUser{{User: "bob"}}, &m)); err != nil {
		t.Fatal(err)
	}
	if got := n.nextType(1, "msg"); got["seq"] != float64(1) || got["body"] != m.Body || got["from"] != "alice" {
		t.Fatalf("bob got %v, want seq 1 %q from alice", got, m.Body)
	}
}
