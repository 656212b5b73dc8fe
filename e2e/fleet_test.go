package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/notifier"
	"github.com/parley-chat/parley/notifier/pushtest"
)

// The fleet tests run two logic and two connection nodes as separate
// processes on the real services that scripts/test-integration.sh starts:
// Cassandra (PARLEY_E2E_STORE=scylla, PARLEY_CQL_HOSTS), Redis
// (PARLEY_REDIS_ADDR, with PARLEY_REDIS_DIR/PORT for scripts/redis.sh) and
// Kafka (PARLEY_KAFKA_BROKERS). They skip without them.

type fleet struct {
	t        *testing.T
	bin      string
	data     testStore
	logDir   string
	authCfg  auth.Config
	logic    [2]*tierProc
	conn     [2]*tierProc
	ws       [2]string // connection nodes' WebSocket URLs
	logicAPI [2]string // logic nodes' HTTP base URLs
	logicAdm [2]string // logic nodes' admin listeners (/metrics)
	within   time.Duration
	topic    string // this run's Kafka topic
	prefix   string // this run's Redis key prefix
}

func needFleet(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a fleet of processes")
	}
	for _, v := range []string{"PARLEY_REDIS_ADDR", "PARLEY_KAFKA_BROKERS", "PARLEY_CQL_HOSTS"} {
		if os.Getenv(v) == "" {
			t.Skipf("%s not set (scripts/test-integration.sh starts the fleet's services)", v)
		}
	}
	if !sharedStore() {
		t.Skip("a fleet shares its store: PARLEY_E2E_STORE=scylla")
	}
}

func startFleet(t *testing.T, extra ...string) *fleet {
	t.Helper()
	return startFleetWith(t, fleetOptions{extra: extra})
}

// fleetOptions vary startFleetWith.
type fleetOptions struct {
	extra []string // more -set flags for the logic nodes
	// peerRelays, when set, carry the logic nodes' peer links: each logic
	// node advertises (and is dialed by its peer at) its relay.
	peerRelays [2]*relay
}

func startFleetWith(t *testing.T, opts fleetOptions) *fleet {
	t.Helper()
	needFleet(t)
	extra := opts.extra
	bin := parleyBinary(t)
	data := newTestStore(t)
	const secret = "fleet-e2e-secret-0123456789abcdef"
	f := &fleet{t: t, within: data.startTimeout(),
		topic:  fmt.Sprintf("e2e_events_%08x", rand.Uint32()),
		prefix: fmt.Sprintf("e2e%08x:", rand.Uint32())}
	f.authCfg = auth.Default()
	f.authCfg.Secret = secret
	logDir := t.TempDir()
	f.bin, f.data, f.logDir = bin, data, logDir
	var link, lhttp, ws, chttp, ladm [2]int
	for i := range 2 {
		link[i], lhttp[i], ws[i], chttp[i], ladm[i] = freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	}
	peers := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", link[0], link[1])
	links := peers // what connection nodes dial
	var advertise [2]string
	for i := range 2 {
		advertise[i] = fmt.Sprintf("127.0.0.1:%d", link[i])
		if r := opts.peerRelays[i]; r != nil {
			r.start(advertise[i])
			advertise[i] = r.addr()
		}
	}
	peers = advertise[0] + "," + advertise[1]
	// Every link (connsrv to logic, logic to logic) on mutual TLS.
	pki := newLinkPKI(t, "logic-1", "logic-2", "connsrv-1", "connsrv-2")
	common := []string{"-set", "auth.secret=" + secret, "-set", "log.format=text",
		"-set", "redis.addrs=" + os.Getenv("PARLEY_REDIS_ADDR"), "-set", "redis.key_prefix=" + f.prefix}
	for i := range 2 {
		f.logicAPI[i] = fmt.Sprintf("http://127.0.0.1:%d", lhttp[i])
		f.logicAdm[i] = fmt.Sprintf("http://127.0.0.1:%d", ladm[i])
		f.ws[i] = fmt.Sprintf("ws://127.0.0.1:%d/ws", ws[i])
		args := append([]string{"logic", "-config", fmt.Sprintf("../configs/fleet/logic-%d.yaml", i+1),
			"-set", fmt.Sprintf("logic.link_listen=127.0.0.1:%d", link[i]),
			"-set", fmt.Sprintf("logic.http_listen=127.0.0.1:%d", lhttp[i]),
			"-set", fmt.Sprintf("logic.admin_listen=127.0.0.1:%d", ladm[i]),
			"-set", "logic.cluster.advertise=" + advertise[i],
			"-set", "logic.cluster.peers=" + peers,
			"-set", "logic.cluster.location_refresh=2s",
			"-set", "logic.send_rate=0",
			"-set", "logic.web_dir=",
			"-set", "kafka.brokers=" + os.Getenv("PARLEY_KAFKA_BROKERS"),
			"-set", "kafka.topic=" + f.topic, "-set", "kafka.dlq_topic=" + f.topic + ".dlq"}, common...)
		args = append(append(append(args, pki.args("logic", fmt.Sprintf("logic-%d", i+1))...), data.flags()...), extra...)
		f.logic[i] = newTierProc(t, fmt.Sprintf("logic-%d", i+1), bin, f.logicAPI[i]+"/readyz", logDir, args...)
		f.conn[i] = newTierProc(t, fmt.Sprintf("connsrv-%d", i+1), bin, fmt.Sprintf("http://127.0.0.1:%d/readyz", chttp[i]), logDir,
			append([]string{"connsrv", "-config", fmt.Sprintf("../configs/fleet/connsrv-%d.yaml", i+1),
				"-set", fmt.Sprintf("connsrv.listen=127.0.0.1:%d", ws[i]),
				"-set", fmt.Sprintf("connsrv.http_listen=127.0.0.1:%d", chttp[i]),
				"-set", "connsrv.logic_addrs=" + links,
				"-set", "connsrv.drain_window=" + fleetDrainWindow.String()}, append(common, pki.args("connsrv", fmt.Sprintf("connsrv-%d", i+1))...)...)...)
	}
	// The first logic node creates the keyspace; the second finds it.
	for _, p := range []*tierProc{f.logic[0], f.logic[1], f.conn[0], f.conn[1]} {
		if err := p.start(f.within); err != nil {
			t.Fatal(err)
		}
	}
	f.waitRing(2)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs in %s", logDir)
		}
		for _, p := range []*tierProc{f.conn[0], f.conn[1], f.logic[0], f.logic[1]} {
			for _, u := range p.unexpectedExits() {
				t.Errorf("unexpected exit: %s", u)
			}
		}
	})
	return f
}

