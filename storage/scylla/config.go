package scylla

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// Config configures the CQL store. Start from Default(); Hosts must be set.
// Zero values of the numeric and duration fields mean "the default" (see
// withDefaults), so a partially filled YAML block keeps working.
type Config struct {
	// Hosts are the contact points, "host" or "host:port" (port default
	// 9042). The driver discovers the rest of the ring from them. Required.
	Hosts []string `yaml:"hosts"`
	// Keyspace holds Parley's tables; created on Open if missing. 1 to 48
	// letters, digits or '_', starting with a letter. Default "parley".
	Keyspace string `yaml:"keyspace"`
	// Replication is used only when Open creates the keyspace; an existing
	// keyspace keeps its replication (change it with ALTER KEYSPACE).
	// Default SimpleStrategy with factor 1.
	Replication Replication `yaml:"replication"`
	// LocalDC makes the driver prefer the nodes of this data centre
	// (DC-aware round robin under token awareness). Empty: plain round
	// robin under token awareness, fine for a single data centre.
	LocalDC string `yaml:"local_dc"`
	// Consistency of every read and write: ONE, TWO, THREE, QUORUM, ALL,
	// LOCAL_QUORUM, EACH_QUORUM or LOCAL_ONE. Default LOCAL_QUORUM.
	Consistency string `yaml:"consistency"`
	// SerialConsistency of the lightweight transactions (Paxos phase):
	// SERIAL or LOCAL_SERIAL. Default LOCAL_SERIAL.
	SerialConsistency string `yaml:"serial_consistency"`
	// ProtoVersion is the CQL native protocol version. Only 4 is accepted
	// (ScyllaDB speaks v4; negotiating v5 against Cassandra 5 fails); zero
	// means 4.
	ProtoVersion int `yaml:"proto_version"`
	// ConnectTimeout bounds dialling and the connection handshake. Default
	// 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds one request to one node (a retry or a speculative
	// attempt gets its own). Default 5s, generous for a loaded small box.
	Timeout time.Duration `yaml:"timeout"`
	// NumConns is the number of connections per node. Default 2.
	NumConns int `yaml:"num_conns"`
	// BucketSize is the number of seqs per messages partition: a message
	// lives in partition (chat_id, seq / BucketSize). Default 1000. It is
	// recorded in the keyspace on first Open and must never change
	// afterwards: Open refuses a different value.
	BucketSize uint64 `yaml:"bucket_size"`
	// DedupTTL is how long a send's idempotency key is kept. Default 7 days
	// (168h). At least 1s, at most 20 years.
	DedupTTL time.Duration `yaml:"dedup_ttl"`
	// Username and Password enable PasswordAuthenticator when Username is
	// set. Default none.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Retries is how many times a failed statement is retried (exponential
	// backoff from 50ms to 1s, next host first). Every statement the store
	// sends is idempotent, lightweight transactions included (see doc.go).
	// Default 2; a negative value disables retries.
	Retries int `yaml:"retries"`
	// SpeculativeAttempts is how many extra copies of an idempotent read
	// are sent to other replicas when the first answer is slower than
	// SpeculativeDelay. Default 0 (off); writes are never speculated.
	SpeculativeAttempts int `yaml:"speculative_attempts"`
	// SpeculativeDelay is the wait before each speculative attempt. Default
	// 100ms.
	SpeculativeDelay time.Duration `yaml:"speculative_delay"`
	// Concurrency bounds the statements one call keeps in flight (the
	// chats of one AppendMessages, the chats of one UserChats). Default 16.
	Concurrency int `yaml:"concurrency"`
	// Sequencing is how the keyspace keeps a chat's seqs unique when two
	// logic nodes could both write a chat (doc.go, "Sequencing"): "lease"
	// (default) — chats map to Slots slots, a slot's lease holder is the
	// only writer, message rows are plain writes fenced by the lease epoch,
	// and lightweight transactions follow lease churn, not the message rate;
	// "lwt" — every append is a lightweight transaction per partition
	// (several Paxos round trips per message). The mode is recorded in the
	// keyspace when it is created and can never change: Open refuses the
	// other one (a keyspace created before this setting existed is "lwt").
	Sequencing string `yaml:"sequencing"`
	// Slots is the number of sequencing slots under leases (a chat's slot is
	// a hash of its id). Recorded at creation like Sequencing. Default 64;
	// 1 to 1024. Not used with "lwt".
	Slots int `yaml:"slots"`
}

// Replication is the keyspace replication used when Open creates it.
type Replication struct {
	// Class is SimpleStrategy or NetworkTopologyStrategy. Default
	// SimpleStrategy.
	Class string `yaml:"class"`
	// Factor is the replication factor of SimpleStrategy. Default 1.
	Factor int `yaml:"factor"`
	// DataCenters maps each data centre to its replication factor, for
	// NetworkTopologyStrategy (required there, empty otherwise).
	DataCenters map[string]int `yaml:"data_centers"`
}

