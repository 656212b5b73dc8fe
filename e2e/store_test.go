package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/logic"
	"github.com/parley-chat/parley/storage/backends"
)

// The end-to-end tests run against the embedded store by default and
// against ScyllaDB/Cassandra with PARLEY_E2E_STORE=scylla and
// PARLEY_CQL_HOSTS=host:port (scripts/test-integration.sh sets both). The
// backend's old name, cql, is still accepted. Backends come from the table
// in storage/backends, as in cmd/parley.

// e2eBackend is PARLEY_E2E_STORE with the old name mapped: pebble by
// default.
func e2eBackend() string {
	switch b := os.Getenv("PARLEY_E2E_STORE"); b {
	case "":
		return "pebble"
	case "cql":
		return "scylla"
	default:
		return b
	}
}

// sharedStore reports whether the e2e store is one a fleet can share.
func sharedStore() bool { return backends.Config{Backend: e2eBackend()}.Shared() }

func storeBackend(t testing.TB) string {
	b := e2eBackend()
	if _, err := backends.Lookup(b); err != nil {
		t.Fatalf("PARLEY_E2E_STORE: %v", err)
	}
	if b == "scylla" && os.Getenv("PARLEY_CQL_HOSTS") == "" {
		t.Fatal("PARLEY_E2E_STORE=scylla needs PARLEY_CQL_HOSTS")
	}
	return b
}

// testStore describes where one test's data lives.
type testStore struct {
	backend  string
	dir      string // pebble
	keyspace string // cql
	slots    int    // cql: sequencing slots of the keyspace; 0 keeps the default
}

func newTestStore(t testing.TB) testStore {
	ts := testStore{backend: storeBackend(t)}
	if ts.backend == "pebble" {
		ts.dir = t.TempDir()
	} else {
		ts.keyspace = fmt.Sprintf("e2e_%d_%08x", time.Now().Unix(), rand.Uint32())
		// Every keyspace costs the test cluster heap (its tables' metadata
		// and memtables) for as long as it exists: drop it when done.
		t.Cleanup(func() { dropKeyspace(t, ts.keyspace) })
	}
	return ts
}

// dropKeyspace drops a test's keyspace, if it was created.
func dropKeyspace(t testing.TB, keyspace string) {
	c := gocql.NewCluster(cqlHosts()...)
	c.ProtoVersion = 4
	c.Timeout = 60 * time.Second
	c.ConnectTimeout = 10 * time.Second
	if _, p, err := net.SplitHostPort(cqlHosts()[0]); err == nil {
		c.Port, _ = strconv.Atoi(p) // see storage/scylla: the driver needs the port
	}
	sess, err := c.CreateSession()
	if err != nil {
		t.Logf("cannot drop keyspace %s: %v", keyspace, err)
		return
	}
	defer sess.Close()
	if err := sess.Query("DROP KEYSPACE IF EXISTS " + keyspace).Exec(); err != nil {
		t.Logf("cannot drop keyspace %s: %v", keyspace, err)
	}
}

func cqlHosts() []string { return strings.Split(os.Getenv("PARLEY_CQL_HOSTS"), ",") }

// open opens the store in-process.
func (ts testStore) open(t testing.TB) logic.Store {
	t.Helper()
	cfg := backends.Default()
	cfg.Backend = ts.backend
	cfg.Pebble.Dir = ts.dir
	cfg.Scylla.Hosts, cfg.Scylla.Keyspace = cqlHosts(), ts.keyspace
	cfg.Scylla.Replication.Factor = cqlReplication()
	if ts.slots > 0 {
		cfg.Scylla.Slots = ts.slots
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := backends.Open(ctx, cfg, logger())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startTimeout bounds how long a parley process pointed at this store may
// take to come up. A fresh CQL keyspace means schema changes that a loaded
// two-core Cassandra can take tens of seconds to agree on.
func (ts testStore) startTimeout() time.Duration {
	if ts.backend == "scylla" {
		return 90 * time.Second
	}
	return 20 * time.Second
}

// flags are the -set flags that point a parley binary at the store.
func (ts testStore) flags() []string {
	if ts.backend == "pebble" {
		return []string{"-set", "store.backend=pebble", "-set", "store.pebble.dir=" + ts.dir}
	}
	f := []string{"-set", "store.backend=scylla", "-set", "store.scylla.hosts=" + os.Getenv("PARLEY_CQL_HOSTS"), "-set", "store.scylla.keyspace=" + ts.keyspace,
		"-set", "store.scylla.replication.class=SimpleStrategy", "-set", fmt.Sprintf("store.scylla.replication.factor=%d", cqlReplication())}
	if ts.slots > 0 {
		f = append(f, "-set", fmt.Sprintf("store.scylla.slots=%d", ts.slots))
	}
	return f
}

// cqlReplication is the replication factor of the tests' keyspaces:
// PARLEY_CQL_REPLICATION (scripts/test-integration.sh sets it to the
// cluster's size), 1 by default.
func cqlReplication() int {
	if n, err := strconv.Atoi(os.Getenv("PARLEY_CQL_REPLICATION")); err == nil && n > 0 {
		return n
	}
	return 1
}
