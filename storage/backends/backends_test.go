package backends

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"pebble", "scylla"}) {
		t.Fatalf("Names() = %v", got)
	}
	for _, tt := range []struct {
		backend string
		shared  bool
		err     string
	}{
		{"pebble", false, ""},
		{"scylla", true, ""},
		{"cql", false, `store.backend "cql": want pebble or scylla`}, // only Normalize knows old names
		{"", false, "want pebble or scylla"},
	} {
		c := Default()
		c.Backend = tt.backend
		c.Pebble.Dir, c.Scylla.Hosts = "/var/lib/parley", []string{"127.0.0.1:9042"}
		if got := c.Shared(); got != tt.shared {
			t.Errorf("%q: Shared() = %v, want %v", tt.backend, got, tt.shared)
		}
		err := c.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: Validate() = %v, want %q", tt.backend, err, tt.err)
		}
	}
}

func TestNormalize(t *testing.T) {
	c := Default()
	c.Backend = "cql"
	c.CQL.Keyspace = "old"
	w, err := c.Normalize()
	if err != nil || len(w) != 2 || c.Backend != "scylla" || c.Scylla.Keyspace != "old" || c.CQL.Keyspace != Default().CQL.Keyspace {
		t.Fatalf("got %+v, warnings %q, err %v", c, w, err)
	}
	if w, err := c.Normalize(); err != nil || len(w) != 0 {
		t.Fatalf("second Normalize: warnings %q, err %v; want none", w, err)
	}
	c.CQL.Keyspace = "other"
	if _, err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "store.scylla.keyspace") {
		t.Fatalf("one setting under both names: got %v, want an error naming it", err)
	}
	// Settings merge one by one, sections included.
	c = Default()
	c.CQL.Hosts, c.CQL.Replication.Factor = []string{"old:1"}, 5
	c.Scylla.Keyspace, c.Scylla.Replication.Class = "new", "NetworkTopologyStrategy"
	w, err = c.Normalize()
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "store.scylla.hosts, store.scylla.replication.factor") ||
		c.Scylla.Hosts[0] != "old:1" || c.Scylla.Replication.Factor != 5 || c.Scylla.Keyspace != "new" || c.Scylla.Replication.Class != "NetworkTopologyStrategy" {
		t.Fatalf("merge: got %+v, warnings %q, err %v", c.Scylla, w, err)
	}
}

func TestOpen(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	c := Default()
	c.Pebble.Dir = t.TempDir()
	st, err := Open(context.Background(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// A failed open is a nil interface, not a typed nil a caller would
	// take for a store.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Pebble.Dir = file
	st, err = Open(context.Background(), c, log)
	if err == nil || st != nil || !strings.Contains(err.Error(), "open store pebble") {
		t.Fatalf("Open on a file: got %v, %v; want a nil store and an error", st, err)
	}
	c.Backend = "mongo"
	if _, err := Open(context.Background(), c, log); err == nil {
		t.Fatal("unknown backend: want an error")
	}
}
