package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Integration tests: they run against the broker named by
// PARLEY_KAFKA_BROKERS (host:port, comma-separated) and skip without it:
//
//	bash scripts/kafka.sh start && export $(bash scripts/kafka.sh env)
//	go test -race ./adapters/events/...
//
// Every test uses its own topics and group, and deletes its topics at the
// end. One broker tests our producer, consumer and dead-letter logic, not
// Kafka's replication.

// waitLimit bounds every wait for the broker; it is a failure bound for a
// hung test, not a performance assertion.
const waitLimit = 90 * time.Second

func brokers(t testing.TB) []string {
	t.Helper()
	v := os.Getenv("PARLEY_KAFKA_BROKERS")
	if v == "" {
		t.Skip("PARLEY_KAFKA_BROKERS not set; start a broker with scripts/kafka.sh start")
	}
	return strings.Split(v, ",")
}

func testLogger() *slog.Logger {
	// Not t.Log: the client's goroutines may log after the test ended.
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testConfig returns a config on fresh topics and a fresh group, and
// deletes the topics when the test ends.
func testConfig(t testing.TB, partitions int) Config {
	t.Helper()
	bs := brokers(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r == '/' {
			return '.'
		}
		if r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, t.Name())
	id := fmt.Sprintf("parley-test.%s.%s", name, hex.EncodeToString(b[:]))
	cfg := Default()
	cfg.Brokers = bs
	cfg.Topic = id
	cfg.DLQTopic = id + ".dlq"
	cfg.Group = id
	cfg.Partitions = partitions
	cfg.ReplicationFactor = 1
	cfg.ProduceTimeout = 30 * time.Second
	cfg.RetryBackoff = 5 * time.Millisecond
	cfg.RetryBackoffMax = 20 * time.Millisecond
	t.Cleanup(func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(bs...))
		if err != nil {
			return
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		adm := kadm.NewClient(cl)
		_, _ = adm.DeleteGroups(ctx, cfg.Group)
		_, _ = adm.DeleteTopics(ctx, cfg.Topic, cfg.DLQTopic)
	})
	return cfg
}

