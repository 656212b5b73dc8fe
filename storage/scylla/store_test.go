package scylla

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

// The integration tests need a real Cassandra or ScyllaDB node:
//
//	bash scripts/cassandra.sh start
//	PARLEY_CQL_HOSTS=127.0.0.1:19042 go test ./storage/scylla/
//
// Each test works in keyspaces of its own, dropped at the end.
const hostsEnv = "PARLEY_CQL_HOSTS"

func cqlHosts(tb testing.TB) []string {
	tb.Helper()
	v := os.Getenv(hostsEnv)
	if v == "" {
		tb.Skipf("%s not set: no Cassandra/ScyllaDB node to test against (start one with scripts/cassandra.sh start)", hostsEnv)
	}
	return strings.Split(v, ",")
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testConfig returns a configuration for a fresh keyspace that is dropped
// when tb ends.
func testConfig(tb testing.TB) Config {
	tb.Helper()
	cfg := Default()
	cfg.Hosts = cqlHosts(tb)
	var b [6]byte
	rand.Read(b[:])
	cfg.Keyspace = "parley_test_" + hex.EncodeToString(b[:])
	cfg.Timeout = 10 * time.Second
	tb.Cleanup(func() { dropKeyspace(tb, cfg) })
	return cfg
}

func dropKeyspace(tb testing.TB, cfg Config) {
	c, err := newCluster(cfg.withDefaults())
	if err != nil {
		tb.Errorf("drop keyspace %s: %v", cfg.Keyspace, err)
		return
	}
	c.Timeout = 30 * time.Second
	sess, err := c.CreateSession()
	if err != nil {
		tb.Errorf("drop keyspace %s: %v", cfg.Keyspace, err)
		return
	}
	defer sess.Close()
	if err := sess.Query("DROP KEYSPACE IF EXISTS " + cfg.Keyspace).Exec(); err != nil {
		tb.Errorf("drop keyspace %s: %v", cfg.Keyspace, err)
	}
}

func openStore(tb testing.TB, cfg Config) *Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s
}

// dataTables are the tables a fresh store starts without rows in.
var dataTables = []string{"messages", "chat_buckets", "dedup", "chats", "chat_members",
	"user_chats", "read_markers", "device_cursors", "chat_cursors", "push_subscriptions", "push_ledger"}