// Defaults.
const (
	DefaultKeyspace          = "parley"
	DefaultConsistency       = "LOCAL_QUORUM"
	DefaultSerialConsistency = "LOCAL_SERIAL"
	DefaultProtoVersion      = 4
	DefaultConnectTimeout    = 10 * time.Second
	DefaultTimeout           = 5 * time.Second
	DefaultNumConns          = 2
	DefaultBucketSize        = 1000
	DefaultDedupTTL          = 7 * 24 * time.Hour
	DefaultRetries           = 2
	DefaultSpeculativeDelay  = 100 * time.Millisecond
	DefaultConcurrency       = 16
	DefaultSequencing        = SequencingLease
	DefaultSlots             = 64

	// SequencingLease and SequencingLWT are the values of
	// Config.Sequencing.
	SequencingLease = "lease"
	SequencingLWT   = "lwt"
	maxSlots        = 1024

	simpleStrategy   = "SimpleStrategy"
	topologyStrategy = "NetworkTopologyStrategy"
	maxTTL           = 20 * 365 * 24 * time.Hour // CQL's TTL cap is 20 years
)

// Default returns the default configuration; Hosts must still be set.
func Default() Config {
	return Config{
		Keyspace:          DefaultKeyspace,
		Replication:       Replication{Class: simpleStrategy, Factor: 1},
		Consistency:       DefaultConsistency,
		SerialConsistency: DefaultSerialConsistency,
		ProtoVersion:      DefaultProtoVersion,
		ConnectTimeout:    DefaultConnectTimeout,
		Timeout:           DefaultTimeout,
		NumConns:          DefaultNumConns,
		BucketSize:        DefaultBucketSize,
		DedupTTL:          DefaultDedupTTL,
		Retries:           DefaultRetries,
		SpeculativeDelay:  DefaultSpeculativeDelay,
		Concurrency:       DefaultConcurrency,
		Sequencing:        DefaultSequencing,
		Slots:             DefaultSlots,
	}
}

var keyspaceRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)

// Validate reports every problem of c at once. Zero values that mean "the
// default" are accepted.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("store.scylla."+field+": "+format, args...))
	}
	if len(c.Hosts) == 0 {
		bad("hosts", "required")
	}
	for i, h := range c.Hosts {
		if strings.TrimSpace(h) == "" {
			bad("hosts", "entry %d is empty", i)
		}
	}
	if _, err := hostsPort(c.Hosts); err != nil {
		bad("hosts", "%v", err)
	}
	if c.Keyspace != "" && !keyspaceRE.MatchString(c.Keyspace) {
		bad("keyspace", "%q must be 1-48 letters, digits or '_', starting with a letter", c.Keyspace)
	}
	switch c.Replication.Class {
	case "", simpleStrategy:
		if c.Replication.Factor < 0 {
			bad("replication.factor", "%d must not be negative", c.Replication.Factor)
		}
		if len(c.Replication.DataCenters) > 0 {
			bad("replication.data_centers", "only for %s", topologyStrategy)
		}
	case topologyStrategy:
		if len(c.Replication.DataCenters) == 0 {
			bad("replication.data_centers", "required for %s", topologyStrategy)
		}
		if c.Replication.Factor != 0 {
			bad("replication.factor", "not used by %s (set data_centers)", topologyStrategy)
		}
		for _, dc := range sortedKeys(c.Replication.DataCenters) {
			if !dcRE.MatchString(dc) {
				bad("replication.data_centers", "data centre name %q must be letters, digits, '_', '-' or '.'", dc)
			}
			if n := c.Replication.DataCenters[dc]; n < 1 {
				bad("replication.data_centers", "factor %d of %q must be at least 1", n, dc)
			}
		}
	default:
		bad("replication.class", "%q must be %s or %s", c.Replication.Class, simpleStrategy, topologyStrategy)
	}
	if c.Consistency != "" {
		if _, err := parseConsistency(c.Consistency); err != nil {
			bad("consistency", "%v", err)
		}
	}
	if c.SerialConsistency != "" {
		if _, err := parseSerial(c.SerialConsistency); err != nil {
			bad("serial_consistency", "%v", err)
		}
	}
	if c.ProtoVersion != 0 && c.ProtoVersion != DefaultProtoVersion {
		bad("proto_version", "%d unsupported: only 4 (v5 negotiation against Cassandra 5 fails; ScyllaDB speaks v4)", c.ProtoVersion)
	}
	if c.ConnectTimeout < 0 {
		bad("connect_timeout", "%v must not be negative", c.ConnectTimeout)
	}
	if c.Timeout < 0 {
		bad("timeout", "%v must not be negative", c.Timeout)
	}
	if c.NumConns < 0 || c.NumConns > 64 {
		bad("num_conns", "%d must be in [0, 64]", c.NumConns)
	}
	if c.BucketSize > 1<<30 {
		bad("bucket_size", "%d must be at most 2^30", c.BucketSize)
	}
	if c.DedupTTL != 0 && (c.DedupTTL < time.Second || c.DedupTTL > maxTTL) {
		bad("dedup_ttl", "%v must be in [1s, 20 years]", c.DedupTTL)
	}
	if c.Password != "" && c.Username == "" {
		bad("password", "set without username")
	}
	if c.Retries > 10 {
		bad("retries", "%d must be at most 10", c.Retries)
	}
	if c.SpeculativeAttempts < 0 || c.SpeculativeAttempts > 3 {
		bad("speculative_attempts", "%d must be in [0, 3]", c.SpeculativeAttempts)
	}
	if c.SpeculativeDelay < 0 {
		bad("speculative_delay", "%v must not be negative", c.SpeculativeDelay)
	}
	if c.Concurrency < 0 || c.Concurrency > 1024 {
		bad("concurrency", "%d must be in [0, 1024]", c.Concurrency)
	}
	switch c.Sequencing {
	case "", SequencingLease, SequencingLWT:
	default:
		bad("sequencing", "%q must be %s or %s", c.Sequencing, SequencingLease, SequencingLWT)
	}
	if c.Slots < 0 || c.Slots > maxSlots {
		bad("slots", "%d must be in [1, %d]", c.Slots, maxSlots)
	}
	return errors.Join(errs...)
}

var dcRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// withDefaults fills zero fields that mean "default".
func (c Config) withDefaults() Config {
	d := Default()
	if c.Keyspace == "" {
		c.Keyspace = d.Keyspace
	}
	if c.Replication.Class == "" {
		c.Replication.Class = simpleStrategy
	}
	if c.Replication.Class == simpleStrategy && c.Replication.Factor == 0 {
		c.Replication.Factor = 1
	}
	if c.Consistency == "" {
		c.Consistency = d.Consistency
	}
	if c.SerialConsistency == "" {
		c.SerialConsistency = d.SerialConsistency
	}
	if c.ProtoVersion == 0 {
		c.ProtoVersion = d.ProtoVersion
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = d.ConnectTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.NumConns == 0 {
		c.NumConns = d.NumConns
	}
	if c.BucketSize == 0 {
		c.BucketSize = d.BucketSize
	}
	if c.DedupTTL == 0 {
		c.DedupTTL = d.DedupTTL
	}
	if c.Retries == 0 {
		c.Retries = d.Retries
	} else if c.Retries < 0 {
		c.Retries = 0
	}
	if c.SpeculativeDelay == 0 {
		c.SpeculativeDelay = d.SpeculativeDelay
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.Sequencing == "" {
		c.Sequencing = d.Sequencing
	}
	if c.Slots == 0 {
		c.Slots = d.Slots
	}
	return c
}

// hostsPort returns the CQL port the hosts name ("host:port"; 9042 when
// none does). Every node of a cluster listens on the same port; hosts that
// name different ports are an error.
func hostsPort(hosts []string) (int, error) {
	port := 0
	for _, h := range hosts {
		_, p, err := net.SplitHostPort(strings.TrimSpace(h))
		if err != nil {
			continue // no port: the default
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("%q: port %q is not a number in [1, 65535]", h, p)
		}
		if port != 0 && n != port {
			return 0, fmt.Errorf("hosts name ports %d and %d: every node must listen on one port", port, n)
		}
		port = n
	}
	if port == 0 {
		port = 9042
	}
	return port, nil
}

// replicationCQL renders the replication map of CREATE KEYSPACE.
func (r Replication) replicationCQL() string {
	if r.Class == topologyStrategy {
		var b strings.Builder
		b.WriteString("{'class': 'NetworkTopologyStrategy'")
		for _, dc := range sortedKeys(r.DataCenters) {
			fmt.Fprintf(&b, ", '%s': %d", dc, r.DataCenters[dc])
		}
		b.WriteString("}")
		return b.String()
	}
	return fmt.Sprintf("{'class': 'SimpleStrategy', 'replication_factor': %d}", r.Factor)
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func parseConsistency(s string) (gocql.Consistency, error) {
	switch strings.ToUpper(s) {
	case "ANY", "SERIAL", "LOCAL_SERIAL":
		return 0, fmt.Errorf("%q cannot be used for reads and writes", s)
	}
	c, err := gocql.ParseConsistencyWrapper(strings.ToUpper(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a consistency level", s)
	}
	return c, nil
}

func parseSerial(s string) (gocql.SerialConsistency, error) {
	switch strings.ToUpper(s) {
	case "SERIAL":
		return gocql.Serial, nil
	case "LOCAL_SERIAL":
		return gocql.LocalSerial, nil
	}
	return 0, fmt.Errorf("%q must be SERIAL or LOCAL_SERIAL", s)
}
