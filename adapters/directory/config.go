package directory

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Config configures the connection to Redis and the lifetimes of what the
// directory stores. Validate names keys with the "redis." prefix (the
// section the node configs embed it under).
type Config struct {
	// Addrs are Redis addresses as host:port. One address is a single node;
	// several are seeds of a Redis Cluster; with SentinelMaster set they are
	// Sentinel addresses. A cluster needs at least two seeds here: one
	// address is always treated as a single node. Default ["127.0.0.1:6379"].
	Addrs []string `yaml:"addrs"`
	// SentinelMaster, when set, is the master set name the Sentinels at Addrs
	// monitor; the directory follows failovers of that master. Default empty
	// (no Sentinel).
	SentinelMaster string `yaml:"sentinel_master"`
	// Username and Password authenticate to Redis (ACL user or legacy
	// requirepass when Username is empty). They are not sent to Sentinels.
	// Default empty (no AUTH).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DB is the logical database (SELECT); must be 0 for a cluster. Default 0.
	DB int `yaml:"db"`
	// KeyPrefix starts every key the directory writes, so several fleets can
	// share one Redis. Must not contain '{' or '}' (hash tags). Default "parley:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds every call, including the connection attempt it may
	// make; with Redis down calls fail within about this long. Default 200ms.
	Timeout time.Duration `yaml:"timeout"`
	// DialTimeout bounds one TCP connect (and the background connection
	// attempts while Redis is unreachable). Default 1s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// LocationTTL is how long a device location lives without a Refresh;
	// logic nodes refresh every LocationTTL/3. Use one value fleet-wide.
	// Default 90s.
	LocationTTL time.Duration `yaml:"location_ttl"`
	// NodeTTL is how long a node registration lives without a Register;
	// nodes re-register every NodeTTL/3. Default 5s.
	NodeTTL time.Duration `yaml:"node_ttl"`
	// LastSeenTTL is how long a user's last-seen time is kept. Default 720h
	// (30 days).
	LastSeenTTL time.Duration `yaml:"last_seen_ttl"`
	// CacheTTL is the longest a client-side cached read (Locate, Lookup,
	// Nodes) is served without asking Redis; Redis invalidates entries as
	// soon as they change, so this only bounds staleness if an invalidation
	// is lost. 0 turns client-side caching (and CLIENT TRACKING) off.
	// Default 30s.
	CacheTTL time.Duration `yaml:"cache_ttl"`
}

// Default returns the default configuration: a single Redis on
// 127.0.0.1:6379.
func Default() Config {
	return Config{
		Addrs:       []string{"127.0.0.1:6379"},
		KeyPrefix:   "parley:",
		Timeout:     200 * time.Millisecond,
		DialTimeout: time.Second,
		LocationTTL: 90 * time.Second,
		NodeTTL:     5 * time.Second,
		LastSeenTTL: 720 * time.Hour,
		CacheTTL:    30 * time.Second,
	}
}

// minTTL is the shortest TTL accepted: Redis expires in milliseconds and
// the tests use TTLs of a few hundred.
const minTTL = 10 * time.Millisecond

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Addrs) == 0 {
		bad("redis.addrs: at least one host:port is required")
	}
	for i, a := range c.Addrs {
		if err := checkAddr(a); err != nil {
			bad("redis.addrs[%d]: %w", i, err)
		}
	}
	if c.DB < 0 {
		bad("redis.db must not be negative, got %d", c.DB)
	}
	if c.DB != 0 && len(c.Addrs) > 1 && c.SentinelMaster == "" {
		bad("redis.db must be 0 for a cluster (several redis.addrs), got %d", c.DB)
	}
	if strings.ContainsAny(c.KeyPrefix, "{}") {
		bad("redis.key_prefix must not contain '{' or '}' (they are hash tags), got %q", c.KeyPrefix)
	}
	if strings.ContainsAny(c.SentinelMaster, " \t\r\n") {
		bad("redis.sentinel_master must not contain white space, got %q", c.SentinelMaster)
	}
	positive := func(key string, d, min time.Duration) {
		if d < min {
			bad("redis.%s must be at least %v, got %v", key, min, d)
		}
	}
	positive("timeout", c.Timeout, time.Millisecond)
	positive("dial_timeout", c.DialTimeout, time.Millisecond)
	positive("location_ttl", c.LocationTTL, minTTL)
	positive("node_ttl", c.NodeTTL, minTTL)
	positive("last_seen_ttl", c.LastSeenTTL, time.Second)
	if c.CacheTTL < 0 {
		bad("redis.cache_ttl must not be negative (0 turns caching off), got %v", c.CacheTTL)
	}
	return errors.Join(errs...)
}

// checkAddr accepts host:port with a non-empty host and a port in 1..65535.
func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("want host:port, got %q", a)
	}
	if host == "" {
		return fmt.Errorf("want a host in %q", a)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("want a port in 1..65535 in %q", a)
	}
	return nil
}