// waitRing waits until both logic nodes see a ring of n members (and
// every connection node is linked to both).
func (f *fleet) waitRing(n int) {
	f.t.Helper()
	want := fmt.Sprintf("parley_logic_ring_members %d", n)
	deadline := time.Now().Add(30 * time.Second)
	for _, api := range f.logicAdm {
		for {
			body := httpGet(api + "/metrics")
			if strings.Contains(body, want+"\n") {
				break
			}
			if time.Now().After(deadline) {
				f.t.Fatalf("%s: ring did not reach %d members", api, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func httpGet(url string) string {
	resp, err := readyClient.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// dial connects user's device to connection node i (the other node is its
// fallback) and records what it receives.
func (f *fleet) dial(user, device string, i int) *recorder {
	f.t.Helper()
	tok, err := auth.Issue(f.authCfg, user, device, 2*time.Hour, time.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := client.Default()
	cfg.URL, cfg.Fallbacks, cfg.Token, cfg.Device = f.ws[i], []string{f.ws[1-i]}, tok, device
	cfg.Logger = logger()
	cfg.RequestTimeout = 3 * time.Second
	cfg.Backoff.Max = time.Second
	// Retries of a refused send at most 500 ms apart (the server's
	// retry_after_ms hint), so the fault tests measure when the fleet
	// resumed, not how far the client's backoff had grown.
	cfg.RetryBackoff.Max = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg.Observe = observeContract
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		f.t.Fatalf("dial %s/%s on node %d: %v", user, device, i+1, err)
	}
	r := newRecorder(c)
	f.t.Cleanup(func() { _ = c.Close() })
	return r
}

// recorder collects the messages a client hands the app.
type recorder struct {
	c       *client.Client
	mu      sync.Mutex // guards the following
	seqs    map[string][]uint64
	text    map[string][]string          // chat -> bodies of text messages, in order
	bySeq   map[string]map[uint64]string // chat -> seq -> body, every message
	senders map[string]map[uint64]string // chat -> seq -> sender
}

func newRecorder(c *client.Client) *recorder {
	r := &recorder{c: c, seqs: map[string][]uint64{}, text: map[string][]string{},
		bySeq: map[string]map[uint64]string{}, senders: map[string]map[uint64]string{}}
	go func() {
		for m := range c.Messages() {
			r.mu.Lock()
			r.seqs[m.Chat] = append(r.seqs[m.Chat], m.Seq)
			if r.bySeq[m.Chat] == nil {
				r.bySeq[m.Chat], r.senders[m.Chat] = map[uint64]string{}, map[uint64]string{}
			}
			r.bySeq[m.Chat][m.Seq], r.senders[m.Chat][m.Seq] = m.Body, m.From
			if !m.IsSystem() {
				r.text[m.Chat] = append(r.text[m.Chat], m.Body)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// waitTexts waits until the client got n text messages in chat.
func (r *recorder) waitTexts(t *testing.T, chat string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.mu.Lock()
		got := slices.Clone(r.text[chat])
		seqs := slices.Clone(r.seqs[chat])
		r.mu.Unlock()
		if !slices.IsSorted(seqs) || len(slices.Compact(slices.Clone(seqs))) != len(seqs) {
			t.Fatalf("%s got seqs %v in %s: want ascending, each once", r.c.Hello().User, seqs, chat)
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d of %d messages in %s after %v", r.c.Hello().User, len(got), n, chat, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFleet(t *testing.T) {
	f := startFleet(t)
	t.Run("CrossNodeChat", f.crossNodeChat)
	t.Run("GroupOfFive", f.groupOfFive)
	t.Run("RedisDown", f.redisDown)
	t.Run("KillLogic", f.killLogic)
	t.Run("KillConnsrv", f.killConnsrv)
	t.Run("WebPush", f.webPush)
	t.Run("Drain", f.drain)
}

// crossNodeChat: alice on connsrv-1 and bob on connsrv-2 chat both ways.
func (f *fleet) crossNodeChat(t *testing.T) {
	alice, bob := f.dial("alice", "phone", 0), f.dial("bob", "laptop", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var chat string
	for i := range 10 {
		s, err := alice.c.SendTo(ctx, "bob", fmt.Sprintf("a%d", i))
		if err != nil {
			t.Fatal(err)
		}
		chat = s.Chat
		if _, err := bob.c.Send(ctx, chat, fmt.Sprintf("b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	want := func(p string) []string {
		var out []string
		for i := range 10 {
			out = append(out, fmt.Sprintf("%s%d", p, i))
		}
		return out
	}
	if got := bob.waitTexts(t, chat, 10, 20*time.Second); !slices.Equal(got, want("a")) {
		t.Fatalf("bob got %v, want %v", got, want("a"))
	}
	if got := alice.waitTexts(t, chat, 10, 20*time.Second); !slices.Equal(got, want("b")) {
		t.Fatalf("alice got %v, want %v", got, want("b"))
	}
}

// groupOfFive: a 5-member group spread over both connection nodes gets
// every message, in order.
func (f *fleet) groupOfFive(t *testing.T) {
	users := []string{"g1", "g2", "g3", "g4", "g5"}
	recs := make([]*recorder, len(users))
	for i, u := range users {
		recs[i] = f.dial(u, "d", i%2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	chat, err := recs[0].c.CreateGroup(ctx, "five", users[1:])
	if err != nil {
		t.Fatal(err)
	}
	const each = 8
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Go(func() {
			for k := range each {
				if _, err := r.c.Send(ctx, chat, fmt.Sprintf("%s-%d", users[i], k)); err != nil {
					t.Errorf("%s: %v", users[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, r := range recs {
		got := r.waitTexts(t, chat, each*(len(users)-1), 30*time.Second)
		// Each sender's messages arrive in the order they were sent.
		for _, from := range users {
			if from == users[i] {
				continue
			}
			var mine []string
			for _, b := range got {
				if strings.HasPrefix(b, from+"-") {
					mine = append(mine, b)
				}
			}
			for k, b := range mine {
				if b != fmt.Sprintf("%s-%d", from, k) {
					t.Fatalf("%s got %s's messages %v, want them in send order", users[i], from, mine)
				}
			}
		}
	}
}

// redisDown: with Redis stopped sends keep succeeding across nodes and
// presence degrades; when it returns, presence and routing recover.
func (f *fleet) redisDown(t *testing.T) {
	carol, dave := f.dial("carol", "d", 0), f.dial("dave", "d", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	online := func() bool {
		p, err := carol.c.Presence(ctx, "dave")
		return err == nil && len(p) == 1 && p[0].Online
	}
	// Presence is shown between users who have both written to each other.
	hello, err := carol.c.SendTo(ctx, "dave", "hello")
	if err != nil {
		t.Fatal(err)
	}
	dave.waitTexts(t, hello.Chat, 1, 20*time.Second)
	if _, err := dave.c.SendTo(ctx, "carol", "hi"); err != nil {
		t.Fatal(err)
	}
	carol.waitTexts(t, hello.Chat, 1, 20*time.Second)
	waitFor(t, 20*time.Second, "dave online before the outage", online)

	redis(t, "stop")
	stopped := true
	defer func() {
		if stopped {
			redis(t, "start")
		}
	}()
	var chat string
	for i := range 20 {
		s, err := carol.c.SendTo(ctx, "dave", fmt.Sprintf("r%d", i))
		if err != nil {
			t.Fatalf("send %d with redis down: %v", i, err)
		}
		chat = s.Chat
	}
	dave.waitTexts(t, chat, 21, 30*time.Second) // hello and the 20
	if p, err := carol.c.Presence(ctx, "dave"); err == nil && len(p) == 1 && p[0].Online {
		t.Logf("presence with redis down: %+v (cached)", p)
	} else {
		t.Logf("presence with redis down: %+v, err %v (degraded, as designed)", p, err)
	}

	redis(t, "start")
	stopped = false
	// Redis came back empty: the nodes' location refresh (2s here) and
	// registration rebuild it without restarts.
	waitFor(t, 30*time.Second, "dave online after redis returned", online)
	erin := f.dial("erin", "d", 1)
	s, err := carol.c.SendTo(ctx, "erin", "after")
	if err != nil {
		t.Fatal(err)
	}
	erin.waitTexts(t, s.Chat, 1, 20*time.Second)
}

func redis(t *testing.T, cmd string) {
	t.Helper()
	out, err := exec.Command("bash", "../scripts/redis.sh", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("redis.sh %s: %v\n%s", cmd, err, out)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// traffic runs senders until stop and records every acked message.
type traffic struct {
	mu       sync.Mutex // guards the following
	acked    map[string][]string
	lastSent map[int]time.Time
	maxGap   time.Duration // longest wait between two acks of one sender
}

func runTraffic(ctx context.Context, senders []*recorder, chats []string) (*traffic, func()) {
	tr := &traffic{acked: map[string][]string{}, lastSent: map[int]time.Time{}}
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Go(func() {
			tr.mu.Lock()
			tr.lastSent[i] = time.Now()
			tr.mu.Unlock()
			for k := 0; sctx.Err() == nil; k++ {
				body := fmt.Sprintf("s%d-%d", i, k)
				if _, err := s.c.Send(sctx, chats[i], body); err != nil {
					return
				}
				now := time.Now()
				tr.mu.Lock()
				tr.acked[chats[i]] = append(tr.acked[chats[i]], body)
				tr.maxGap = max(tr.maxGap, now.Sub(tr.lastSent[i]))
				tr.lastSent[i] = now
				tr.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	return tr, func() { stop(); wg.Wait() }
}

// killFlow SIGKILLs one process during steady traffic between pairs that
// span both connection nodes, restarts it, and checks that every acked
// message reached its recipient once and in order.
func (f *fleet) killFlow(t *testing.T, victim *tierProc, tag string) {
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	const pairs = 4
	var senders, receivers []*recorder
	var chats []string
	for i := range pairs {
		s := f.dial(fmt.Sprintf("%s-s%d", tag, i), "d", i%2)
		r := f.dial(fmt.Sprintf("%s-r%d", tag, i), "d", (i+1)%2)
		sent, err := s.c.SendTo(ctx, fmt.Sprintf("%s-r%d", tag, i), "hello")
		if err != nil {
			t.Fatal(err)
		}
		senders, receivers, chats = append(senders, s), append(receivers, r), append(chats, sent.Chat)
	}
	tr, stop := runTraffic(ctx, senders, chats)
	time.Sleep(2 * time.Second)
	killed := time.Now()
	victim.stop(syscall.SIGKILL)
	time.Sleep(3 * time.Second)
	if err := victim.start(f.within); err != nil {
		t.Fatal(err)
	}
	f.waitRing(2)
	time.Sleep(2 * time.Second)
	stop()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("%s: SIGKILL at %s; longest wait between two acks of one sender: %v; acked per chat: %d..%d",
		victim.name, killed.Format("15:04:05.000"), tr.maxGap.Round(time.Millisecond), minLen(tr.acked), maxLen(tr.acked))
	for i, chat := range chats {
		want := append([]string{"hello"}, tr.acked[chat]...)
		got := receivers[i].waitTexts(t, chat, len(want), 60*time.Second)
		// Sends retried across the kill may be stored once more after the
		// ack the test saw... never: a retry reuses its request id. So the
		// receiver sees exactly the acked bodies, in order (a send cut off
		// by the test's stop may add one more at the end).
		if len(got) > len(want)+1 || !slices.Equal(got[:len(want)], want) {
			t.Fatalf("pair %d: receiver got %d messages, acked %d; first difference at %d", i, len(got), len(want), firstDiff(got, want))
		}
	}
}

func (f *fleet) killLogic(t *testing.T)   { f.killFlow(t, f.logic[1], "kl") }
func (f *fleet) killConnsrv(t *testing.T) { f.killFlow(t, f.conn[1], "kc") }

func minLen(m map[string][]string) int {
	n := -1
	for _, v := range m {
		if n < 0 || len(v) < n {
			n = len(v)
		}
	}
	return n
}

func maxLen(m map[string][]string) int {
	n := 0
	for _, v := range m {
		n = max(n, len(v))
	}
	return n
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// webPush: an offline recipient's registered Web Push endpoint (a local
// push service that checks the VAPID JWT and decrypts the RFC 8291
// payload) gets each message exactly once, through Kafka and the notifier.
func (f *fleet) webPush(t *testing.T) {
	pub, priv, err := notifier.GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	push := pushtest.NewServer()
	defer push.Close()
	push.SetVAPIDKey(pub)
	nhttp := freePort(t)
	n := newTierProc(t, "notifier", f.bin, fmt.Sprintf("http://127.0.0.1:%d/readyz", nhttp), f.logDir,
		append([]string{"notifier", "-config", "../configs/fleet/notifier.yaml",
			"-set", "log.format=text",
			"-set", "notifier.vapid_public_key=" + pub, "-set", "notifier.vapid_private_key=" + priv,
			"-set", fmt.Sprintf("notifier.http_listen=127.0.0.1:%d", nhttp),
			"-set", "kafka.brokers=" + os.Getenv("PARLEY_KAFKA_BROKERS"),
			"-set", "kafka.topic=" + f.topic, "-set", "kafka.dlq_topic=" + f.topic + ".dlq",
			"-set", "kafka.group=" + f.topic + "-notifier"}, f.data.flags()...)...)
	if err := n.start(f.within); err != nil {
		t.Fatal(err)
	}
	defer n.stop(syscall.SIGTERM)

	// pia registers her phone's subscription, then goes offline (she never
	// connects a WebSocket here).
	sub := push.Subscribe("pia", "phone")
	tok, err := auth.Issue(f.authCfg, "pia", "phone", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"endpoint":%q,"keys":{"p256dh":%q,"auth":%q}}`, sub.Endpoint, sub.P256dh, sub.Auth)
	req, _ := http.NewRequest(http.MethodPost, f.logicAPI[1]+"/v1/push/subscriptions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register subscription: %d %s", resp.StatusCode, b)
	}

	quinn := f.dial("quinn", "d", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var sent []client.Sent
	for i := range 2 {
		s, err := quinn.c.SendTo(ctx, "pia", fmt.Sprintf("push me %d", i))
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, s)
	}
	got, err := push.WaitFor(ctx, 2)
	if err != nil {
		t.Fatalf("push service got %d of 2 pushes: %v (rejected: %v)", len(push.Received()), err, push.Rejected())
	}
	// Anything duplicated would arrive within a few more seconds.
	time.Sleep(3 * time.Second)
	if all := push.Received(); len(all) != 2 {
		t.Fatalf("push service got %d pushes, want exactly 2", len(all))
	}
	if r := push.Rejected(); len(r) != 0 {
		t.Fatalf("push service rejected %v", r)
	}
	for i, p := range got {
		pt := string(p.Plaintext)
		if !strings.Contains(pt, sent[i].Chat) || !strings.Contains(pt, fmt.Sprintf(`"seq":%d`, sent[i].Seq)) || !strings.Contains(pt, "quinn") {
			t.Fatalf("push %d decrypted to %s, want chat %s seq %d from quinn", i, pt, sent[i].Chat, sent[i].Seq)
		}
	}
}
