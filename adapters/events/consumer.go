package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler handles one push event. An error makes Consume retry it (with
// backoff) and, after Config.MaxAttempts, send it to the dead-letter topic.
// It may be called again for an event it already handled (at-least-once).
type Handler func(ctx context.Context, ev record.PushEvent) error

// Dead-letter reasons (header "reason").
const (
	dlqHandler = "handler" // MaxAttempts handler attempts failed
	dlqDecode  = "decode"  // the value is not a push event
)

// maxPollRecords bounds the records one poll hands to the handlers.
const maxPollRecords = 1000

// commitTimeout bounds the final commit after ctx ended.
const commitTimeout = 10 * time.Second

// Consume runs one member of consumer group cfg.Group on cfg.Topic until
// ctx ends, calling handle for every event; it returns nil then, and an
// error only when it cannot start or the client fails for good.
//
// At least once: a record's offset is committed only after handle
// succeeded for it or it went to cfg.DLQTopic. A failing handle is retried
// with exponential backoff (cfg.RetryBackoff doubling to
// cfg.RetryBackoffMax, jittered) up to cfg.MaxAttempts attempts; a panic
// counts as a failure. Undecodable records go to the dead-letter topic at
// once. Records of one partition are handled in order, one at a time;
// partitions are handled concurrently. A rebalance waits until the records
// of the current poll are done and committed, so handle should return well
// within the group's rebalance timeout (60s).
func Consume(ctx context.Context, cfg Config, handle Handler, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if handle == nil {
		return errors.New("cannot consume push events: nil handler")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "events.consumer", "topic", cfg.Topic, "group", cfg.Group)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		// A new group starts at the oldest event: events published
		// before the first notifier started are still delivered.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// The dead-letter producer: idempotent, acks=all.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
		kgo.WithLogger(kgoLogger{log}),
	)
	if err != nil {
		return fmt.Errorf("cannot create kafka client: %w", err)
	}
	c := &consumer{cfg: cfg, cl: cl, handle: handle, log: log, errLog: throttle{interval: 10 * time.Second}}
	defer c.close()
	if cfg.CreateTopics {
		if err := ensureTopics(ctx, cl, cfg, log); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return c.run(ctx)
}

// consumer is the state of one Consume call.
type consumer struct {
	cfg    Config
	cl     *kgo.Client
	handle Handler
	log    *slog.Logger
	errLog throttle
}

func (c *consumer) close() {
	c.cl.AllowRebalance()
	c.cl.Close() // leaves the group, so a restart rejoins at once
}

func (c *consumer) run(ctx context.Context) error {
	for {
		fetches := c.cl.PollRecords(ctx, maxPollRecords)
		if ctx.Err() != nil {
			// Records fetched but not handled stay uncommitted.
			return nil
		}
		if fetches.IsClientClosed() {
			return errors.New("cannot consume push events: client closed")
		}
		failed := false
		fetches.EachError(func(topic string, partition int32, err error) {
			failed = true
			if ok, suppressed := c.errLog.allow(); ok {
				c.log.Warn("cannot fetch push events", "partition", partition, "suppressed", suppressed, "err", err)
			}
		})
		if failed && fetches.NumRecords() == 0 {
			// Do not spin on a failing cluster.
			sleep(ctx, 250*time.Millisecond)
		}
		done := c.handlePoll(ctx, fetches)
		if len(done) > 0 {
			// After ctx ended, still commit what was handled: it must
			// not be handled again by the next member.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
			if err := c.cl.CommitRecords(cctx, done...); err != nil {
				// The records come again to this or another member:
				// duplicates, never loss.
				c.log.Warn("cannot commit push event offsets; they will be redelivered", "records", len(done), "err", err)
			}
			cancel()
		}
		c.cl.AllowRebalance()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// handlePoll handles the records of one poll, one goroutine per partition,
// and returns, per partition, the last record finished (handled or dead
// lettered); a partition stops at its first unfinished record when ctx
// ends.
func (c *consumer) handlePoll(ctx context.Context, fetches kgo.Fetches) []*kgo.Record {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // guards done
		done []*kgo.Record
	)
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last *kgo.Record
			for _, r := range p.Records {
				if !c.handleRecord(ctx, r) {
					break
				}
				last = r
			}
			if last != nil {
				mu.Lock()
				done = append(done, last)
				mu.Unlock()
			}
		}()
	})
	wg.Wait()
	return done
}

