package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/record"
)

// chaosConfig holds the knobs of TestChaosNeverLosesAMessage, read from
// the environment so a long soak and a short CI run share one test.
type chaosConfig struct {
	cycles      int           // PARLEY_CHAOS_CYCLES: kill cycles (a cycle kills logic, connsrv or both); default 24
	duration    time.Duration // PARLEY_CHAOS_DURATION: cap on the chaos phase; default 150s (a restarted logic node on CQL waits for its leases)
	settle      time.Duration // PARLEY_CHAOS_SETTLE: cap on waiting for devices to catch up; default 25s
	pace        time.Duration // PARLEY_CHAOS_PACE: mean pause between two sends of one device; default 25ms
	sendTimeout time.Duration // PARLEY_CHAOS_SEND_TIMEOUT: bound on one Send (with its retries); default 10s
	seed        uint64        // PARLEY_CHAOS_SEED: default time-based, logged
	logDir      string        // PARLEY_CHAOS_LOGDIR: keep the processes' logs there; default a temp dir
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	c := chaosConfig{cycles: 24, duration: 150 * time.Second, settle: 25 * time.Second,
		pace: 25 * time.Millisecond, sendTimeout: 10 * time.Second, seed: uint64(time.Now().UnixNano())}
	dur := func(name string, dst *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				t.Fatalf("%s=%q: want a duration like 30s", name, v)
			}
			*dst = d
		}
	}
	dur("PARLEY_CHAOS_DURATION", &c.duration)
	dur("PARLEY_CHAOS_SETTLE", &c.settle)
	dur("PARLEY_CHAOS_PACE", &c.pace)
	dur("PARLEY_CHAOS_SEND_TIMEOUT", &c.sendTimeout)
	if v := os.Getenv("PARLEY_CHAOS_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("PARLEY_CHAOS_CYCLES=%q: want a count", v)
		}
		c.cycles = n
	}
	if v := os.Getenv("PARLEY_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("PARLEY_CHAOS_SEED=%q: want an unsigned integer", v)
		}
		c.seed = n
	}
	c.logDir = os.Getenv("PARLEY_CHAOS_LOGDIR")
	if c.logDir == "" {
		c.logDir = t.TempDir()
	} else if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

// tierProc is one tier (logic or connsrv) run as a separate process,
// killed and restarted on the same ports and data directory.
type tierProc struct {
	t        *testing.T
	name     string
	bin      string
	args     []string
	readyURL string
	logDir   string

	mu         sync.Mutex // guards the following
	cur        *incarnation
	starts     int
	unexpected []string // exits the test did not cause
}

// incarnation is one run of a tierProc.
type incarnation struct {
	n        int
	cmd      *exec.Cmd
	logPath  string
	exited   chan struct{} // closed once Wait returned
	expected atomic.Bool   // the test is stopping it
}

func newTierProc(t *testing.T, name, bin, readyURL, logDir string, args ...string) *tierProc {
	p := &tierProc{t: t, name: name, bin: bin, args: args, readyURL: readyURL, logDir: logDir}
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

var readyClient = &http.Client{Timeout: time.Second}

// start runs a new incarnation and waits (bounded by within) until its
// /readyz answers 200.
func (p *tierProc) start(within time.Duration) error {
	p.mu.Lock()
	p.starts++
	inc := &incarnation{n: p.starts, exited: make(chan struct{})}
	inc.logPath = filepath.Join(p.logDir, fmt.Sprintf("%s-%02d.log", p.name, inc.n))
	p.cur = inc
	p.mu.Unlock()
	f, err := os.Create(inc.logPath)
	if err != nil {
		return err
	}
	inc.cmd = exec.Command(p.bin, p.args...)
	inc.cmd.Env = childEnv()
	inc.cmd.Stdout, inc.cmd.Stderr = f, f
	if err := inc.cmd.Start(); err != nil {
		_ = f.Close()
		close(inc.exited)
		return fmt.Errorf("cannot start %s: %w", p.name, err)
	}
	go func() {
		err := inc.cmd.Wait()
		_ = f.Close()
		if !inc.expected.Load() {
			p.mu.Lock()
			p.unexpected = append(p.unexpected, fmt.Sprintf("%s #%d exited on its own: %v (log %s)", p.name, inc.n, err, inc.logPath))
			p.mu.Unlock()
		}
		close(inc.exited)
	}()
	return p.waitReady(inc, within)
}

// waitReady polls /readyz until 200, the process exits or within elapses.
func (p *tierProc) waitReady(inc *incarnation, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := readyClient.Get(p.readyURL)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-inc.exited:
			return fmt.Errorf("%s #%d exited before it was ready (log %s)", p.name, inc.n, inc.logPath)
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s #%d not ready within %v (last: %v)", p.name, inc.n, within, err)
		}
	}
}

// ready waits for the current incarnation's /readyz.
func (p *tierProc) ready(within time.Duration) error {
	p.mu.Lock()
	inc := p.cur
	p.mu.Unlock()
	if inc == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	return p.waitReady(inc, within)
}