func newProducer(t testing.TB, cfg Config) *Producer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	p, err := NewProducer(ctx, cfg, testLogger())
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// publishAll publishes evs and waits until the broker acknowledged them.
func publishAll(t testing.TB, p *Producer, evs []record.PushEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, ev := range evs {
		if err := p.Publish(ctx, ev); err != nil {
			t.Fatalf("Publish %+v: %v", ev, err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// events returns perUser events for each of users recipients, seq 1..perUser
// per recipient, interleaved across recipients.
func events(users, perUser int) []record.PushEvent {
	var evs []record.PushEvent
	for s := 1; s <= perUser; s++ {
		for u := range users {
			r := "user-" + strconv.Itoa(u)
			evs = append(evs, record.PushEvent{Recipient: r, ChatID: "dm:" + r, Seq: uint64(s),
				Sender: "sender", Preview: "hello " + strconv.Itoa(s), TS: int64(s)})
		}
	}
	return evs
}

// readAll reads n records of topic from the start, without a group.
func readAll(t testing.TB, bs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bs...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("cannot create reader: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s before giving up", len(recs), n, topic)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Logf("fetch %s/%d: %v", topic, p, err) })
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// committed returns the group's committed offset per partition of topic.
func committed(t testing.TB, cfg Config) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatalf("cannot create admin client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, cfg.Group)
	if err != nil {
		t.Fatalf("FetchOffsets: %v", err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == cfg.Topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// consumer runs Consume in the background; stop cancels it and waits.
type runningConsumer struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startConsume(t testing.TB, cfg Config, h Handler) *runningConsumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rc := &runningConsumer{cancel: cancel, done: make(chan error, 1)}
	go func() { rc.done <- Consume(ctx, cfg, h, testLogger()) }()
	t.Cleanup(func() { rc.stop(t) })
	return rc
}

func (rc *runningConsumer) stop(t testing.TB) {
	t.Helper()
	rc.once.Do(func() {
		rc.cancel()
		select {
		case err := <-rc.done:
			if err != nil {
				t.Errorf("Consume: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatalf("Consume did not return within %s of cancel", waitLimit)
		}
	})
}

// collector records handled events and signals when it has want of them.
type collector struct {
	mu    sync.Mutex // guards the following
	evs   []record.PushEvent
	want  int
	full  chan struct{}
	limit int // > 0: calls past limit events block until ctx ends, then fail
}

func newCollector(want int) *collector {
	c := &collector{want: want, full: make(chan struct{})}
	if want == 0 {
		close(c.full)
	}
	return c
}

func (c *collector) handle(ctx context.Context, ev record.PushEvent) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && len(c.evs) >= c.limit {
		c.mu.Unlock()
		<-ctx.Done()
		c.mu.Lock()
		return ctx.Err()
	}
	c.evs = append(c.evs, ev)
	if len(c.evs) == c.want {
		close(c.full)
	}
	return nil
}

func (c *collector) wait(t testing.TB) []record.PushEvent {
	t.Helper()
	select {
	case <-c.full:
	case <-time.After(waitLimit):
		c.mu.Lock()
		n := len(c.evs)
		c.mu.Unlock()
		t.Fatalf("handled %d of %d events before giving up", n, c.want)
	}
	return c.snapshot()
}

func (c *collector) snapshot() []record.PushEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record.PushEvent(nil), c.evs...)
}

func TestPublishConsumeOrdered(t *testing.T) {
	const users, perUser = 12, 50
	cfg := testConfig(t, 6)
	p := newProducer(t, cfg)
	evs := events(users, perUser)
	publishAll(t, p, evs)

	// One recipient, one partition.
	recs := readAll(t, cfg.Brokers, cfg.Topic, len(evs))
	parts := map[string]int32{}
	used := map[int32]bool{}
	for _, r := range recs {
		k := string(r.Key)
		if prev, ok := parts[k]; ok && prev != r.Partition {
			t.Fatalf("recipient %s in partitions %d and %d", k, prev, r.Partition)
		}
		parts[k] = r.Partition
		used[r.Partition] = true
	}
	if len(parts) != users {
		t.Fatalf("got %d distinct keys, want %d", len(parts), users)
	}
	t.Logf("%d recipients over %d of %d partitions", users, len(used), cfg.Partitions)

	c := newCollector(len(evs))
	rc := startConsume(t, cfg, c.handle)
	got := c.wait(t)
	rc.stop(t)

	// Exactly once (a single stable member commits everything it
	// handled), in order per recipient.
	if after := c.snapshot(); len(after) != len(evs) {
		t.Fatalf("handled %d events, want exactly %d", len(after), len(evs))
	}
	next := map[string]uint64{}
	for _, ev := range got {
		if want := next[ev.Recipient] + 1; ev.Seq != want {
			t.Fatalf("recipient %s: got seq %d, want %d (order or duplicate)", ev.Recipient, ev.Seq, want)
		}
		next[ev.Recipient] = ev.Seq
	}
	for r, s := range next {
		if s != perUser {
			t.Fatalf("recipient %s: last seq %d, want %d", r, s, perUser)
		}
	}
	// Everything committed: the group's offsets are at the end of every
	// used partition.
	ends := map[int32]int64{}
	for _, r := range recs {
		ends[r.Partition] = max(ends[r.Partition], r.Offset+1)
	}
	offs := committed(t, cfg)
	for part, end := range ends {
		if offs[part] != end {
			t.Fatalf("partition %d: committed %d, want %d", part, offs[part], end)
		}
	}
}

func TestHandlerRetryThenSuccess(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.MaxAttempts = 5
	p := newProducer(t, cfg)
	ev := record.PushEvent{Recipient: "u1", ChatID: "c1", Seq: 1, Sender: "u2", Preview: "hi", TS: 1}
	publishAll(t, p, []record.PushEvent{ev})

	var (
		mu    sync.Mutex
		calls int
	)
	succeeded := make(chan struct{})
	rc := startConsume(t, cfg, func(_ context.Context, got record.PushEvent) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if got != ev {
			t.Errorf("handler got %+v, want %+v", got, ev)
		}
		if calls <= 2 {
			return fmt.Errorf("transient failure %d", calls)
		}
		if calls == 3 {
			close(succeeded)
		}
		return nil
	})
	select {
	case <-succeeded:
	case <-time.After(waitLimit):
		t.Fatal("handler never succeeded")
	}
	rc.stop(t)
	mu.Lock()
	if calls != 3 {
		t.Fatalf("handler called %d times, want 3", calls)
	}
	mu.Unlock()
	recs := readAll(t, cfg.Brokers, cfg.Topic, 1)
	if offs := committed(t, cfg); offs[recs[0].Partition] != recs[0].Offset+1 {
		t.Fatalf("committed %v, want partition %d at %d", offs, recs[0].Partition, recs[0].Offset+1)
	}
}

func TestDeadLetter(t *testing.T) {
	cfg := testConfig(t, 2)
	cfg.MaxAttempts = 3
	p := newProducer(t, cfg)
	ev := record.PushEvent{Recipient: "u1", ChatID: "c1", Seq: 7, Sender: "u2", Preview: "hi", TS: 1}
	publishAll(t, p, []record.PushEvent{ev})
	// An undecodable record, written around the producer.
	raw, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: cfg.Topic, Key: []byte("u2"), Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatalf("produce garbage: %v", err)
	}
	raw.Close()
	src := map[string]*kgo.Record{}
	for _, r := range readAll(t, cfg.Brokers, cfg.Topic, 2) {
		src[string(r.Key)] = r
	}

	var (
		mu    sync.Mutex
		calls int
	)
	rc := startConsume(t, cfg, func(context.Context, record.PushEvent) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return errors.New("webhook answered 500")
	})
	dead := readAll(t, cfg.Brokers, cfg.DLQTopic, 2)
	rc.stop(t)

	mu.Lock()
	if calls != cfg.MaxAttempts {
		t.Errorf("handler called %d times, want %d", calls, cfg.MaxAttempts)
	}
	mu.Unlock()
	for _, d := range dead {
		key := string(d.Key)
		s := src[key]
		if s == nil {
			t.Fatalf("dead letter with unknown key %q", key)
		}
		if string(d.Value) != string(s.Value) {
			t.Errorf("dead letter %s: value %q, want %q", key, d.Value, s.Value)
		}
		h := map[string]string{}
		for _, kv := range d.Headers {
			h[kv.Key] = string(kv.Value)
		}
		want := map[string]string{
			"topic":     cfg.Topic,
			"partition": strconv.Itoa(int(s.Partition)),
			"offset":    strconv.FormatInt(s.Offset, 10),
		}
		if key == "u1" {
			want["reason"], want["attempts"], want["error"] = "handler", "3", "webhook answered 500"
		} else {
			want["reason"], want["attempts"] = "decode", "0"
			if !strings.Contains(h["error"], "invalid push event") {
				t.Errorf("dead letter %s: error header %q, want a decode error", key, h["error"])
			}
		}
		for k, v := range want {
			if h[k] != v {
				t.Errorf("dead letter %s: header %s = %q, want %q", key, k, h[k], v)
			}
		}
	}
	offs := committed(t, cfg)
	for _, s := range src {
		if offs[s.Partition] < s.Offset+1 {
			t.Errorf("partition %d: committed %d, want >= %d (dead-lettered records are committed)", s.Partition, offs[s.Partition], s.Offset+1)
		}
	}
}

// TestRestartResumes stops a consumer half way and starts another in the
// same group. Nothing may be lost. Duplicates are allowed only for records
// the first consumer had not committed: the second may see a record only
// at or past the first's committed offset of its partition.
func TestRestartResumes(t *testing.T) {
	const users, perUser = 8, 40
	cfg := testConfig(t, 4)
	p := newProducer(t, cfg)
	evs := events(users, perUser)
	publishAll(t, p, evs)
	where := map[record.PushEvent]*kgo.Record{}
	for _, r := range readAll(t, cfg.Brokers, cfg.Topic, len(evs)) {
		ev, err := decode(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		where[ev] = r
	}

	// The first consumer handles half the events, then every further
	// call blocks until it is stopped and fails: those records stay
	// uncommitted.
	half := len(evs) / 2
	first := newCollector(half)
	first.limit = half
	rc1 := startConsume(t, cfg, first.handle)
	first.wait(t)
	rc1.stop(t)
	seen1 := first.snapshot()
	offs := committed(t, cfg)
	t.Logf("first consumer handled %d of %d; committed %v", len(seen1), len(evs), offs)

	seen := map[record.PushEvent]int{}
	for _, ev := range seen1 {
		seen[ev]++
	}
	rest := 0
	for _, ev := range evs {
		r := where[ev]
		if r.Offset >= offs[r.Partition] {
			rest++
		}
	}
	second := newCollector(rest)
	rc2 := startConsume(t, cfg, second.handle)
	seen2 := second.wait(t)
	rc2.stop(t)
	seen2 = append(seen2[:0:0], second.snapshot()...)

	dups := 0
	for _, ev := range seen2 {
		r := where[ev]
		if r.Offset < offs[r.Partition] {
			t.Errorf("second consumer got %+v at %d/%d, below the committed offset %d", ev, r.Partition, r.Offset, offs[r.Partition])
		}
		if seen[ev] > 0 {
			dups++
		}
		seen[ev]++
	}
	for _, ev := range evs {
		if seen[ev] == 0 {
			t.Errorf("event %+v lost", ev)
		}
	}
	t.Logf("second consumer handled %d; %d of them also handled by the first (uncommitted)", len(seen2), dups)
}

// TestPublishFullFast: with the brokers unreachable, Publish queues up to
// MaxBufferedRecords and then fails at once with ErrFull. Needs no broker.
func TestPublishFullFast(t *testing.T) {
	cfg := Default()
	cfg.Brokers = []string{"127.0.0.1:1"} // nothing listens on port 1
	cfg.CreateTopics = false
	cfg.MaxBufferedRecords = 5
	cfg.ProduceTimeout = time.Second
	ctx := context.Background()
	p, err := NewProducer(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	ev := record.PushEvent{Recipient: "u1", ChatID: "c", Seq: 1}
	for i := range cfg.MaxBufferedRecords {
		if err := p.Publish(ctx, ev); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	if err := p.Publish(ctx, ev); !errors.Is(err, ErrFull) {
		t.Fatalf("Publish beyond the buffer: got %v, want ErrFull", err)
	}
	if got := p.Pending(); got != cfg.MaxBufferedRecords {
		t.Fatalf("Pending: got %d, want %d", got, cfg.MaxBufferedRecords)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = p.Close(cctx) // the records fail (timeout or closed) either way
	if got := p.Pending(); got != 0 {
		t.Fatalf("Pending after Close: got %d, want 0", got)
	}
	if err := p.Publish(ctx, ev); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: got %v, want ErrClosed", err)
	}
	canceled, cancel2 := context.WithCancel(ctx)
	cancel2()
	if err := p.Publish(canceled, ev); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with an ended ctx: got %v, want context.Canceled", err)
	}
}
