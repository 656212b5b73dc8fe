package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/notifier/webhook"
	"github.com/parley-chat/parley/notifier/webpush"
	"github.com/parley-chat/parley/storage"
)

// Store is what the notifier needs from storage: reading and dropping
// push subscriptions, and the push ledger (storage/contract.go says what
// each promises; every storage.Store has them). Errors other than from
// the context are treated as transient.
type Store interface {
	PushSubscriptions(ctx context.Context, user string) ([]record.PushSubscription, error)
	DeletePushSubscription(ctx context.Context, user, device string) error
	storage.PushLedger
}

// ErrQueueFull is returned by Notify when the queue is full; the event is
// dropped and counted.
var ErrQueueFull = errors.New("notifier: queue full, event dropped")

// Push results, the values of the result label.
const (
	resultDelivered = "delivered" // the push service or webhook took it
	resultGone      = "gone"      // 404/410: subscription deleted
	resultRetry     = "retry"     // still retryable after every attempt: Handle fails
	resultFailed    = "failed"    // a permanent failure: not retried
	resultDuplicate = "duplicate" // the ledger says it was pushed already
	resultLost      = "lost"      // claimed by an attempt that never finished (see doc.go)
)

func pushes(result string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`parley_notifier_pushes_total{result="` + result + `"}`)
}

func webhooks(result string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`parley_notifier_webhooks_total{result="` + result + `"}`)
}

var (
	pushSeconds     = metrics.NewHistogram(`parley_notifier_push_seconds`)
	webhookSeconds  = metrics.NewHistogram(`parley_notifier_webhook_seconds`)
	eventsHandled   = metrics.NewCounter(`parley_notifier_events_total`)
	eventsFailed    = metrics.NewCounter(`parley_notifier_events_failed_total`)
	droppedFull     = metrics.NewCounter(`parley_notifier_events_dropped_total{reason="queue_full"}`)
	droppedShutdown = metrics.NewCounter(`parley_notifier_events_dropped_total{reason="shutdown"}`)
	attemptsRetried = metrics.NewCounter(`parley_notifier_retries_total`)
)

// Notifier turns push events into Web Push messages and webhook calls.
// Handle, Notify and VAPIDPublicKey are safe for concurrent use; Run is
// called once.
type Notifier struct {
	cfg   Config
	store Store
	log   *slog.Logger
	push  *webpush.Sender // nil: Web Push off
	vapid string          // public key, "" when off
	hook  *webhook.Client // nil: webhook off
	queue chan record.PushEvent

	sleep func(ctx context.Context, d time.Duration) error // injectable for tests
}

// Option adjusts New.
type Option func(*options)

type options struct {
	client *http.Client
}

// WithHTTPClient makes the notifier send through c (for example
// pushtest.Server.Client() for a TLS test service). Its Timeout is
// replaced by Config.HTTPTimeout when zero.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// New returns a notifier. cfg is validated; zero fields take their
// defaults. log nil means slog.Default().
func New(cfg Config, store Store, log *slog.Logger, opts ...Option) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create notifier: %w", err)
	}
	if store == nil {
		return nil, errors.New("cannot create notifier: no store")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "notifier")
	var o options
	for _, f := range opts {
		f(&o)
	}
	client := o.client
	if client == nil {
		client = &http.Client{}
	}
	if client.Timeout == 0 {
		c := *client
		c.Timeout = cfg.HTTPTimeout
		client = &c
	}
	n := &Notifier{cfg: cfg, store: store, log: log, queue: make(chan record.PushEvent, cfg.QueueSize), sleep: sleepCtx}
	if cfg.WebPush() {
		v, err := webpush.ParseVAPID(cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey)
		if err != nil {
			return nil, fmt.Errorf("cannot create notifier: %w", err)
		}
		if n.push, err = webpush.NewSender(v, cfg.VAPIDSubject, client); err != nil {
			return nil, fmt.Errorf("cannot create notifier: %w", err)
		}
		n.vapid = v.PublicKey()
	}
	if cfg.Webhook() {
		h, err := webhook.New(cfg.WebhookURL, cfg.WebhookSecret, client)
		if err != nil {
			return nil, fmt.Errorf("cannot create notifier: %w", err)
		}
		n.hook = h
	}
	if n.push == nil && n.hook == nil {
		log.Warn("neither web push (notifier.vapid_private_key) nor a webhook (notifier.webhook_url) is configured: push events are counted and dropped")
	}
	return n, nil
}

// VAPIDPublicKey returns the public key browsers subscribe with (for
// logic's GET /v1/push/vapid), or "" when Web Push is off.
func (n *Notifier) VAPIDPublicKey() string { return n.vapid }

// Notify queues ev for Run without blocking: the in-process entry point
// (standalone; logic.Notifier). A full queue drops the event, counts it
// and returns ErrQueueFull. Safe for concurrent use.
func (n *Notifier) Notify(_ context.Context, ev record.PushEvent) error {
	select {
	case n.queue <- ev:
		return nil
	default:
		droppedFull.Inc()
		return ErrQueueFull
	}
}