// stop sends sig to the current incarnation and waits for it to exit,
// escalating to SIGKILL after 10s. No-op when nothing runs.
func (p *tierProc) stop(sig syscall.Signal) {
	p.mu.Lock()
	inc := p.cur
	p.cur = nil
	p.mu.Unlock()
	if inc == nil || inc.cmd == nil || inc.cmd.Process == nil {
		return
	}
	inc.expected.Store(true)
	_ = inc.cmd.Process.Signal(sig)
	select {
	case <-inc.exited:
		return
	case <-time.After(10 * time.Second):
	}
	p.t.Logf("%s #%d ignored %v for 10s; killing", p.name, inc.n, sig)
	_ = inc.cmd.Process.Kill()
	<-inc.exited
}

func (p *tierProc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.unexpected)
}

// chaosDevice is one SDK client (a user's device) and everything it was
// handed on Messages().
type chaosDevice struct {
	user, id string
	viaProxy bool
	slow     bool        // the app reads Messages() with pauses (backpressure)
	late     bool        // dialled mid-chaos: a brand-new device that needs the whole history
	chats    []chaosChat // the user's chats

	mu       sync.Mutex // guards the following
	c        *client.Client
	drained  chan struct{} // closed once c's Messages() is drained
	restarts int           // app restarts: Close, then Dial with Resume = Positions()
	got      []client.Message
}

// client returns the device's current Client.
func (d *chaosDevice) client() *client.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

// attach makes c the device's Client and starts draining it.
func (d *chaosDevice) attach(c *client.Client) {
	drained := make(chan struct{})
	d.mu.Lock()
	d.c, d.drained = c, drained
	d.mu.Unlock()
	go d.drain(c, drained)
}

func (d *chaosDevice) name() string { return d.user + "/" + d.id }

func (d *chaosDevice) drain(c *client.Client, drained chan struct{}) {
	defer close(drained)
	n := 0
	for m := range c.Messages() {
		d.mu.Lock()
		d.got = append(d.got, m)
		d.mu.Unlock()
		if n++; d.slow && n%150 == 0 {
			time.Sleep(300 * time.Millisecond)
		}
	}
}

// handed returns the seqs handed so far per chat, in order.
func (d *chaosDevice) handed() map[string][]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string][]uint64)
	for _, m := range d.got {
		out[m.Chat] = append(out[m.Chat], m.Seq)
	}
	return out
}

// chaosChat is a chat and how a member addresses it in a send.
type chaosChat struct {
	id      string
	dest    map[string]string // user -> SendWithID dest (chat id, or the peer for 1-on-1)
	members []string
}

// sendRec is one send attempt and its outcome.
type sendRec struct {
	user, dev   string
	chat, dest  string // expected chat id; what was passed to SendWithID
	id, body    string
	start, end  time.Time
	done, acked bool
	sent        client.Sent
	err         string
}

// chaosEvent is a kill or restart, for the timeline printed with evidence.
type chaosEvent struct {
	at   time.Time
	what string
}

type chaosHarness struct {
	t       *testing.T
	cfg     chaosConfig
	t0      time.Time
	authCfg auth.Config
	logic   *tierProc
	connsrv *tierProc
	proxy   *chaosProxy
	httpAPI string // logic's HTTP base URL
	direct  string // connsrv's WebSocket URL
	// startWithin bounds a tier process's start (longer on a fresh CQL keyspace).
	startWithin time.Duration
	devices     []*chaosDevice
	chats       []chaosChat

	stopNew atomic.Bool // senders stop starting sends
	counter sync.Map    // user -> *atomic.Uint64, numbering the user's messages across devices

	mu     sync.Mutex // guards the following
	sends  []*sendRec
	events []chaosEvent
}

func (h *chaosHarness) event(format string, args ...any) {
	h.mu.Lock()
	h.events = append(h.events, chaosEvent{at: time.Now(), what: fmt.Sprintf(format, args...)})
	h.mu.Unlock()
}

