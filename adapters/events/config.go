package events

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// Config configures the producer and the consumer of push events. Start
// from Default(). Zero values of the numeric and duration fields mean "the
// default" (see withDefaults), so a partially filled YAML block works.
type Config struct {
	// Brokers are the seed brokers, "host:port"; the client discovers the
	// rest of the cluster from them. Default ["127.0.0.1:9092"].
	Brokers []string `yaml:"brokers"`
	// Topic carries the push events. Default "message_events".
	Topic string `yaml:"topic"`
	// DLQTopic receives the events the consumer gave up on. Must differ
	// from Topic. Default "message_events.dlq".
	DLQTopic string `yaml:"dlq_topic"`
	// Partitions is the partition count of Topic and DLQTopic when they
	// are created here; existing topics are left as they are. Default 12.
	Partitions int `yaml:"partitions"`
	// ReplicationFactor of the topics created here. Default 3; a
	// single-broker test cluster needs 1.
	ReplicationFactor int `yaml:"replication_factor"`
	// CreateTopics makes NewProducer and Consume create Topic and DLQTopic
	// when missing. Default true. Needs the CREATE ACL on the cluster.
	CreateTopics bool `yaml:"create_topics"`
	// ClientID names this process to the brokers (logs, quotas). Default
	// "parley".
	ClientID string `yaml:"client_id"`
	// ProduceTimeout is how long a published record may wait for the
	// brokers (buffered, retried) before it is dropped and counted.
	// At least 1s. Default 10s.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// MaxBufferedRecords bounds the records published but not yet
	// acknowledged; Publish fails fast with ErrFull beyond it. Default
	// 10000.
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// Group is the consumer group of Consume. Default "parley-notifier".
	Group string `yaml:"group"`
	// MaxAttempts is how many times Consume calls the handler for one
	// event before sending it to DLQTopic; 1 means no retry. Default 5.
	MaxAttempts int `yaml:"max_attempts"`
	// RetryBackoff is the delay before the first retry; each further
	// retry doubles it (with ±25% jitter) up to RetryBackoffMax. Default
	// 200ms.
	RetryBackoff time.Duration `yaml:"retry_backoff"`
	// RetryBackoffMax caps the retry delay. Default 10s.
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
}

// Defaults.
const (
	DefaultBroker             = "127.0.0.1:9092"
	DefaultTopic              = "message_events"
	DefaultDLQTopic           = "message_events.dlq"
	DefaultPartitions         = 12
	DefaultReplicationFactor  = 3
	DefaultClientID           = "parley"
	DefaultProduceTimeout     = 10 * time.Second
	DefaultMaxBufferedRecords = 10000
	DefaultGroup              = "parley-notifier"
	DefaultMaxAttempts        = 5
	DefaultRetryBackoff       = 200 * time.Millisecond
	DefaultRetryBackoffMax    = 10 * time.Second

	maxPartitions  = 10000 // far above any sane push-event topic
	maxReplication = 32767 // Kafka's int16 field
	maxNameLen     = 249   // Kafka's topic name limit
)

// Default returns the default configuration.
func Default() Config {
	return Config{
		Brokers:            []string{DefaultBroker},
		Topic:              DefaultTopic,
		DLQTopic:           DefaultDLQTopic,
		Partitions:         DefaultPartitions,
		ReplicationFactor:  DefaultReplicationFactor,
		CreateTopics:       true,
		ClientID:           DefaultClientID,
		ProduceTimeout:     DefaultProduceTimeout,
		MaxBufferedRecords: DefaultMaxBufferedRecords,
		Group:              DefaultGroup,
		MaxAttempts:        DefaultMaxAttempts,
		RetryBackoff:       DefaultRetryBackoff,
		RetryBackoffMax:    DefaultRetryBackoffMax,
	}
}

