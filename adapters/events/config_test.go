package events

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error, one per expected problem; none: valid
	}{
		{name: "default", edit: func(*Config) {}},
		{name: "zero means defaults", edit: func(c *Config) { *c = Config{} }},
		{name: "test cluster", edit: func(c *Config) {
			c.Brokers = []string{"127.0.0.1:19092", "[::1]:19094"}
			c.ReplicationFactor = 1
			c.Partitions = 1
			c.MaxAttempts = 1
		}},
		{name: "broker without port", edit: func(c *Config) { c.Brokers = []string{"localhost"} },
			want: []string{"events.brokers: entry 0"}},
		{name: "broker without host", edit: func(c *Config) { c.Brokers = []string{":9092"} },
			want: []string{"events.brokers: entry 0 \":9092\" has no host"}},
		{name: "broker bad port", edit: func(c *Config) { c.Brokers = []string{"a:1", "b:0", "c:x"} },
			want: []string{"entry 1", "entry 2"}},
		{name: "topic bad chars", edit: func(c *Config) { c.Topic = "message events" },
			want: []string{"events.topic:"}},
		{name: "topic dot", edit: func(c *Config) { c.DLQTopic = ".." },
			want: []string{"events.dlq_topic:"}},
		{name: "topic too long", edit: func(c *Config) { c.Topic = strings.Repeat("t", 250) },
			want: []string{"events.topic:"}},
		{name: "dlq equals topic", edit: func(c *Config) { c.DLQTopic = c.Topic },
			want: []string{"events.dlq_topic: \"message_events\" must differ"}},
		{name: "dlq default equals topic", edit: func(c *Config) { c.Topic = DefaultDLQTopic; c.DLQTopic = "" },
			want: []string{"events.dlq_topic:"}},
		{name: "negative partitions", edit: func(c *Config) { c.Partitions = -1 },
			want: []string{"events.partitions:"}},
		{name: "too many partitions", edit: func(c *Config) { c.Partitions = 10001 },
			want: []string{"events.partitions:"}},
		{name: "replication", edit: func(c *Config) { c.ReplicationFactor = -3 },
			want: []string{"events.replication_factor:"}},
		{name: "produce timeout negative", edit: func(c *Config) { c.ProduceTimeout = -time.Second },
			want: []string{"events.produce_timeout:"}},
		{name: "produce timeout tiny", edit: func(c *Config) { c.ProduceTimeout = time.Millisecond },
			want: []string{"events.produce_timeout: 1ms is below 1s"}},
		{name: "buffer", edit: func(c *Config) { c.MaxBufferedRecords = -1 },
			want: []string{"events.max_buffered_records:"}},
		{name: "attempts", edit: func(c *Config) { c.MaxAttempts = 101 },
			want: []string{"events.max_attempts:"}},
		{name: "backoff negative", edit: func(c *Config) { c.RetryBackoff = -1; c.RetryBackoffMax = -1 },
			want: []string{"events.retry_backoff:", "events.retry_backoff_max:"}},
		{name: "backoff max below backoff", edit: func(c *Config) { c.RetryBackoff = time.Second; c.RetryBackoffMax = time.Millisecond },
			want: []string{"events.retry_backoff_max: 1ms is below events.retry_backoff 1s"}},
		{name: "backoff above default max", edit: func(c *Config) { c.RetryBackoff = time.Minute; c.RetryBackoffMax = 0 },
			want: []string{"events.retry_backoff_max: 10s is below"}},
		{name: "long names", edit: func(c *Config) { c.ClientID = strings.Repeat("c", 256); c.Group = strings.Repeat("g", 256) },
			want: []string{"events.client_id:", "events.group:"}},
		{name: "every problem at once", edit: func(c *Config) {
			c.Brokers = []string{"nope"}
			c.Topic = "a b"
			c.Partitions = -1
			c.MaxAttempts = -1
		}, want: []string{"events.brokers:", "events.topic:", "events.partitions:", "events.max_attempts:"}},
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
				t.Fatalf("Validate: got nil, want errors containing %q", tc.want)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Validate: got %q, want it to contain %q", msg, w)
				}
			}
			if got := strings.Count(msg, "\n") + 1; got != len(tc.want) {
				t.Errorf("Validate: got %d problems (%q), want %d", got, msg, len(tc.want))
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Config{ReplicationFactor: 1}.withDefaults()
	want := Default()
	want.ReplicationFactor = 1
	want.CreateTopics = false // false is a choice, not "unset"
	if got.Topic != want.Topic || got.DLQTopic != want.DLQTopic || got.Partitions != want.Partitions ||
		got.ReplicationFactor != 1 || got.CreateTopics || got.Group != want.Group ||
		got.MaxAttempts != want.MaxAttempts || got.RetryBackoff != want.RetryBackoff ||
		got.RetryBackoffMax != want.RetryBackoffMax || got.ProduceTimeout != want.ProduceTimeout ||
		got.MaxBufferedRecords != want.MaxBufferedRecords || len(got.Brokers) != 1 || got.ClientID != want.ClientID {
		t.Fatalf("withDefaults: got %+v, want %+v", got, want)
	}
}

func TestBackoff(t *testing.T) {
	cfg := Config{RetryBackoff: 100 * time.Millisecond, RetryBackoffMax: time.Second}
	tests := []struct {
		n    int
		base time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{50, time.Second},
	}
	for _, tc := range tests {
		for range 100 {
			d := backoff(cfg, tc.n)
			if lo, hi := tc.base-tc.base/4, tc.base+tc.base/4; d < lo || d > hi {
				t.Fatalf("backoff(%d): got %s, want %s..%s", tc.n, d, lo, hi)
			}
		}
	}
	if d := backoff(Config{}, 3); d != 0 {
		t.Fatalf("backoff with zero config: got %s, want 0", d)
	}
}