// Run handles queued events with Config.Workers workers until ctx is
// done, then returns nil; events still queued are dropped and counted
// (reason="shutdown"), and deliveries in flight are abandoned between
// attempts. Call once.
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range n.cfg.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-n.queue:
					if err := n.Handle(ctx, ev); err != nil && ctx.Err() == nil {
						n.log.Warn("push event not fully delivered", "user_id", ev.Recipient, "chat_id", ev.ChatID, "seq", ev.Seq, "err", err)
					}
				}
			}
		})
	}
	wg.Wait()
	for {
		select {
		case <-n.queue:
			droppedShutdown.Inc()
		default:
			return nil
		}
	}
}

// payload is the decrypted Web Push message (docs/protocol.md).
type payload struct {
	Chat    string `json:"chat"`
	Seq     uint64 `json:"seq"`
	Sender  string `json:"sender"`
	Preview string `json:"preview,omitempty"`
	TS      int64  `json:"ts"`
}

// Ledger keys. A device push claims deviceKey; when its attempts are over
// (whatever the outcome) it also marks doneKey. The webhook claims
// hookKey. Chat ids start with "g:" or "dm:", so the prefixes never
// collide with a device key.
func deviceKey(ev record.PushEvent, device string) string {
	return ev.ChatID + "/" + strconv.FormatUint(ev.Seq, 10) + "/" + ev.Recipient + "/" + device
}

func doneKey(claim string) string { return "done:" + claim }

// deliveryKey names an event for the webhook's X-Parley-Delivery.
func deliveryKey(ev record.PushEvent) string {
	return ev.ChatID + "/" + strconv.FormatUint(ev.Seq, 10) + "/" + ev.Recipient
}