// withDefaults fills zero fields with their defaults (CreateTopics is
// left alone: false is a choice).
func (c Config) withDefaults() Config {
	d := Default()
	if len(c.Brokers) == 0 {
		c.Brokers = d.Brokers
	}
	setStr := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	setStr(&c.Topic, d.Topic)
	setStr(&c.DLQTopic, d.DLQTopic)
	setStr(&c.ClientID, d.ClientID)
	setStr(&c.Group, d.Group)
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&c.Partitions, d.Partitions)
	setInt(&c.ReplicationFactor, d.ReplicationFactor)
	setInt(&c.MaxBufferedRecords, d.MaxBufferedRecords)
	setInt(&c.MaxAttempts, d.MaxAttempts)
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.ProduceTimeout, d.ProduceTimeout)
	setDur(&c.RetryBackoff, d.RetryBackoff)
	setDur(&c.RetryBackoffMax, d.RetryBackoffMax)
	return c
}

// topicRE is Kafka's legal topic alphabet. Kafka also warns that '.' and
// '_' collide in metric names; we allow both, as the default DLQ name
// uses '.'.
var topicRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports every problem of c at once, each naming its key
// ("events.<key>: ..."). Zero values that mean "the default" are accepted.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("events."+key+": "+format, args...))
	}
	for i, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			bad("brokers", "entry %d %q is not host:port: %v", i, b, err)
			continue
		}
		if host == "" {
			bad("brokers", "entry %d %q has no host", i, b)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			bad("brokers", "entry %d %q: port must be 1..65535", i, b)
		}
	}
	checkTopic := func(key, name string) {
		if name == "" {
			return // default
		}
		if len(name) > maxNameLen || name == "." || name == ".." || !topicRE.MatchString(name) {
			bad(key, "%q must be 1-%d letters, digits, '.', '_' or '-' (and not \".\" or \"..\")", name, maxNameLen)
		}
	}
	checkTopic("topic", c.Topic)
	checkTopic("dlq_topic", c.DLQTopic)
	d := c.withDefaults()
	if d.Topic == d.DLQTopic {
		bad("dlq_topic", "%q must differ from events.topic", d.DLQTopic)
	}
	if c.Partitions < 0 || c.Partitions > maxPartitions {
		bad("partitions", "%d must be 1..%d (0: default %d)", c.Partitions, maxPartitions, DefaultPartitions)
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > maxReplication {
		bad("replication_factor", "%d must be 1..%d (0: default %d)", c.ReplicationFactor, maxReplication, DefaultReplicationFactor)
	}
	if len(c.ClientID) > 255 {
		bad("client_id", "is %d bytes, at most 255", len(c.ClientID))
	}
	if c.ProduceTimeout < 0 {
		bad("produce_timeout", "%s is negative (0: default %s)", c.ProduceTimeout, DefaultProduceTimeout)
	} else if c.ProduceTimeout > 0 && c.ProduceTimeout < time.Second {
		bad("produce_timeout", "%s is below 1s (the client's minimum)", c.ProduceTimeout)
	}
	if c.MaxBufferedRecords < 0 || c.MaxBufferedRecords > 10_000_000 {
		bad("max_buffered_records", "%d must be 1..10000000 (0: default %d)", c.MaxBufferedRecords, DefaultMaxBufferedRecords)
	}
	if len(c.Group) > 255 {
		bad("group", "is %d bytes, at most 255", len(c.Group))
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 100 {
		bad("max_attempts", "%d must be 1..100 (0: default %d)", c.MaxAttempts, DefaultMaxAttempts)
	}
	if c.RetryBackoff < 0 {
		bad("retry_backoff", "%s is negative (0: default %s)", c.RetryBackoff, DefaultRetryBackoff)
	}
	if c.RetryBackoffMax < 0 {
		bad("retry_backoff_max", "%s is negative (0: default %s)", c.RetryBackoffMax, DefaultRetryBackoffMax)
	}
	if c.RetryBackoff >= 0 && c.RetryBackoffMax >= 0 && d.RetryBackoffMax < d.RetryBackoff {
		bad("retry_backoff_max", "%s is below events.retry_backoff %s", d.RetryBackoffMax, d.RetryBackoff)
	}
	return errors.Join(errs...)
}