// truncate empties the data tables of s's keyspace: much cheaper than a new
// keyspace per sub-test (schema changes take seconds on Cassandra).
func truncate(tb testing.TB, s *Store) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(dataTables))
	for i, table := range dataTables {
		wg.Go(func() { errs[i] = s.sess.Query("TRUNCATE " + table).Exec() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("TRUNCATE: %v", err)
	}
}

// freshStore opens a store on cfg's keyspace and empties it.
func freshStore(t *testing.T, cfg Config) storetest.Store {
	t.Helper()
	s := openStore(t, cfg)
	truncate(t, s)
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the storage conformance suite with the default
// bucket size (every test chat fits one bucket) and with 7 seqs per bucket,
// so that batches, pages and LastSeq cross partitions.
func TestConformance(t *testing.T) {
	for _, bucket := range []uint64{DefaultBucketSize, 7} {
		t.Run(fmt.Sprintf("bucket=%d", bucket), func(t *testing.T) {
			cfg := testConfig(t)
			cfg.BucketSize = bucket
			start := time.Now()
			openStore(t, cfg).Close() // create the keyspace once
			t.Logf("keyspace %s created in %v", cfg.Keyspace, time.Since(start))
			storetest.Run(t, func(t *testing.T) storetest.Store { return freshStore(t, cfg) })
			t.Run("Persistent", func(t *testing.T) {
				freshStore(t, cfg).Close()
				storetest.RunPersistent(t, func(t *testing.T, _ string) storetest.Store { return openStore(t, cfg) })
			})
		})
	}
}

// TestStore covers what the suite cannot see: two processes on one chat,
// rollback of a refused multi-partition batch, retried transactions, the
// bucket size guard.
func TestStore(t *testing.T) {
	cfg := testConfig(t)
	cfg.BucketSize = 7
	openStore(t, cfg).Close()
	tests := []struct {
		name string
		fn   func(t *testing.T, cfg Config)
	}{
		{"TwoNodesRaceSameSeq", testTwoNodesRace},
		{"TwoNodesRaceCrossChat", testTwoNodesCrossChat},
		{"RestartedNodeStaleSeq", testRestartedNode},
		{"RollbackAcrossBuckets", testRollback},
		{"RetriedTransaction", testRetriedTransaction},
		{"BucketSizeFixed", testBucketSizeFixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			truncate(t, openStore(t, cfg))
			tc.fn(t, cfg)
		})
	}
}

// testTwoNodesRace: two stores with their own sessions, like two logic
// nodes that both believe they own a chat, append the same (chat, seq).
// Exactly one wins, the other gets ErrConflict, the row is the winner's.
func testTwoNodesRace(t *testing.T, cfg Config) {
	ctx := t.Context()
	nodes := []*Store{openStore(t, cfg), openStore(t, cfg)}
	defer nodes[0].Close()
	defer nodes[1].Close()
	const chat = "g:contested"
	for seq := uint64(1); seq <= 20; seq++ {
		errs := make([]error, len(nodes))
		sent := make([]record.Message, len(nodes))
		var wg sync.WaitGroup
		for n, s := range nodes {
			sent[n] = storetest.Msg(chat, seq)
			sent[n].Sender = fmt.Sprintf("node%d", n)
			sent[n].RequestID = fmt.Sprintf("r%d-%d", n, seq)
			sent[n].Body = fmt.Sprintf("from node %d", n)
			wg.Go(func() { errs[n] = s.AppendMessages(ctx, []record.Message{sent[n]}) })
		}
		wg.Wait()
		winner := -1
		for n, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("seq %d: got two winners", seq)
				}
				winner = n
			case !errors.Is(err, record.ErrConflict):
				t.Fatalf("seq %d node %d: got %v, want nil or ErrConflict", seq, n, err)
			}
		}
		if winner < 0 {
			t.Fatalf("seq %d: got no winner, want one", seq)
		}
		for n, s := range nodes { // both nodes read the winner's row
			got, err := s.Message(ctx, chat, seq)
			if err != nil || got != sent[winner] {
				t.Fatalf("seq %d node %d: got %+v, %v, want %+v", seq, n, got, err, sent[winner])
			}
			loser := sent[1-winner]
			_, err = s.LookupDedup(ctx, record.DedupKey{ChatID: chat, Sender: loser.Sender, RequestID: loser.RequestID})
			if !errors.Is(err, record.ErrNotFound) {
				t.Fatalf("seq %d: loser's dedup key: got %v, want ErrNotFound", seq, err)
			}
		}
	}
	for n, s := range nodes {
		if got, err := s.LastSeq(ctx, chat); err != nil || got != 20 {
			t.Fatalf("node %d: LastSeq: got %d, %v, want 20", n, got, err)
		}
	}
}

// testTwoNodesCrossChat: two nodes append batches over the same two chats
// in opposite orders. At most one batch wins; a losing batch leaves
// nothing behind, even the partitions it won before losing another.
func testTwoNodesCrossChat(t *testing.T, cfg Config) {
	ctx := t.Context()
	nodes := []*Store{openStore(t, cfg), openStore(t, cfg)}
	defer nodes[0].Close()
	defer nodes[1].Close()
	chats := []string{"g:x", "g:y"}
	next := uint64(1)
	for range 10 {
		errs := make([]error, 2)
		batches := make([][]record.Message, 2)
		var wg sync.WaitGroup
		for n, s := range nodes {
			for i := range chats {
				m := storetest.Msg(chats[(i+n)%2], next)
				m.Body = fmt.Sprintf("node %d", n)
				m.RequestID = fmt.Sprintf("n%d-%d-%d", n, i, next)
				batches[n] = append(batches[n], m)
			}
			wg.Go(func() { errs[n] = s.AppendMessages(ctx, batches[n]) })
		}
		wg.Wait()
		winner := -1
		for n, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("seq %d: got two winners", next)
				}
				winner = n
			case !errors.Is(err, record.ErrConflict):
				t.Fatalf("seq %d node %d: got %v, want nil or ErrConflict", next, n, err)
			}
		}
		for _, chat := range chats {
			got, err := nodes[0].Message(ctx, chat, next)
			if winner < 0 {
				// Both lost (each won one chat first): both rolled back.
				if !errors.Is(err, record.ErrNotFound) {
					t.Fatalf("seq %d chat %s with no winner: got %+v, %v, want ErrNotFound", next, chat, got, err)
				}
				continue
			}
			if err != nil || got.Body != fmt.Sprintf("node %d", winner) {
				t.Fatalf("seq %d chat %s: got %+v, %v, want node %d's row", next, chat, got, err, winner)
			}
		}
		if winner >= 0 {
			next++
		}
	}
	t.Logf("%d of 10 rounds had a winner", next-1)
	for _, chat := range chats {
		if got, err := nodes[1].LastSeq(ctx, chat); err != nil || got != next-1 {
			t.Fatalf("LastSeq(%s): got %d, %v, want %d", chat, got, err, next-1)
		}
	}
}