// Handle delivers ev: a Web Push message to each of the recipient's
// subscribed devices and, if configured, one webhook call, in parallel.
// Each delivery is claimed in the push ledger first, so a redelivered or
// duplicated event pushes nothing again (at most once per device; see
// doc.go). It returns an error only when some delivery is still retryable
// after every attempt, or when the store cannot be read (nothing was
// sent then). Safe for concurrent use.
func (n *Notifier) Handle(ctx context.Context, ev record.PushEvent) error {
	eventsHandled.Inc()
	if ev.Recipient == "" || ev.ChatID == "" {
		n.log.Warn("push event without recipient or chat dropped", "chat_id", ev.ChatID, "user_id", ev.Recipient)
		return nil
	}
	if n.push == nil && n.hook == nil {
		return nil
	}
	subs, err := n.store.PushSubscriptions(ctx, ev.Recipient)
	if err != nil {
		eventsFailed.Inc()
		return fmt.Errorf("cannot read push subscriptions of %s: %w", ev.Recipient, err)
	}
	p := payload{Chat: ev.ChatID, Seq: ev.Seq, Sender: ev.Sender, TS: ev.TS}
	if n.cfg.Preview {
		p.Preview = ev.Preview
	}
	body, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("cannot encode push payload: %w", err)
	}
	errs := make([]error, len(subs)+1)
	var wg sync.WaitGroup
	if n.push != nil {
		for i, sub := range subs {
			wg.Go(func() { errs[i] = n.pushDevice(ctx, ev, sub, body) })
		}
	}
	if n.hook != nil {
		devices := make([]string, 0, len(subs))
		for _, s := range subs {
			devices = append(devices, s.Device)
		}
		wg.Go(func() { errs[len(subs)] = n.callWebhook(ctx, ev, devices) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		eventsFailed.Inc()
		return err
	}
	return nil
}

// claim takes key in the ledger. When it was taken already it checks the
// done marker: absent means the earlier claim never finished (a crash
// between claim and send, or an attempt still in flight elsewhere), which
// is logged and counted as lost, once.
func (n *Notifier) claim(ctx context.Context, key string, count func(string) *metrics.Counter) (bool, error) {
	first, err := n.store.MarkPushed(ctx, key, n.cfg.LedgerTTL)
	if err != nil || first {
		return first, err
	}
	unfinished, err := n.store.MarkPushed(ctx, doneKey(key), n.cfg.LedgerTTL)
	switch {
	case err != nil:
		n.log.Warn("cannot check push ledger", "key", key, "err", err)
	case unfinished:
		count(resultLost).Inc()
		n.log.Warn("push claimed earlier but never finished: lost unless still in flight elsewhere", "key", key)
		return false, nil
	}
	count(resultDuplicate).Inc()
	return false, nil
}

// finish marks the claim's attempts as over. A done ctx (shutdown) leaves
// it unmarked, which makes the abandoned push show as lost on redelivery.
func (n *Notifier) finish(ctx context.Context, key string) {
	if ctx.Err() != nil {
		return
	}
	if _, err := n.store.MarkPushed(ctx, doneKey(key), n.cfg.LedgerTTL); err != nil {
		n.log.Warn("cannot mark push finished", "key", key, "err", err)
	}
}

func (n *Notifier) pushDevice(ctx context.Context, ev record.PushEvent, sub record.PushSubscription, body []byte) error {
	key := deviceKey(ev, sub.Device)
	first, err := n.claim(ctx, key, pushes)
	if err != nil {
		pushes(resultRetry).Inc()
		return fmt.Errorf("cannot claim push %s: %w", key, err)
	}
	if !first {
		return nil
	}
	msg := webpush.Message{Payload: body, TTL: n.cfg.TTL, Urgency: webpush.UrgencyHigh}
	var res webpush.Result
	err = n.retry(ctx, func() (bool, time.Duration) {
		start := time.Now()
		res = n.push.Send(ctx, sub, msg)
		pushSeconds.UpdateDuration(start)
		return res.Outcome == webpush.Retryable, res.RetryAfter
	})
	n.finish(ctx, key)
	if err != nil { // ctx done between attempts
		pushes(resultRetry).Inc()
		return fmt.Errorf("cannot push %s: %w", key, err)
	}
	switch res.Outcome {
	case webpush.Delivered:
		pushes(resultDelivered).Inc()
		return nil
	case webpush.Gone:
		pushes(resultGone).Inc()
		n.deleteGone(ctx, sub, res)
		return nil
	case webpush.Permanent:
		pushes(resultFailed).Inc()
		n.log.Warn("push failed permanently", "user_id", sub.User, "device", sub.Device, "status", res.Status, "err", res.Err)
		return nil
	}
	pushes(resultRetry).Inc()
	return fmt.Errorf("cannot push %s after %d attempts: %w", key, n.cfg.Attempts, res.Err)
}

// deleteGone deletes a subscription its push service called gone, unless
// the device registered a new endpoint meanwhile.
func (n *Notifier) deleteGone(ctx context.Context, sub record.PushSubscription, res webpush.Result) {
	subs, err := n.store.PushSubscriptions(ctx, sub.User)
	if err != nil {
		n.log.Warn("cannot re-read push subscriptions to delete a gone one", "user_id", sub.User, "device", sub.Device, "err", err)
		return
	}
	for _, s := range subs {
		if s.Device == sub.Device && s.Endpoint != sub.Endpoint {
			return // replaced meanwhile
		}
	}
	if err := n.store.DeletePushSubscription(ctx, sub.User, sub.Device); err != nil {
		n.log.Warn("cannot delete gone push subscription", "user_id", sub.User, "device", sub.Device, "err", err)
		return
	}
	n.log.Info("push subscription gone, deleted", "user_id", sub.User, "device", sub.Device, "status", res.Status)
}

func (n *Notifier) callWebhook(ctx context.Context, ev record.PushEvent, devices []string) error {
	key := deliveryKey(ev)
	claimKey := "hook:" + key
	first, err := n.claim(ctx, claimKey, webhooks)
	if err != nil {
		webhooks(resultRetry).Inc()
		return fmt.Errorf("cannot claim webhook %s: %w", key, err)
	}
	if !first {
		return nil
	}
	if !n.cfg.Preview {
		ev.Preview = ""
	}
	body := webhook.FromPushEvent(ev, devices)
	var res webhook.Result
	err = n.retry(ctx, func() (bool, time.Duration) {
		start := time.Now()
		res = n.hook.Send(ctx, key, body)
		webhookSeconds.UpdateDuration(start)
		return res.Outcome == webhook.Retryable, res.RetryAfter
	})
	n.finish(ctx, claimKey)
	switch {
	case err != nil:
		webhooks(resultRetry).Inc()
		return fmt.Errorf("cannot call webhook for %s: %w", key, err)
	case res.Outcome == webhook.Delivered:
		webhooks(resultDelivered).Inc()
		return nil
	case res.Outcome == webhook.Permanent:
		webhooks(resultFailed).Inc()
		n.log.Warn("webhook failed permanently", "key", key, "status", res.Status, "err", res.Err)
		return nil
	}
	webhooks(resultRetry).Inc()
	return fmt.Errorf("cannot call webhook for %s after %d attempts: %w", key, n.cfg.Attempts, res.Err)
}

// retry calls attempt up to Config.Attempts times while it reports
// retryable, sleeping the backoff (or the Retry-After, if longer) between
// tries. It returns an error only when ctx ends during a wait.
func (n *Notifier) retry(ctx context.Context, attempt func() (retryable bool, retryAfter time.Duration)) error {
	for i := range n.cfg.Attempts {
		if i > 0 {
			attemptsRetried.Inc()
		}
		again, after := attempt()
		if !again || i == n.cfg.Attempts-1 {
			return nil
		}
		if err := n.sleep(ctx, max(n.backoff(i), min(after, MaxRetryAfter))); err != nil {
			return err
		}
	}
	return nil
}

// backoff returns the wait after failed attempt i (0-based): Backoff
// doubled i times, capped at BackoffMax, jittered uniformly in [d/2, d].
func (n *Notifier) backoff(i int) time.Duration {
	d := n.cfg.Backoff
	for range i {
		if d >= n.cfg.BackoffMax/2 {
			d = n.cfg.BackoffMax
			break
		}
		d *= 2
	}
	d = min(d, n.cfg.BackoffMax)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