// handleRecord handles one record until it succeeded or went to the
// dead-letter topic (true), or ctx ended first (false).
func (c *consumer) handleRecord(ctx context.Context, r *kgo.Record) bool {
	ev, err := decode(r.Value)
	if err != nil {
		c.log.Warn("undecodable push event; dead-lettering it", "partition", r.Partition, "offset", r.Offset, "err", err)
		return c.deadLetter(ctx, r, dlqDecode, 0, err)
	}
	var attempt int
	for attempt = 1; ; attempt++ {
		err = c.call(ctx, ev)
		if err == nil {
			consumed.Inc()
			return true
		}
		if ctx.Err() != nil {
			return false // shutting down: not the event's fault
		}
		handlerErrors.Inc()
		if attempt >= c.cfg.MaxAttempts {
			break
		}
		if ok, suppressed := c.errLog.allow(); ok {
			c.log.Warn("push event handler failed; retrying", "user_id", ev.Recipient, "chat_id", ev.ChatID,
				"seq", ev.Seq, "attempt", attempt, "suppressed", suppressed, "err", err)
		}
		if !sleep(ctx, backoff(c.cfg, attempt)) {
			return false
		}
	}
	c.log.Warn("push event handler failed for good; dead-lettering it", "user_id", ev.Recipient,
		"chat_id", ev.ChatID, "seq", ev.Seq, "attempts", attempt, "err", err)
	return c.deadLetter(ctx, r, dlqHandler, attempt, err)
}

// call runs the handler, turning a panic into an error.
func (c *consumer) call(ctx context.Context, ev record.PushEvent) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("push event handler panicked: %v", v)
		}
	}()
	return c.handle(ctx, ev)
}

// deadLetter copies r to the dead-letter topic, retrying until the brokers
// acknowledge it (true) or ctx ends (false).
func (c *consumer) deadLetter(ctx context.Context, r *kgo.Record, reason string, attempts int, cause error) bool {
	dl := &kgo.Record{
		Topic: c.cfg.DLQTopic,
		Key:   r.Key,
		Value: r.Value,
		Headers: []kgo.RecordHeader{
			{Key: "error", Value: []byte(cause.Error())},
			{Key: "reason", Value: []byte(reason)},
			{Key: "attempts", Value: []byte(strconv.Itoa(attempts))},
			{Key: "topic", Value: []byte(r.Topic)},
			{Key: "partition", Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
			{Key: "offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
		},
	}
	for try := 1; ; try++ {
		err := c.cl.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			deadLettered.Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if ok, suppressed := c.errLog.allow(); ok {
			c.log.Error("cannot write to the dead-letter topic; retrying", "dlq_topic", c.cfg.DLQTopic,
				"partition", r.Partition, "offset", r.Offset, "try", try, "suppressed", suppressed, "err", err)
		}
		if !sleep(ctx, backoff(c.cfg, try)) {
			return false
		}
	}
}

// backoff returns the delay before retry n (n >= 1): RetryBackoff doubled
// n-1 times, capped at RetryBackoffMax, then jittered by ±25%.
func backoff(cfg Config, n int) time.Duration {
	d := cfg.RetryBackoff
	for i := 1; i < n && d < cfg.RetryBackoffMax; i++ {
		d *= 2
	}
	d = min(d, cfg.RetryBackoffMax)
	if d <= 0 {
		return 0
	}
	jitter := time.Duration(rand.Int64N(int64(d)/2+1)) - d/4
	return d + jitter
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
