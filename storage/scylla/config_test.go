package scylla

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Default()
	ok.Hosts = []string{"127.0.0.1:9042"}
	tests := []struct {
		name string
		edit func(c *Config)
		want []string // substrings of the error; none means valid
	}{
		{"default with hosts", func(*Config) {}, nil},
		{"zero values mean defaults", func(c *Config) { *c = Config{Hosts: c.Hosts} }, nil},
		{"nts", func(c *Config) {
			c.Replication = Replication{Class: "NetworkTopologyStrategy", DataCenters: map[string]int{"dc1": 3, "dc-2": 2}}
		}, nil},
		{"no hosts", func(c *Config) { c.Hosts = nil }, []string{"hosts: required"}},
		{"bad keyspace", func(c *Config) { c.Keyspace = "x; DROP" }, []string{"keyspace"}},
		{"bad class", func(c *Config) { c.Replication.Class = "Local" }, []string{"replication.class"}},
		{"nts without dcs", func(c *Config) { c.Replication = Replication{Class: "NetworkTopologyStrategy"} }, []string{"data_centers: required"}},
		{"nts bad factor", func(c *Config) {
			c.Replication = Replication{Class: "NetworkTopologyStrategy", DataCenters: map[string]int{"dc'1": 0}}
		}, []string{"data centre name", "factor 0"}},
		{"bad consistency", func(c *Config) { c.Consistency = "SERIAL" }, []string{"consistency"}},
		{"bad serial", func(c *Config) { c.SerialConsistency = "QUORUM" }, []string{"serial_consistency"}},
		{"proto v5", func(c *Config) { c.ProtoVersion = 5 }, []string{"proto_version"}},
		{"lwt sequencing", func(c *Config) { c.Sequencing = SequencingLWT }, nil},
		{"bad sequencing", func(c *Config) { c.Sequencing = "paxos" }, []string{"sequencing"}},
		{"too many slots", func(c *Config) { c.Slots = 5000 }, []string{"slots"}},
		{"hosts on one port", func(c *Config) { c.Hosts = []string{"10.0.0.1:19042", "10.0.0.2:19042", "10.0.0.3"} }, nil},
		{"hosts on two ports", func(c *Config) { c.Hosts = []string{"10.0.0.1:19042", "10.0.0.2:9042"} }, []string{"every node must listen on one port"}},
		{"bad port", func(c *Config) { c.Hosts = []string{"10.0.0.1:x"} }, []string{"port"}},
		{"everything wrong at once", func(c *Config) {
			c.Hosts, c.Timeout, c.DedupTTL, c.Password, c.SpeculativeAttempts = nil, -1, time.Millisecond, "x", 9
		}, []string{"hosts", "timeout", "dedup_ttl", "password", "speculative_attempts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.Replication.DataCenters = nil
			tc.edit(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want errors mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestReplicationCQL(t *testing.T) {
	tests := []struct {
		r    Replication
		want string
	}{
		{Replication{Class: "SimpleStrategy", Factor: 3}, "{'class': 'SimpleStrategy', 'replication_factor': 3}"},
		{Replication{Class: "NetworkTopologyStrategy", DataCenters: map[string]int{"eu": 3, "us": 2}},
			"{'class': 'NetworkTopologyStrategy', 'eu': 3, 'us': 2}"},
	}
	for _, tc := range tests {
		if got := tc.r.replicationCQL(); got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
	if got := (Config{Hosts: []string{"h"}}).withDefaults(); got.Replication.Factor != 1 || got.BucketSize != DefaultBucketSize || got.ProtoVersion != 4 {
		t.Errorf("withDefaults: got %+v", got)
	}
}
