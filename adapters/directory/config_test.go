package directory

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none = valid
	}{
		{"default", func(*Config) {}, nil},
		{"cluster", func(c *Config) { c.Addrs = []string{"10.0.0.1:7000", "10.0.0.2:7000"} }, nil},
		{"sentinel", func(c *Config) {
			c.Addrs = []string{"10.0.0.1:26379", "10.0.0.2:26379"}
			c.SentinelMaster = "parley"
			c.DB = 2
		}, nil},
		{"caching off", func(c *Config) { c.CacheTTL = 0 }, nil},
		{"no addrs", func(c *Config) { c.Addrs = nil }, []string{"redis.addrs: at least one"}},
		{"bad addrs", func(c *Config) { c.Addrs = []string{"localhost", ":6379", "h:0", "h:x", "h:65536"} }, []string{
			"redis.addrs[0]", "redis.addrs[1]", "redis.addrs[2]", "redis.addrs[3]", "redis.addrs[4]"}},
		{"db on cluster", func(c *Config) { c.Addrs = []string{"a:1", "b:2"}; c.DB = 1 }, []string{"redis.db must be 0 for a cluster"}},
		{"negative db", func(c *Config) { c.DB = -1 }, []string{"redis.db must not be negative"}},
		{"hash tag in prefix", func(c *Config) { c.KeyPrefix = "p{x}:" }, []string{"redis.key_prefix"}},
		{"space in master", func(c *Config) { c.SentinelMaster = "a b" }, []string{"redis.sentinel_master"}},
		{"all durations", func(c *Config) {
			c.Timeout, c.DialTimeout, c.LocationTTL, c.NodeTTL, c.LastSeenTTL, c.CacheTTL = 0, 0, time.Millisecond, 0, time.Millisecond, -1
		}, []string{"redis.timeout", "redis.dial_timeout", "redis.location_ttl", "redis.node_ttl", "redis.last_seen_ttl", "redis.cache_ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got valid, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("got %d problems, want %d: %v", n, len(tt.want), err)
			}
		})
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	c := Default()
	c.Addrs = nil
	if d, err := Open(t.Context(), c, nil); err == nil {
		d.Close()
		t.Fatal("Open with no addrs: got no error")
	}
}
