package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/notifier/pushtest"
	"github.com/parley-chat/parley/notifier/webhook"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/pebble"
)

// fixture is a notifier on a real (in-memory) Pebble store pushing to a
// real push service.
type fixture struct {
	n     *Notifier
	store *pebble.Store
	push  *pushtest.Server
	waits []time.Duration // backoff waits asked for
	mu    sync.Mutex
}

func openStore(t *testing.T) *pebble.Store {
	t.Helper()
	cfg := pebble.Default()
	cfg.Dir, cfg.CacheSize, cfg.MemTableSize = "/db", 1<<20, 1<<20
	s, err := pebble.OpenFS(cfg, vfs.NewMem(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newFixture(t *testing.T, tune ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{store: openStore(t), push: pushtest.NewTLSServer()}
	t.Cleanup(f.push.Close)
	pub, priv, err := GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	f.push.SetVAPIDKey(pub)
	cfg := Default()
	cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey, cfg.VAPIDSubject = pub, priv, "mailto:ops@example.com"
	cfg.Attempts, cfg.TTL = 4, time.Hour
	for _, fn := range tune {
		fn(&cfg)
	}
	f.n, err = New(cfg, f.store, testLog(t), WithHTTPClient(f.push.Client()))
	if err != nil {
		t.Fatal(err)
	}
	f.n.sleep = func(ctx context.Context, d time.Duration) error { // no real waits
		f.mu.Lock()
		f.waits = append(f.waits, d)
		f.mu.Unlock()
		return ctx.Err()
	}
	return f
}

func (f *fixture) subscribe(t *testing.T, user, device string) record.PushSubscription {
	t.Helper()
	sub := f.push.Subscribe(user, device)
	if err := f.store.PutPushSubscription(t.Context(), sub); err != nil {
		t.Fatal(err)
	}
	return sub
}

func (f *fixture) devices(t *testing.T, user string) []string {
	t.Helper()
	subs, err := f.store.PushSubscriptions(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range subs {
		out = append(out, s.Device)
	}
	return out
}

var ev = record.PushEvent{Recipient: "bob", ChatID: "dm:alice:bob", Seq: 7, Sender: "alice", Preview: "see you at 6", TS: 1_700_000_000_000}

// counters snapshots the result counters, for deltas.
func counters() map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range []string{resultDelivered, resultGone, resultRetry, resultFailed, resultDuplicate, resultLost} {
		out["push/"+r] = pushes(r).Get()
		out["hook/"+r] = webhooks(r).Get()
	}
	return out
}

func delta(before map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range counters() {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

func wantDelta(t *testing.T, before map[string]uint64, want map[string]uint64) {
	t.Helper()
	got := delta(before)
	if len(got) != len(want) {
		t.Fatalf("counter changes: got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("counter changes: got %v, want %v", got, want)
		}
	}
}

func TestHandleDelivers(t *testing.T) {
	for _, preview := range []bool{true, false} {
		t.Run(map[bool]string{true: "preview", false: "no preview"}[preview], func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Preview = preview })
			f.subscribe(t, "bob", "phone")
			f.subscribe(t, "bob", "laptop")
			f.subscribe(t, "carol", "phone")
			before := counters()
			if err := f.n.Handle(t.Context(), ev); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			got := f.push.Received()
			if len(got) != 2 {
				t.Fatalf("pushes: got %d, want 2", len(got))
			}
			want := `{"chat":"dm:alice:bob","seq":7,"sender":"alice","preview":"see you at 6","ts":1700000000000}`
			if !preview {
				want = `{"chat":"dm:alice:bob","seq":7,"sender":"alice","ts":1700000000000}`
			}
			seen := map[string]bool{}
			for _, p := range got {
				seen[p.Sub.Device] = true
				if p.Sub.User != "bob" || string(p.Plaintext) != want {
					t.Fatalf("push to %s/%s: got %s, want %s", p.Sub.User, p.Sub.Device, p.Plaintext, want)
				}
				if p.Header.Get("Urgency") != "high" || p.Header.Get("TTL") != "3600" {
					t.Fatalf("push headers: got Urgency %q TTL %q", p.Header.Get("Urgency"), p.Header.Get("TTL"))
				}
			}
			if !seen["phone"] || !seen["laptop"] {
				t.Fatalf("pushed devices: got %v", seen)
			}
			if r := f.push.Rejected(); len(r) != 0 {
				t.Fatalf("push service rejected: %+v", r)
			}
			wantDelta(t, before, map[string]uint64{"push/delivered": 2})
		})
	}
}

// TestHandleOutcomes: retries, gone subscriptions, permanent failures.
func TestHandleOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		times      int
		wantErr    bool
		wantPushes int
		wantSub    bool // the subscription still exists
		wantWaits  int
		want       map[string]uint64
	}{
		{"500 twice then success", 500, 2, false, 1, true, 2, map[string]uint64{"push/delivered": 1}},
		{"429 once then success", 429, 1, false, 1, true, 1, map[string]uint64{"push/delivered": 1}},
		{"500 every time", 500, -1, true, 0, true, 3, map[string]uint64{"push/retry": 1}},
		{"410 deletes", 410, -1, false, 0, false, 0, map[string]uint64{"push/gone": 1}},
		{"404 deletes", 404, 1, false, 0, false, 0, map[string]uint64{"push/gone": 1}},
		{"400 is permanent", 400, -1, false, 0, true, 0, map[string]uint64{"push/failed": 1}},
		{"413 is permanent", 413, -1, false, 0, true, 0, map[string]uint64{"push/failed": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			sub := f.subscribe(t, "bob", "phone")
			f.push.Fail(sub.Endpoint, tc.status, tc.times)
			before := counters()
			err := f.n.Handle(t.Context(), ev)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Handle: got %v, want error %v", err, tc.wantErr)
			}
			if n := len(f.push.Received()); n != tc.wantPushes {
				t.Fatalf("pushes: got %d, want %d", n, tc.wantPushes)
			}
			if has := len(f.devices(t, "bob")) == 1; has != tc.wantSub {
				t.Fatalf("subscription kept: got %v, want %v", has, tc.wantSub)
			}
			if len(f.waits) != tc.wantWaits {
				t.Fatalf("backoff waits: got %v, want %d", f.waits, tc.wantWaits)
			}
			if tc.status == 429 && f.waits[0] < time.Second {
				t.Fatalf("wait after 429 with Retry-After: 1: got %v, want >= 1s", f.waits[0])
			}
			wantDelta(t, before, tc.want)
		})
	}
}

