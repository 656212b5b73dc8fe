// Package notifier is the push tier: it turns record.PushEvents (a message
// stored for a recipient with no online device) into Web Push messages to
// each of the recipient's subscribed devices (notifier/webpush: browsers
// and UnifiedPush distributors) and, if configured, one signed webhook
// call per event (notifier/webhook).
//
// In a fleet the events come from Kafka: the consumer calls Handle per
// event and dead-letters an event whose Handle returns an error. In
// standalone the logic tier calls Notify (it satisfies logic.Notifier),
// which queues the event for the workers of Run. Wiring:
//
//	n, err := notifier.New(cfg.Notifier, store, log)  // store: a storage.Store
//	svc.SetNotifier(n)                                 // standalone
//	svc.SetVAPIDPublicKey(n.VAPIDPublicKey())          // GET /v1/push/vapid
//	go n.Run(ctx)
//
// # Delivery guarantee: at most once per device, losses visible
//
// For each subscription Handle first claims the ledger key
// "<chat>/<seq>/<user>/<device>" (Store.MarkPushed, kept Config.LedgerTTL)
// and sends only if it was first; the webhook claims "hook:<chat>/<seq>/
// <user>". Claiming before sending makes a push at most once: a
// redelivered Kafka event, a duplicate Handle, or two notifier nodes racing
// on one event push nothing twice, which matters because a duplicate push
// is a second buzz on someone's phone. The price is that a crash between
// the claim and the push service's answer loses that push. It is not
// hidden: when a device's attempts are over (whatever the outcome) the
// notifier also marks "done:<key>". A later handling of the same event
// that finds the claim taken checks that marker; if it was missing, the
// earlier attempt never finished, and the push is counted as
// result="lost" and logged (once). A shutdown mid-retry leaves the marker
// unset on purpose, so the abandoned push shows the same way on
// redelivery. (A duplicate racing an attempt still in flight elsewhere is
// also reported as lost: the log says so.) Claim-after-send would give
// at-least-once instead, with duplicates after every crash or redelivery;
// for wake-up notifications whose message the client fetches anyway, a
// rare visible loss is the better trade.
//
// Retries happen inside one Handle: up to Config.Attempts tries per device
// with exponential backoff (Config.Backoff doubling to Config.BackoffMax,
// jittered, lengthened by Retry-After up to MaxRetryAfter). A device still
// retryable after that makes Handle return an error, so the Kafka consumer
// dead-letters the event; its claim stays taken, so replaying the dead
// letter does not push (the event is a record of the loss, not a retry
// queue). 404/410 from a push service delete the subscription (unless the
// device registered a new endpoint meanwhile); other 4xx are permanent and
// logged.
//
// Metrics: parley_notifier_pushes_total{result=delivered|gone|retry|
// failed|duplicate|lost}, parley_notifier_push_seconds (one HTTP
// attempt), the same for webhooks (parley_notifier_webhooks_total,
// parley_notifier_webhook_seconds), parley_notifier_events_total,
// parley_notifier_events_failed_total, parley_notifier_retries_total and
// parley_notifier_events_dropped_total{reason=queue_full|shutdown}.
//
// # Concurrency
//
// Handle, Notify and VAPIDPublicKey are safe for concurrent use; Handle
// pushes to the devices of one event in parallel. Run is called once; it
// runs Config.Workers workers over a bounded queue (Config.QueueSize)
// that Notify never blocks on.
//
// Config also holds the metrics bearer token of `parley notifier`'s HTTP
// listener (required beyond loopback; LoadMetricsToken).
//
// Tier: notifier. Imports internal/record, internal/adminauth, storage
// (the contract's roles, no backend) and its own subpackages; the store
// comes in through the Store interface.
package notifier