func (h *chaosHarness) token(user, device string) string {
	h.t.Helper()
	tok, err := auth.Issue(h.authCfg, user, device, 2*time.Hour, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *chaosHarness) dial(user, dev string, viaProxy, slow bool) *chaosDevice {
	h.t.Helper()
	c, err := h.dialClient(user, dev, viaProxy, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	d := &chaosDevice{user: user, id: dev, viaProxy: viaProxy, slow: slow}
	for _, ch := range h.chats {
		if slices.Contains(ch.members, user) {
			d.chats = append(d.chats, ch)
		}
	}
	d.attach(c)
	h.t.Cleanup(func() { closeBounded(d.client(), 10*time.Second) })
	return d
}

// dialClient connects user's device with the SDK, resuming from resume.
func (h *chaosHarness) dialClient(user, dev string, viaProxy bool, resume map[string]uint64) (*client.Client, error) {
	cfg := client.Default()
	cfg.URL = h.direct
	if viaProxy {
		cfg.URL = h.proxy.URL()
	}
	cfg.Token, cfg.Device = h.token(user, dev), dev
	cfg.Logger = logger()
	cfg.Resume = resume
	// Shorter than the defaults so that the run converges within the
	// test's budget: a lost answer is retried after 3s, and reconnects
	// back off at most 2s.
	cfg.RequestTimeout = 3 * time.Second
	cfg.Backoff = client.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg.Observe = observeContract
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot dial %s/%s: %w", user, dev, err)
	}
	if got := c.Hello().Device; got != dev {
		_ = c.Close()
		return nil, fmt.Errorf("%s: got session device %q, want %q", user, got, dev)
	}
	return c, nil
}

// restart is an app restart of d: Close, take every message already
// handed, then Dial again with Resume = Positions() of the old Client.
// The handed lists of both runs must join without gap or duplicate.
func (h *chaosHarness) restart(d *chaosDevice) error {
	old := d.client()
	if !closeBounded(old, 10*time.Second) {
		return fmt.Errorf("%s: Close did not return within 10s", d.name())
	}
	d.mu.Lock()
	drained := d.drained
	d.mu.Unlock()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s: Messages() not closed 5s after Close", d.name())
	}
	resume := old.Positions()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var c *client.Client
		if c, err = h.dialClient(d.user, d.id, d.viaProxy, resume); err == nil {
			d.attach(c)
			d.mu.Lock()
			d.restarts++
			d.mu.Unlock()
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return err
}

// closeBounded closes c, giving up waiting after d.
func closeBounded(c *client.Client, d time.Duration) bool {
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// send runs one recorded send.
func (h *chaosHarness) send(d *chaosDevice, ch chaosChat, n uint64) *sendRec {
	rec := &sendRec{user: d.user, dev: d.id, chat: ch.id, dest: ch.dest[d.user],
		id: fmt.Sprintf("%s-%s-%d", d.user, d.id, n), body: fmt.Sprintf("u:%s:%d", d.user, n), start: time.Now()}
	h.mu.Lock()
	h.sends = append(h.sends, rec)
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.sendTimeout)
	s, err := d.client().SendWithID(ctx, rec.id, rec.dest, rec.body)
	cancel()
	h.mu.Lock()
	rec.done, rec.end = true, time.Now()
	if err == nil {
		rec.acked, rec.sent = true, s
	} else {
		rec.err = err.Error()
	}
	h.mu.Unlock()
	return rec
}

// startSender runs d's sender until stopNew: a send to a random chat of
// the user, a random pause, again.
func (h *chaosHarness) startSender(d *chaosDevice, wg *sync.WaitGroup) {
	f := fnv.New64a()
	_, _ = f.Write([]byte(d.name()))
	rng := rand.New(rand.NewPCG(h.cfg.seed, f.Sum64()))
	ctr, _ := h.counter.LoadOrStore(d.user, new(atomic.Uint64))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !h.stopNew.Load() {
			ch := d.chats[rng.IntN(len(d.chats))]
			h.send(d, ch, ctr.(*atomic.Uint64).Add(1)+1000)
			if h.cfg.pace > 0 {
				time.Sleep(time.Duration(rng.Int64N(2*int64(h.cfg.pace) + 1)))
			}
		}
	}()
}

// histMsg is a message of logic's HTTP history answer.
type histMsg struct {
	Chat   string `json:"chat"`
	Seq    uint64 `json:"seq"`
	From   string `json:"from"`
	Device string `json:"device"`
	Kind   string `json:"kind"`
	Body   string `json:"body"`
}