// TestGoneKeepsNewEndpoint: a 410 for an endpoint the device has replaced
// meanwhile does not delete the new subscription.
func TestGoneKeepsNewEndpoint(t *testing.T) {
	f := newFixture(t)
	old := f.subscribe(t, "bob", "phone")
	f.push.Fail(old.Endpoint, 410, -1)
	// The second read (the re-check before deleting) sees a new endpoint.
	subsRead := 0
	f.n.store = hookStore{Store: f.store, onRead: func() {
		subsRead++
		if subsRead == 2 {
			f.subscribe(t, "bob", "phone") // a new endpoint for the same device
		}
	}}
	if err := f.n.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	subs, _ := f.store.PushSubscriptions(t.Context(), "bob")
	if len(subs) != 1 || subs[0].Endpoint == old.Endpoint {
		t.Fatalf("subscriptions: got %+v, want the new endpoint kept", subs)
	}
}

type hookStore struct {
	Store
	onRead func()
}

func (h hookStore) PushSubscriptions(ctx context.Context, user string) ([]record.PushSubscription, error) {
	h.onRead()
	return h.Store.PushSubscriptions(ctx, user)
}

// TestDuplicateHandlePushesOnce: the same event handled again, or by
// several goroutines at once (two notifier nodes, a Kafka redelivery),
// pushes once per device.
func TestDuplicateHandlePushesOnce(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, "bob", "phone")
	f.subscribe(t, "bob", "laptop")
	before := counters()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := f.n.Handle(t.Context(), ev); err != nil {
				t.Errorf("Handle: %v", err)
			}
		})
	}
	wg.Wait()
	if err := f.n.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	if n := len(f.push.Received()); n != 2 {
		t.Fatalf("pushes: got %d, want 2 (one per device)", n)
	}
	// Racing duplicates may see a claim whose attempt is still in flight
	// and report it as lost; all 12 extra handlings are accounted for.
	d := delta(before)
	if d["push/delivered"] != 2 || d["push/duplicate"]+d["push/lost"] != 12 {
		t.Fatalf("counter changes: got %v, want 2 delivered and 12 duplicate or lost", d)
	}
	// The next message is pushed again.
	next := ev
	next.Seq++
	if err := f.n.Handle(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if n := len(f.push.Received()); n != 4 {
		t.Fatalf("pushes after the next message: got %d, want 4", n)
	}
}

