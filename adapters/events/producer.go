package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Errors of Publish.
var (
	// ErrFull: Config.MaxBufferedRecords records are waiting for the
	// brokers (usually: the brokers are unreachable or slow).
	ErrFull = errors.New("events: too many records pending (max_buffered_records)")
	// ErrClosed: the producer was closed.
	ErrClosed = errors.New("events: producer closed")
)

// Producer publishes push events to Config.Topic: idempotent, acks=all,
// keyed by recipient. Its methods are safe for concurrent use.
type Producer struct {
	cfg     Config
	cl      *kgo.Client
	log     *slog.Logger
	max     int64
	pending atomic.Int64 // records handed to the client and not yet promised
	errLog  throttle
	promise func(*kgo.Record, error) // p.onDelivery, bound once

	mu     sync.RWMutex // guards the following; Publish holds it shared
	closed bool
}

// NewProducer validates cfg, creates the client and, when
// cfg.CreateTopics, creates the topics (which needs the brokers; without
// it NewProducer does no I/O and the client connects on first use).
func NewProducer(ctx context.Context, cfg Config, log *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "events.producer", "topic", cfg.Topic)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.DefaultProduceTopic(cfg.Topic),
		// Idempotent writes are franz-go's default; acks=all is what
		// idempotence requires, spelled out here.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Key hash (murmur2, as the Java client) for keyed records: one
		// recipient, one partition.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		// Our own counter enforces MaxBufferedRecords without blocking;
		// the client's limit sits above it so the client never blocks or
		// rejects first (promises can lag our counter by a few records).
		kgo.MaxBufferedRecords(2*cfg.MaxBufferedRecords+1000),
		kgo.WithLogger(kgoLogger{log}),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot create kafka client: %w", err)
	}
	if cfg.CreateTopics {
		if err := ensureTopics(ctx, cl, cfg, log); err != nil {
			cl.Close()
			return nil, err
		}
	}
	p := &Producer{
		cfg:    cfg,
		cl:     cl,
		log:    log,
		max:    int64(cfg.MaxBufferedRecords),
		errLog: throttle{interval: 10 * time.Second},
	}
	p.promise = p.onDelivery
	return p, nil
}

// Publish queues ev for Config.Topic, keyed by ev.Recipient, and returns
// without waiting for the brokers. It fails with ErrFull when
// Config.MaxBufferedRecords records are pending, with ErrClosed after Close,
// and with ctx's error if ctx has already ended. Once queued, the record no
// longer depends on ctx (callers commonly cancel it on return): it is
// delivered or, after Config.ProduceTimeout, dropped, logged (throttled)
// and counted in parley_events_publish_errors_total. Safe for concurrent
// use.
func (p *Producer) Publish(ctx context.Context, ev record.PushEvent) error {
	if err := ctx.Err(); err != nil {
		publishErrors[reasonCanceled].Inc()
		return err
	}
	value, err := encode(ev)
	if err != nil {
		publishErrors[reasonEncode].Inc()
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		publishErrors[reasonClosed].Inc()
		return ErrClosed
	}
	if p.pending.Add(1) > p.max {
		p.pending.Add(-1)
		publishErrors[reasonFull].Inc()
		return ErrFull
	}
	r := &kgo.Record{Key: []byte(ev.Recipient), Value: value, Topic: p.cfg.Topic}
	if ctx.Done() != nil {
		// The client fails a record whose ctx ends before it is sent.
		ctx = context.WithoutCancel(ctx)
	}
	p.cl.TryProduce(ctx, r, p.promise)
	return nil
}

// Notify is Publish under the name of the logic tier's Notifier interface.
func (p *Producer) Notify(ctx context.Context, ev record.PushEvent) error {
	return p.Publish(ctx, ev)
}

// onDelivery runs (serially, on the client's promise goroutine) once per
// record: acknowledged or failed.
func (p *Producer) onDelivery(r *kgo.Record, err error) {
	p.pending.Add(-1)
	if err == nil {
		published.Inc()
		produceDuration.UpdateDuration(r.Timestamp)
		return
	}
	reason := reasonBroker
	switch {
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries), errors.Is(err, context.DeadlineExceeded):
		reason = reasonTimeout
	case errors.Is(err, kgo.ErrClientClosed):
		reason = reasonClosed
	case errors.Is(err, kgo.ErrMaxBuffered):
		reason = reasonFull
	case errors.Is(err, context.Canceled):
		reason = reasonCanceled
	}
	publishErrors[reason].Inc()
	if ok, suppressed := p.errLog.allow(); ok {
		p.log.Warn("cannot deliver push event; dropped", "reason", reason, "user_id", string(r.Key),
			"suppressed", suppressed, "err", err)
	}
}

// Pending returns the number of published records not yet acknowledged or
// failed. Safe for concurrent use.
func (p *Producer) Pending() int { return int(p.pending.Load()) }

// Flush waits until every record published before the call is
// acknowledged or failed, or ctx ends. Safe for concurrent use.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.cl.Flush(ctx); err != nil {
		return fmt.Errorf("cannot flush push events: %w", err)
	}
	return nil
}

// Close stops Publish (it returns ErrClosed from now on), flushes until
// ctx ends, then closes the client; records still pending then are dropped
// and counted with reason "closed". Safe to call more than once.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.Flush(ctx)
	if err != nil {
		p.log.Warn("closing with push events pending; dropping them", "pending", p.Pending(), "err", err)
	}
	p.cl.Close()
	return err
}