// historyPage reads one page of chat's history over logic's HTTP API as
// user.
func (h *chaosHarness) historyPage(chat, user string, before, after uint64) ([]histMsg, bool, error) {
	q := url.Values{"limit": {"200"}}
	if before > 0 {
		q.Set("before", strconv.FormatUint(before, 10))
	}
	if after > 0 {
		q.Set("after", strconv.FormatUint(after, 10))
	}
	req, err := http.NewRequest(http.MethodGet, h.httpAPI+"/v1/chats/"+url.PathEscape(chat)+"/messages?"+q.Encode(), nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token(user, "chaos-verifier"))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("history of %s: HTTP %d", chat, resp.StatusCode)
	}
	var out struct {
		Messages []histMsg `json:"messages"`
		More     bool      `json:"more"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, false, err
	}
	return out.Messages, out.More, nil
}

// histView is an incrementally refreshed copy of every chat's history.
type histView map[string][]histMsg // chat -> messages, seq ascending

// refresh fetches what is new in chat.
func (h *chaosHarness) refresh(v histView, ch chaosChat) error {
	cur := v[ch.id]
	user := ch.members[0]
	if len(cur) == 0 {
		var all []histMsg
		before := uint64(0)
		for {
			page, more, err := h.historyPage(ch.id, user, before, 0)
			if err != nil {
				return err
			}
			all = append(page, all...)
			if len(page) == 0 || !more || page[0].Seq <= 1 {
				break
			}
			before = page[0].Seq
		}
		v[ch.id] = all
		return nil
	}
	for {
		after := cur[len(cur)-1].Seq
		page, more, err := h.historyPage(ch.id, user, 0, after)
		if err != nil {
			return err
		}
		for _, m := range page {
			if m.Seq > after {
				cur = append(cur, m)
				after = m.Seq
			}
		}
		if len(page) == 0 || !more {
			break
		}
	}
	v[ch.id] = cur
	return nil
}

// missingFor returns how many messages of v device d has not been handed.
func missingFor(d *chaosDevice, v histView) (missing int, detail string) {
	got := d.handed()
	var parts []string
	for _, ch := range d.chats {
		have := make(map[uint64]bool, len(got[ch.id]))
		for _, s := range got[ch.id] {
			have[s] = true
		}
		n := 0
		for _, m := range v[ch.id] {
			if !(m.From == d.user && m.Device == d.id) && !have[m.Seq] {
				n++
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", ch.id, n))
		}
		missing += n
	}
	return missing, strings.Join(parts, " ")
}

// TestChaosNeverLosesAMessage runs logic and connsrv as separate processes,
// SIGKILLs and restarts them over and over while SDK clients send and
// receive (some through a proxy that delays and cuts connections, also
// right between a send reaching the server and its "sent" reaching the
// client), then checks from the clients' records and the store that
// nothing acknowledged was lost, nothing was stored twice, and every
// device was handed every message of its chats exactly once, in order.
//
// Knobs: PARLEY_CHAOS_CYCLES, PARLEY_CHAOS_DURATION, PARLEY_CHAOS_SETTLE,
// PARLEY_CHAOS_PACE, PARLEY_CHAOS_SEND_TIMEOUT, PARLEY_CHAOS_SEED,
// PARLEY_CHAOS_LOGDIR (see chaosConfig).
func TestChaosNeverLosesAMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tiers as processes and kills them for about 20s")
	}
	cfg := chaosConfigFromEnv(t)
	t.Logf("chaos seed %d (replay with PARLEY_CHAOS_SEED=%d); process logs in %s", cfg.seed, cfg.seed, cfg.logDir)
	bin := parleyBinary(t)
	data := newTestStore(t)
	// On CQL eight slots, not 64: each restart takes its slots over with
	// one transaction per slot, on a two-core box shared with the cluster.
	data.slots = 8
	linkPort, logicHTTP, wsPort, connHTTP := freePort(t), freePort(t), freePort(t), freePort(t)

	h := &chaosHarness{t: t, cfg: cfg, t0: time.Now(), startWithin: data.startTimeout(),
		httpAPI: fmt.Sprintf("http://127.0.0.1:%d", logicHTTP),
		direct:  fmt.Sprintf("ws://127.0.0.1:%d/ws", wsPort)}
	h.authCfg = auth.Default()
	h.authCfg.Secret = secret
	pki := newLinkPKI(t, "logic", "connsrv") // the link on mutual TLS
	logicArgs := append([]string{"logic", "-config", "../configs/logic.yaml",
		"-set", "auth.secret=" + secret,
		"-set", "logic.link_secret=" + e2eLinkSecret,
		"-set", fmt.Sprintf("logic.link_listen=127.0.0.1:%d", linkPort),
		"-set", fmt.Sprintf("logic.http_listen=127.0.0.1:%d", logicHTTP),
		"-set", "logic.admin_listen=", // none: the test reads no metrics
		"-set", "logic.send_rate=0", // faults, not limits, are under test here
		// On CQL the store sequences under leases: a restarted node takes
		// its slots over when the killed one's lease ran out. Short leases
		// keep the cycles' traffic flowing (readyz waits for them).
		"-set", "logic.lease.duration=1s", "-set", "logic.lease.margin=200ms", "-set", "logic.lease.poll=100ms",
		"-set", "log.format=text"}, append(pki.args("logic", "logic"), data.flags()...)...)

	h.logic = newTierProc(t, "logic", bin, h.httpAPI+"/readyz", cfg.logDir, logicArgs...)
	connArgs := append([]string{"connsrv", "-config", "../configs/connsrv.yaml",
		"-set", "auth.secret=" + secret,
		"-set", "connsrv.link_secret=" + e2eLinkSecret,
		"-set", fmt.Sprintf("connsrv.listen=127.0.0.1:%d", wsPort),
		"-set", fmt.Sprintf("connsrv.http_listen=127.0.0.1:%d", connHTTP),
		"-set", fmt.Sprintf("connsrv.logic_addrs=127.0.0.1:%d", linkPort),
		// Relink within 1s of a logic restart instead of up to 5s.
		"-set", "connsrv.link_backoff_max=1s",
		// Reconnect storms from one address are the point here.
		"-set", "connsrv.ip_conn_rate=0",
		"-set", "log.format=text"}, pki.args("connsrv", "connsrv")...)
	h.connsrv = newTierProc(t, "connsrv", bin, fmt.Sprintf("http://127.0.0.1:%d/readyz", connHTTP), cfg.logDir, connArgs...)
	if err := h.logic.start(h.startWithin); err != nil {
		t.Fatal(err)
	}
	if err := h.connsrv.start(h.startWithin); err != nil {
		t.Fatal(err)
	}
	h.proxy = startProxy(t, fmt.Sprintf("127.0.0.1:%d", wsPort), proxyConfig{
		MaxDelay: 30 * time.Millisecond,
		// Kills end most connections within a second or two: cut early.
		CutProb: 0.5, CutMin: 50 * time.Millisecond, CutMax: 1500 * time.Millisecond, RSTProb: 0.5,
		SendCutProb: 0.05, SendCutMaxWait: 40 * time.Millisecond,
	}, cfg.seed)

	h.setup()
	setupDone := time.Now()
	t.Logf("setup: %d devices (%d via the proxy, %d slow readers), %d chats, in %v", len(h.devices), countProxied(h.devices), countSlow(h.devices), len(h.chats), setupDone.Sub(h.t0).Round(time.Millisecond))

	// Chaos phase.
	h.proxy.SetCuts(true)
	var senders sync.WaitGroup
	for _, d := range h.devices {
		h.startSender(d, &senders)
	}
	kills := h.chaos(&senders)
	h.proxy.SetCuts(false)
	h.stopNew.Store(true)
	chaosEnd := time.Now()
	h.event("chaos over")
	t.Logf("chaos: %d cycles, %d logic kills, %d connsrv kills in %v", kills.cycles, kills.logic, kills.connsrv, chaosEnd.Sub(setupDone).Round(time.Millisecond))

	// Let in-flight sends finish with both tiers up.
	sendersDone := make(chan struct{})
	go func() { senders.Wait(); close(sendersDone) }()
	select {
	case <-sendersDone:
	case <-time.After(cfg.sendTimeout + 5*time.Second):
		t.Errorf("senders still blocked %v after the chaos ended (Send ignores its context?)", cfg.sendTimeout+5*time.Second)
	}
	for _, p := range []*tierProc{h.logic, h.connsrv} {
		if err := p.ready(15 * time.Second); err != nil {
			t.Errorf("after the chaos: %v", err)
		}
	}

	view := h.settle()

	// Stop the clients, then the tiers, and read the store directly.
	for _, d := range h.devices {
		if !closeBounded(d.client(), 10*time.Second) {
			t.Errorf("%s: Close did not return within 10s", d.name())
			continue
		}
		d.mu.Lock()
		drained := d.drained
		d.mu.Unlock()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
			t.Errorf("%s: Messages() not closed 5s after Close", d.name())
		}
	}
	h.connsrv.stop(syscall.SIGTERM)
	h.logic.stop(syscall.SIGTERM)
	stored := h.readStore(data)
	for _, ch := range h.chats {
		if len(view[ch.id]) != len(stored[ch.id]) {
			t.Logf("note: chat %s: HTTP view has %d messages, store %d", ch.id, len(view[ch.id]), len(stored[ch.id]))
		}
	}
	h.verify(stored, kills)
	for _, p := range []*tierProc{h.logic, h.connsrv} {
		for _, e := range p.unexpectedExits() {
			t.Errorf("unexpected exit: %s", e)
		}
	}
}

func countSlow(ds []*chaosDevice) int {
	n := 0
	for _, d := range ds {
		if d.slow {
			n++
		}
	}
	return n
}

func countProxied(ds []*chaosDevice) int {
	n := 0
	for _, d := range ds {
		if d.viaProxy {
			n++
		}
	}
	return n
}

// setup connects every device, creates the chats and exchanges one
// message per direct chat, so that every device has seen every chat of its
// user before the chaos starts (no membership change later).
func (h *chaosHarness) setup() {
	t := h.t
	users := make([]string, 12)
	for i := range users {
		users[i] = fmt.Sprintf("u%02d", i+1)
	}
	byUser := map[string][]*chaosDevice{}
	for i, u := range users {
		devs := []string{"d1"}
		if i < 6 {
			devs = append(devs, "d2")
		}
		for _, dev := range devs {
			d := h.dial(u, dev, len(h.devices)%2 == 1, len(h.devices)%5 == 2)
			h.devices = append(h.devices, d)
			byUser[u] = append(byUser[u], d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups := []struct {
		name    string
		creator string
		others  []string
	}{
		{"five", "u01", []string{"u02", "u03", "u04", "u05"}},
		{"four", "u04", []string{"u06", "u07", "u08"}},
		{"three", "u09", []string{"u10", "u11"}},
	}
	for _, g := range groups {
		id, err := byUser[g.creator][0].client().CreateGroup(ctx, g.name, g.others)
		if err != nil {
			t.Fatalf("create group %s: %v", g.name, err)
		}
		ch := chaosChat{id: id, dest: map[string]string{}, members: append([]string{g.creator}, g.others...)}
		for _, m := range ch.members {
			ch.dest[m] = id
		}
		h.chats = append(h.chats, ch)
	}
	pairs := [][2]string{{"u01", "u02"}, {"u03", "u07"}, {"u05", "u12"}, {"u06", "u09"},
		{"u08", "u10"}, {"u11", "u12"}, {"u02", "u06"}, {"u10", "u12"}}
	for i, p := range pairs {
		ch := chaosChat{id: record.DirectChatID(p[0], p[1]), dest: map[string]string{p[0]: p[1], p[1]: p[0]}, members: p[:]}
		h.chats = append(h.chats, ch)
		for k, u := range p {
			r := h.send(byUser[u][0], ch, uint64(2*i+k+1)) // unique per user: bodies never repeat
			if !r.acked {
				t.Fatalf("setup send %s -> %s: %s", u, r.dest, r.err)
			}
			if r.sent.Chat != ch.id {
				t.Fatalf("setup send %s -> %s: got chat %s, want %s", u, r.dest, r.sent.Chat, ch.id)
			}
		}
	}
	for _, d := range h.devices {
		d.chats = nil
		for _, ch := range h.chats {
			if slices.Contains(ch.members, d.user) {
				d.chats = append(d.chats, ch)
			}
		}
		if len(d.chats) == 0 {
			t.Fatalf("user %s is in no chat", d.user)
		}
	}
	// Every device has been handed at least one message of each of its
	// chats (a group's "created" event, or the other side's setup
	// message), so its SDK knows the chat.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var waiting []string
		for _, d := range h.devices {
			got := d.handed()
			for _, ch := range d.chats {
				if len(got[ch.id]) == 0 {
					waiting = append(waiting, d.name()+" in "+ch.id)
				}
			}
		}
		if len(waiting) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("setup: after 15s no message handed to %v", waiting)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type killCounts struct{ cycles, logic, connsrv int }

// chaos kills and restarts the tiers until cfg.cycles kill cycles ran or
// cfg.duration passed. Halfway it adds brand-new devices (one direct, one
// through the proxy) that start sending too.
func (h *chaosHarness) chaos(senders *sync.WaitGroup) killCounts {
	t := h.t
	rng := rand.New(rand.NewPCG(h.cfg.seed, 1))
	var k killCounts
	start := time.Now()
	for cycle := 0; cycle < h.cfg.cycles; cycle++ {
		if time.Since(start) > h.cfg.duration {
			t.Logf("chaos: duration cap %v reached after %d cycles", h.cfg.duration, cycle)
			break
		}
		if cycle == h.cfg.cycles/2 {
			for _, l := range []struct {
				user, dev string
				proxy     bool
			}{{"u07", "d3", false}, {"u12", "d2", true}} {
				d := h.dial(l.user, l.dev, l.proxy, false)
				d.late = true
				h.devices = append(h.devices, d)
				h.startSender(d, senders)
				h.event("new device %s", d.name())
			}
		}
		if cycle > 0 && (cycle == h.cfg.cycles/3 || cycle == 2*h.cfg.cycles/3) {
			for _, d := range h.devices {
				if d.name() == "u02/d1" || d.name() == "u09/d1" || d.name() == "u03/d2" {
					if err := h.restart(d); err != nil {
						t.Errorf("app restart: %v", err)
					}
					h.event("app restart %s", d.name())
				}
			}
		}
		time.Sleep(time.Duration(100+rng.IntN(701)) * time.Millisecond) // traffic flows
		k.cycles++
		r := rng.Float64()
		killLogic, killConn := r < 0.55, r >= 0.45 // 10% both
		if killConn {
			h.connsrv.stop(syscall.SIGKILL)
			k.connsrv++
			h.event("SIGKILL connsrv")
		}
		if killLogic {
			h.logic.stop(syscall.SIGKILL)
			k.logic++
			h.event("SIGKILL logic")
		}
		time.Sleep(time.Duration(rng.IntN(301)) * time.Millisecond) // down time
		if killLogic {
			if err := h.logic.start(h.startWithin); err != nil {
				t.Errorf("cycle %d: %v", cycle, err)
				return k
			}
			h.event("logic up")
		}
		if killConn {
			if err := h.connsrv.start(h.startWithin); err != nil {
				t.Errorf("cycle %d: %v", cycle, err)
				return k
			}
			h.event("connsrv up")
		} else if err := h.connsrv.ready(20 * time.Second); err != nil {
			t.Errorf("cycle %d: connsrv did not relink to the restarted logic: %v", cycle, err)
		}
	}
	return k
}

// settle waits (bounded by cfg.settle) until every device was handed every
// stored message of its chats (except its own) and nothing new arrived for
// 2s. It returns the last HTTP view of the history.
func (h *chaosHarness) settle() histView {
	t := h.t
	view := histView{}
	start := time.Now()
	deadline := start.Add(h.cfg.settle)
	var stableSince time.Time
	lastTotal := -1
	for {
		total := 0
		for _, ch := range h.chats {
			if err := h.refresh(view, ch); err != nil {
				t.Logf("settle: cannot read history of %s: %v", ch.id, err)
			}
			total += len(view[ch.id])
		}
		missing := 0
		var detail []string
		for _, d := range h.devices {
			n, det := missingFor(d, view)
			if n > 0 {
				missing += n
				detail = append(detail, d.name()+"["+det+"]")
			}
		}
		if total != lastTotal || missing > 0 {
			stableSince = time.Now()
			lastTotal = total
		}
		if missing == 0 && time.Since(stableSince) >= 2*time.Second {
			t.Logf("settle: every device caught up (%d stored messages) in %v", total, time.Since(start).Round(time.Millisecond))
			return view
		}
		if time.Now().After(deadline) {
			t.Logf("settle: gave up after %v: %d messages not handed: %s", h.cfg.settle, missing, strings.Join(detail, " "))
			return view
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// readStore opens the pebble directory (logic is stopped) and returns
// every message of every chat, seq ascending.
func (h *chaosHarness) readStore(ts testStore) map[string][]record.Message {
	t := h.t
	st := ts.open(t)
	defer func() {
		if err := st.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := make(map[string][]record.Message, len(h.chats))
	for _, ch := range h.chats {
		last, err := st.LastSeq(ctx, ch.id)
		if err != nil {
			t.Fatalf("LastSeq %s: %v", ch.id, err)
		}
		var all []record.Message
		before := last + 1
		for before > 1 {
			page, err := st.Messages(ctx, ch.id, record.Page{Before: before, Limit: record.MaxPageLimit})
			if err != nil {
				t.Fatalf("Messages %s before %d: %v", ch.id, before, err)
			}
			if len(page) == 0 {
				break
			}
			all = append(page, all...)
			before = page[0].Seq
		}
		out[ch.id] = all
	}
	return out
}

// seqRanges formats seqs compactly ("3-7 10 12-13"), at most max items.
func seqRanges(seqs []uint64, max int) string {
	slices.Sort(seqs)
	var parts []string
	for i := 0; i < len(seqs); {
		j := i
		for j+1 < len(seqs) && seqs[j+1] == seqs[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatUint(seqs[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seqs[i], seqs[j]))
		}
		i = j + 1
		if len(parts) == max && i < len(seqs) {
			parts = append(parts, fmt.Sprintf("... (%d seqs in all)", len(seqs)))
			break
		}
	}
	return strings.Join(parts, " ")
}

// near names the chaos events within 1.5s before ts.
func (h *chaosHarness) near(ts time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		if d := ts.Sub(e.at); d >= -200*time.Millisecond && d <= 1500*time.Millisecond {
			out = append(out, fmt.Sprintf("%s %+dms", e.what, -d.Milliseconds()))
		}
	}
	if len(out) == 0 {
		return "no kill nearby"
	}
	return strings.Join(out, ", ")
}

// verify checks the clients' records against the store and reports.
func (h *chaosHarness) verify(stored map[string][]record.Message, kills killCounts) {
	t := h.t
	const maxEvidence = 12
	type loc struct {
		chat string
		seq  uint64
	}
	at := map[loc]record.Message{}
	bodies := map[string][]loc{}
	for chat, msgs := range stored {
		var gaps []uint64
		for i, m := range msgs {
			at[loc{chat, m.Seq}] = m
			if m.Seq != uint64(i+1) {
				gaps = append(gaps, m.Seq)
			}
			if m.Kind == record.MsgText {
				bodies[m.Body] = append(bodies[m.Body], loc{chat, m.Seq})
			}
		}
		if len(gaps) > 0 {
			t.Errorf("store: chat %s seqs not contiguous from 1: unexpected seqs %s", chat, seqRanges(gaps, 10))
		}
	}

	h.mu.Lock()
	sends := slices.Clone(h.sends)
	h.mu.Unlock()
	var acked, ackedLost, unackedStored, unackedAbsent, dupStored, notDone int
	errKinds := map[string]int{}
	sent := map[string]*sendRec{}
	evidence := 0
	for _, s := range sends {
		sent[s.body] = s
		locs := bodies[s.body]
		if len(locs) > 1 {
			dupStored++
			t.Errorf("duplicate: %s's %q (request %s) stored %d times: %v", s.user, s.body, s.id, len(locs), locs)
		}
		if !s.done {
			notDone++
		}
		if !s.acked {
			if len(locs) == 0 {
				unackedAbsent++
			} else {
				unackedStored++
			}
			if s.done {
				errKinds[errKind(s.err)]++
			}
			continue
		}
		acked++
		m, ok := at[loc{s.sent.Chat, s.sent.Seq}]
		if s.sent.Chat != s.chat || !ok || m.Body != s.body || m.Sender != s.user || m.Device != s.dev {
			ackedLost++
			if evidence < maxEvidence {
				evidence++
				t.Errorf("acked but lost: %s/%s %q request %s acked as %s #%d at +%v; store has %q from %s/%s (found=%v)",
					s.user, s.dev, s.body, s.id, s.sent.Chat, s.sent.Seq, s.end.Sub(h.t0).Round(time.Millisecond), m.Body, m.Sender, m.Device, ok)
			}
		}
	}
	phantom := 0
	for body, locs := range bodies {
		if strings.HasPrefix(body, "u:") && sent[body] == nil {
			phantom++
			t.Errorf("phantom: stored %q at %v was never sent", body, locs)
		}
	}

	// Deliveries.
	var missingTotal, dupHanded, outOfOrder, wrongBody, unexpected, devicesShort, ownHanded int
	for _, d := range h.devices {
		d.mu.Lock()
		got := slices.Clone(d.got)
		d.mu.Unlock()
		st := d.client().Stats()
		member := map[string]bool{}
		for _, ch := range d.chats {
			member[ch.id] = true
		}
		byChat := map[string][]client.Message{}
		for _, m := range got {
			byChat[m.Chat] = append(byChat[m.Chat], m)
		}
		for chat := range byChat {
			if !member[chat] {
				unexpected += len(byChat[chat])
				t.Errorf("%s was handed %d messages of %s, a chat it is not in", d.name(), len(byChat[chat]), chat)
			}
		}
		short := false
		for _, ch := range d.chats {
			handed := byChat[ch.id]
			seen := map[uint64]int{}
			var prev uint64
			var dups, disorder []uint64
			for _, m := range handed {
				seen[m.Seq]++
				if seen[m.Seq] > 1 {
					dups = append(dups, m.Seq)
				} else if m.Seq <= prev {
					disorder = append(disorder, m.Seq)
				}
				prev = max(prev, m.Seq)
				sm, ok := at[loc{ch.id, m.Seq}]
				switch {
				case !ok:
					unexpected++
					t.Errorf("%s was handed %s #%d %q, which the store does not have", d.name(), ch.id, m.Seq, m.Body)
				case sm.Body != m.Body || sm.Sender != m.From:
					wrongBody++
					t.Errorf("%s was handed %s #%d %q from %s; the store has %q from %s", d.name(), ch.id, m.Seq, m.Body, m.From, sm.Body, sm.Sender)
				case sm.Sender == d.user && sm.Device == d.id:
					// The SDK holds back only the sends it confirmed: a
					// send whose "sent" never came (the Client closed
					// first) may come back as a message, once.
					if rec := sent[sm.Body]; rec == nil || rec.acked {
						unexpected++
						t.Errorf("%s was handed its own acked message %s #%d %q", d.name(), ch.id, m.Seq, m.Body)
					} else {
						ownHanded++
					}
				}
			}
			var missing []uint64
			var firstMissing *record.Message
			for i := range stored[ch.id] {
				m := &stored[ch.id][i]
				if m.Sender == d.user && m.Device == d.id {
					continue
				}
				if seen[m.Seq] == 0 {
					missing = append(missing, m.Seq)
					if firstMissing == nil {
						firstMissing = m
					}
				}
			}
			dupHanded += len(dups)
			outOfOrder += len(disorder)
			missingTotal += len(missing)
			if len(dups) > 0 {
				t.Errorf("%s handed %s seqs more than once: %s", d.name(), ch.id, seqRanges(dups, 10))
			}
			if len(disorder) > 0 {
				t.Errorf("%s handed %s out of seq order at seqs %s", d.name(), ch.id, seqRanges(disorder, 10))
			}
			if len(missing) > 0 {
				short = true
				ts := time.UnixMilli(firstMissing.TS)
				t.Errorf("%s (proxy=%v slow=%v new=%v restarts=%d) never handed %d of %d messages of %s: seqs %s; first missing #%d %q by %s/%s stored at +%v (%s); device last handed #%d",
					d.name(), d.viaProxy, d.slow, d.late, d.restarts, len(missing), len(stored[ch.id]), ch.id, seqRanges(missing, 8),
					firstMissing.Seq, firstMissing.Body, firstMissing.Sender, firstMissing.Device,
					ts.Sub(h.t0).Round(time.Millisecond), h.near(ts), prev)
			}
		}
		if short {
			devicesShort++
		}
		if short || testing.Verbose() {
			t.Logf("%s SDK stats (last run of %d): %+v", d.name(), d.restarts+1, st)
		}
	}

	restarts := 0
	for _, d := range h.devices {
		restarts += d.restarts
	}
	ps := h.proxy.Stats()
	kinds := make([]string, 0, len(errKinds))
	for k, n := range errKinds {
		kinds = append(kinds, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(kinds)
	lost := ackedLost + missingTotal
	dups := dupStored + dupHanded
	t.Logf("CHAOS SUMMARY seed=%d cycles=%d kills logic=%d connsrv=%d app-restarts=%d proxy conns=%d cuts=%d (rst=%d fin=%d after-send=%d, sends seen %d, dial fails %d) "+
		"sends=%d acked=%d unacked-stored=%d unacked-absent=%d unfinished=%d | lost: acked-missing=%d undelivered=%d (devices short %d/%d) | "+
		"duplicated: stored=%d handed=%d | out-of-order=%d wrong=%d unexpected=%d phantom=%d own-unconfirmed-handed=%d",
		h.cfg.seed, kills.cycles, kills.logic, kills.connsrv, restarts, ps.Accepted, ps.Cuts(), ps.CutsRST, ps.CutsFIN, ps.CutsAfterSend, ps.SendsSeen, ps.DialFails,
		len(sends), acked, unackedStored, unackedAbsent, notDone, ackedLost, missingTotal, devicesShort, len(h.devices),
		dupStored, dupHanded, outOfOrder, wrongBody, unexpected, phantom, ownHanded)
	if len(kinds) > 0 {
		t.Logf("send errors: %s", strings.Join(kinds, "; "))
	}
	if kills.cycles < h.cfg.cycles {
		t.Errorf("only %d kill cycles ran, want %d", kills.cycles, h.cfg.cycles)
	}
	if acked < 100 {
		t.Errorf("only %d sends acked: too little traffic for the test to mean anything", acked)
	}
	if lost > 0 || dups > 0 || outOfOrder > 0 || wrongBody > 0 || unexpected > 0 || phantom > 0 {
		t.Errorf("never lose a message: %d lost, %d duplicated, %d out of order, %d wrong, %d unexpected, %d phantom (details above)",
			lost, dups, outOfOrder, wrongBody, unexpected, phantom)
	}
}

// errKind shortens a send error for the summary: "cannot send message
// <id> to <dest>: " dropped, at most 100 bytes.
func errKind(s string) string {
	if _, rest, ok := strings.Cut(s, ": "); ok {
		s = rest
	}
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return s
}