// TestCrashBetweenClaimAndSendIsVisible: a claim without its done marker
// (the process died before the push) is reported once as lost, never
// pushed twice.
func TestCrashBetweenClaimAndSendIsVisible(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, "bob", "phone")
	if first, err := f.store.MarkPushed(t.Context(), deviceKey(ev, "phone"), time.Hour); err != nil || !first {
		t.Fatalf("MarkPushed: %v %v", first, err)
	}
	before := counters()
	for range 2 {
		if err := f.n.Handle(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.push.Received()); n != 0 {
		t.Fatalf("pushes: got %d, want 0", n)
	}
	wantDelta(t, before, map[string]uint64{"push/lost": 1, "push/duplicate": 1})
}

// TestShutdownMidRetry: a ctx cancelled while waiting to retry fails the
// event and leaves the claim unfinished (lost on redelivery).
func TestShutdownMidRetry(t *testing.T) {
	f := newFixture(t)
	sub := f.subscribe(t, "bob", "phone")
	f.push.Fail(sub.Endpoint, 503, -1)
	ctx, cancel := context.WithCancel(t.Context())
	f.n.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	if err := f.n.Handle(ctx, ev); !errors.Is(err, context.Canceled) {
		t.Fatalf("Handle: got %v, want context.Canceled", err)
	}
	before := counters()
	f.push.Fail(sub.Endpoint, 0, -1)
	if err := f.n.Handle(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	wantDelta(t, before, map[string]uint64{"push/lost": 1})
}

// failingStore fails every call.
type failingStore struct{}

var errStore = errors.New("store down")

// Every backend (storage.Store) is a notifier.Store.
var _ Store = storage.Store(nil)

func (failingStore) PushSubscriptions(context.Context, string) ([]record.PushSubscription, error) {
	return nil, errStore
}
func (failingStore) DeletePushSubscription(context.Context, string, string) error { return errStore }
func (failingStore) MarkPushed(context.Context, string, time.Duration) (bool, error) {
	return false, errStore
}

type ledgerDown struct{ Store }

func (ledgerDown) MarkPushed(context.Context, string, time.Duration) (bool, error) {
	return false, errStore
}

func TestStoreErrorsAreRetryable(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, "bob", "phone")
	f.n.store = failingStore{}
	if err := f.n.Handle(t.Context(), ev); !errors.Is(err, errStore) {
		t.Fatalf("Handle with the store down: got %v, want errStore", err)
	}
	f.n.store = ledgerDown{f.store}
	if err := f.n.Handle(t.Context(), ev); !errors.Is(err, errStore) {
		t.Fatalf("Handle with the ledger down: got %v, want errStore", err)
	}
	if n := len(f.push.Received()); n != 0 {
		t.Fatalf("pushes without a claim: got %d, want 0", n)
	}
}

// hookReceiver is a webhook endpoint that verifies signatures.
type hookReceiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	fails int
	got   []webhook.Event
	keys  []string
	bad   []error
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			h.bad = append(h.bad, err)
			w.WriteHeader(401)
			return
		}
		if h.fails > 0 {
			h.fails--
			w.WriteHeader(502)
			return
		}
		var e webhook.Event
		if err := json.Unmarshal(body, &e); err != nil {
			h.bad = append(h.bad, err)
		}
		h.got = append(h.got, e)
		h.keys = append(h.keys, r.Header.Get(webhook.DeliveryHeader))
		w.WriteHeader(204)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func TestWebhook(t *testing.T) {
	const secret = "webhook-secret-0123456789"
	h := newHookReceiver(t, secret)
	h.fails = 2
	f := newFixture(t, func(c *Config) { c.WebhookURL, c.WebhookSecret = h.srv.URL+"/hook", secret })
	f.subscribe(t, "bob", "phone")
	before := counters()
	for range 2 {
		if err := f.n.Handle(t.Context(), ev); err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) != 0 {
		t.Fatalf("receiver refused: %v", h.bad)
	}
	if len(h.got) != 1 || h.keys[0] != "dm:alice:bob/7/bob" {
		t.Fatalf("webhook calls: got %+v keys %v, want one for dm:alice:bob/7/bob", h.got, h.keys)
	}
	if e := h.got[0]; e.Recipient != "bob" || e.Seq != 7 || e.Preview != "see you at 6" || len(e.Devices) != 1 || e.Devices[0] != "phone" {
		t.Fatalf("webhook body: got %+v", e)
	}
	wantDelta(t, before, map[string]uint64{"push/delivered": 1, "push/duplicate": 1, "hook/delivered": 1, "hook/duplicate": 1})
}