// testRestartedNode: a node appends, dies; its successor takes over from
// LastSeq; the old node, back with a stale view, cannot overwrite.
func testRestartedNode(t *testing.T, cfg Config) {
	ctx := t.Context()
	const chat = "g:handover"
	old := openStore(t, cfg)
	if err := old.AppendMessages(ctx, storetest.Msgs(chat, 1, 9)); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	old.Close()
	successor := openStore(t, cfg)
	defer successor.Close()
	last, err := successor.LastSeq(ctx, chat)
	if err != nil || last != 9 {
		t.Fatalf("LastSeq: got %d, %v, want 9", last, err)
	}
	if err := successor.AppendMessages(ctx, storetest.Msgs(chat, last+1, last+1)); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	stale := openStore(t, cfg) // the old node again, still believing last = 9
	defer stale.Close()
	m := storetest.Msg(chat, 10)
	m.Body = "stale"
	if err := stale.AppendMessages(ctx, []record.Message{m}); !errors.Is(err, record.ErrConflict) {
		t.Fatalf("stale append: got %v, want ErrConflict", err)
	}
	if got, err := stale.Message(ctx, chat, 10); err != nil || got != storetest.Msg(chat, 10) {
		t.Fatalf("Message(10): got %+v, %v, want the successor's", got, err)
	}
}

// testRollback: a batch spanning buckets and chats whose last partition
// conflicts leaves no row, no dedup key and no visible seq behind.
func testRollback(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	const a, b = "g:ra", "g:rb"
	if err := s.AppendMessages(ctx, storetest.Msgs(a, 1, 6)); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	batch := append(storetest.Msgs(a, 7, 16), storetest.Msgs(b, 1, 4)...) // buckets 1, 2 of a; 0 of b
	batch = append(batch, storetest.Msg(a, 3))                            // taken
	if err := s.AppendMessages(ctx, batch); !errors.Is(err, record.ErrConflict) {
		t.Fatalf("AppendMessages: got %v, want ErrConflict", err)
	}
	for _, c := range []struct {
		chat string
		last uint64
	}{{a, 6}, {b, 0}} {
		if got, err := s.LastSeq(ctx, c.chat); err != nil || got != c.last {
			t.Fatalf("LastSeq(%s): got %d, %v, want %d", c.chat, got, err, c.last)
		}
		if got, err := s.Messages(ctx, c.chat, record.Page{After: 1}); err != nil || len(got) != max(int(c.last)-1, 0) {
			t.Fatalf("Messages(%s): got %d messages, %v, want %d", c.chat, len(got), err, max(int(c.last)-1, 0))
		}
	}
	for _, m := range batch[:len(batch)-1] {
		if m.RequestID == "" {
			continue
		}
		_, err := s.LookupDedup(ctx, record.DedupKey{ChatID: m.ChatID, Sender: m.Sender, RequestID: m.RequestID})
		if !errors.Is(err, record.ErrNotFound) {
			t.Fatalf("LookupDedup(%s/%d): got %v, want ErrNotFound", m.ChatID, m.Seq, err)
		}
	}
	// The seqs are free again.
	if err := s.AppendMessages(ctx, batch[:len(batch)-1]); err != nil {
		t.Fatalf("AppendMessages after rollback: %v", err)
	}
	if got, err := s.LastSeq(ctx, a); err != nil || got != 16 {
		t.Fatalf("LastSeq: got %d, %v, want 16", got, err)
	}
}

// testRetriedTransaction: resending a partition's conditional batch with
// the same write id (what the driver's retry policy does after a timeout)
// counts as applied, never as a conflict.
func testRetriedTransaction(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	msgs := storetest.Msgs("g:retry", 1, 3)
	parts, err := s.partition(msgs)
	if err != nil || len(parts) != 1 {
		t.Fatalf("partition: got %d parts, %v, want 1", len(parts), err)
	}
	wid, _ := gocql.RandomUUID()
	other, _ := gocql.RandomUUID()
	for i, tc := range []struct {
		wid  gocql.UUID
		want bool
	}{{wid, true}, {wid, true}, {other, false}} {
		got, err := s.insertPart(ctx, parts[0], tc.wid)
		if err != nil || got != tc.want {
			t.Fatalf("attempt %d: got applied %v, %v, want %v", i, got, err, tc.want)
		}
	}
}

func testBucketSizeFixed(t *testing.T, cfg Config) {
	cfg.BucketSize = 1000
	_, err := Open(t.Context(), cfg, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "bucket_size") {
		t.Fatalf("Open with another bucket size: got %v, want a bucket_size error", err)
	}
}