func TestNotifyAndRun(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.QueueSize, c.Workers = 2, 2 })
	f.subscribe(t, "bob", "phone")
	for i := range 3 {
		e := ev
		e.Seq = uint64(10 + i)
		err := f.n.Notify(t.Context(), e)
		if want := i == 2; errors.Is(err, ErrQueueFull) != want {
			t.Fatalf("Notify %d: got %v, want queue full %v", i, err, want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.n.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	if _, err := f.push.WaitFor(wctx, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	pub, priv, _ := GenerateVAPID()
	otherPub, _, _ := GenerateVAPID()
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none means valid
	}{
		{"default", func(*Config) {}, nil},
		{"zero means defaults", func(c *Config) { *c = Config{} }, nil},
		{"web push", func(c *Config) { c.VAPIDPrivateKey, c.VAPIDSubject = priv, "mailto:a@b.c" }, nil},
		{"web push with public key", func(c *Config) {
			c.VAPIDPublicKey, c.VAPIDPrivateKey, c.VAPIDSubject = pub, priv, "https://b.c/contact"
		}, nil},
		{"webhook", func(c *Config) { c.WebhookURL, c.WebhookSecret = "https://h.example/x", "0123456789abcdef" }, nil},
		{"mismatched keys", func(c *Config) { c.VAPIDPublicKey, c.VAPIDPrivateKey, c.VAPIDSubject = otherPub, priv, "mailto:a@b.c" }, []string{"notifier.vapid_private_key"}},
		{"public key alone", func(c *Config) { c.VAPIDPublicKey = pub }, []string{"notifier.vapid_private_key: required"}},
		{"no subject", func(c *Config) { c.VAPIDPrivateKey = priv }, []string{"notifier.vapid_subject"}},
		{"bad private key", func(c *Config) { c.VAPIDPrivateKey, c.VAPIDSubject = "xx", "mailto:a@b.c" }, []string{"notifier.vapid_private_key"}},
		{"short secret", func(c *Config) { c.WebhookURL, c.WebhookSecret = "https://h.example/x", "short" }, []string{"notifier.webhook_url"}},
		{"secret alone", func(c *Config) { c.WebhookSecret = "0123456789abcdef" }, []string{"notifier.webhook_url: required"}},
		{"everything wrong at once", func(c *Config) {
			c.TTL, c.Attempts, c.Backoff, c.BackoffMax, c.HTTPTimeout, c.LedgerTTL, c.Workers, c.QueueSize = time.Millisecond, -1, -1, -2, -1, time.Second, -1, -1
		}, []string{"notifier.ttl", "notifier.attempts", "notifier.backoff:", "notifier.backoff_max", "notifier.http_timeout", "notifier.ledger_ttl", "notifier.workers", "notifier.queue_size"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: got nil, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("Validate: got %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	n := &Notifier{cfg: Config{Backoff: 200 * time.Millisecond, BackoffMax: 10 * time.Second}}
	tests := []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 100 * time.Millisecond, 200 * time.Millisecond},
		{1, 200 * time.Millisecond, 400 * time.Millisecond},
		{3, 800 * time.Millisecond, 1600 * time.Millisecond},
		{5, 3200 * time.Millisecond, 6400 * time.Millisecond},
		{6, 5 * time.Second, 10 * time.Second},
		{40, 5 * time.Second, 10 * time.Second},
	}
	for _, tc := range tests {
		for range 50 {
			if d := n.backoff(tc.attempt); d < tc.lo || d > tc.hi {
				t.Fatalf("backoff(%d): got %v, want in [%v, %v]", tc.attempt, d, tc.lo, tc.hi)
			}
		}
	}
}
