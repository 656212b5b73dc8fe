package scylla

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
	// PARLEY_CQL_REPLICATION: the cluster's size (scripts/test-integration.sh).
	if n, err := strconv.Atoi(os.Getenv("PARLEY_CQL_REPLICATION")); err == nil && n > 0 {
		cfg.Replication.Factor = n
	}
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
var dataTables = []string{"messages", "chat_buckets", "dedup", "dedup_keys", "chats", "chat_members",
	"user_chats", "read_markers", "device_cursors", "chat_cursors", "push_subscriptions", "push_ledger", "leases"}

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

// modes are the sequencing modes with the options the conformance suite
// needs for each.
var modes = []struct {
	name string
	opts storetest.Options
}{
	{SequencingLWT, storetest.Options{}},
	{SequencingLease, storetest.Options{Epoch: 1, NoConflicts: true}},
}

// TestConformance runs the storage conformance suite in both sequencing
// modes, with the default bucket size (every test chat fits one bucket)
// and with 7 seqs per bucket, so that appends, pages and LastSeq cross
// partitions.
func TestConformance(t *testing.T) {
	for _, mode := range modes {
		for _, bucket := range []uint64{DefaultBucketSize, 7} {
			t.Run(fmt.Sprintf("sequencing=%s/bucket=%d", mode.name, bucket), func(t *testing.T) {
				cfg := testConfig(t)
				cfg.BucketSize = bucket
				cfg.Sequencing = mode.name
				start := time.Now()
				openStore(t, cfg).Close() // create the keyspace once
				t.Logf("keyspace %s created in %v", cfg.Keyspace, time.Since(start))
				storetest.Run(t, func(t *testing.T) storetest.Store { return freshStore(t, cfg) }, mode.opts)
				t.Run("Persistent", func(t *testing.T) {
					freshStore(t, cfg).Close()
					storetest.RunPersistent(t, func(t *testing.T, _ string) storetest.Store { return openStore(t, cfg) }, mode.opts)
				})
			})
		}
	}
}

// appendOne appends msgs (one chat) at epoch and returns the result.
func appendOne(ctx context.Context, s *Store, epoch uint64, msgs ...record.Message) record.AppendResult {
	return s.AppendMessages(ctx, []record.ChatAppend{{Epoch: epoch, Msgs: msgs}})[0]
}

// TestStore covers what the suite cannot see in LWT sequencing: two
// processes on one chat, the regressions of the all-or-nothing append it
// replaced, retried transactions, the settings fixed at creation.
func TestStore(t *testing.T) {
	cfg := testConfig(t)
	cfg.BucketSize = 7
	cfg.Sequencing = SequencingLWT
	openStore(t, cfg).Close()
	tests := []struct {
		name string
		fn   func(t *testing.T, cfg Config)
	}{
		{"TwoNodesRaceSameSeq", testTwoNodesRace},
		{"TwoNodesRaceCrossChat", testTwoNodesCrossChat},
		{"RestartedNodeStaleSeq", testRestartedNode},
		{"SeenSeqNeverReused", testSeenNeverReused},
		{"NoGapAfterLateWrite", testNoGapAfterLateWrite},
		{"RetriedTransaction", testRetriedTransaction},
		{"SettingsFixed", testSettingsFixed},
		{"LegacyKeyspace", testLegacyKeyspace},
		{"UnscopedKeys", testUnscopedKeys},
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
		res := make([]record.AppendResult, len(nodes))
		sent := make([]record.Message, len(nodes))
		var wg sync.WaitGroup
		for n, s := range nodes {
			sent[n] = storetest.Msg(chat, seq)
			sent[n].Sender = fmt.Sprintf("node%d", n)
			sent[n].RequestID = fmt.Sprintf("r%d-%d", n, seq)
			sent[n].Body = fmt.Sprintf("from node %d", n)
			wg.Go(func() { res[n] = appendOne(ctx, s, 0, sent[n]) })
		}
		wg.Wait()
		winner := -1
		for n, r := range res {
			switch {
			case r.Err == nil:
				if winner >= 0 {
					t.Fatalf("seq %d: got two winners", seq)
				}
				winner = n
			case !errors.Is(r.Err, record.ErrConflict) || r.Stored != 0:
				t.Fatalf("seq %d node %d: got %+v, want stored or ErrConflict", seq, n, r)
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
			_, err = s.LookupDedup(ctx, record.MessageDedupKey(&loser))
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

// testTwoNodesCrossChat: two nodes append calls over the same two chats
// in opposite orders. Each chat has exactly one winner per seq, decided
// chat by chat: a node that loses one chat keeps what it won in the other.
func testTwoNodesCrossChat(t *testing.T, cfg Config) {
	ctx := t.Context()
	nodes := []*Store{openStore(t, cfg), openStore(t, cfg)}
	defer nodes[0].Close()
	defer nodes[1].Close()
	chats := []string{"g:x", "g:y"}
	const rounds = 10
	for seq := uint64(1); seq <= rounds; seq++ {
		res := make([][]record.AppendResult, 2)
		apps := make([][]record.ChatAppend, 2)
		var wg sync.WaitGroup
		for n, s := range nodes {
			for i := range chats {
				m := storetest.Msg(chats[(i+n)%2], seq)
				m.Body = fmt.Sprintf("node %d", n)
				m.RequestID = fmt.Sprintf("n%d-%d-%d", n, i, seq)
				apps[n] = append(apps[n], record.ChatAppend{Msgs: []record.Message{m}})
			}
			wg.Go(func() { res[n] = s.AppendMessages(ctx, apps[n]) })
		}
		wg.Wait()
		for _, chat := range chats {
			winners := 0
			winner := -1
			for n := range nodes {
				for i, a := range apps[n] {
					if a.ChatID() != chat {
						continue
					}
					switch r := res[n][i]; {
					case r.Err == nil:
						winners++
						winner = n
					case !errors.Is(r.Err, record.ErrConflict):
						t.Fatalf("seq %d chat %s node %d: got %+v, want stored or ErrConflict", seq, chat, n, r)
					}
				}
			}
			if winners != 1 {
				t.Fatalf("seq %d chat %s: got %d winners, want 1", seq, chat, winners)
			}
			got, err := nodes[1-winner].Message(ctx, chat, seq)
			if err != nil || got.Body != fmt.Sprintf("node %d", winner) {
				t.Fatalf("seq %d chat %s: got %+v, %v, want node %d's row", seq, chat, got, err, winner)
			}
		}
	}
	for _, chat := range chats {
		if got, err := nodes[1].LastSeq(ctx, chat); err != nil || got != rounds {
			t.Fatalf("LastSeq(%s): got %d, %v, want %d", chat, got, err, rounds)
		}
	}
}

// testRestartedNode: a node appends, dies; its successor takes over from
// LastSeq; the old node, back with a stale view, cannot overwrite.
func testRestartedNode(t *testing.T, cfg Config) {
	ctx := t.Context()
	const chat = "g:handover"
	old := openStore(t, cfg)
	if err := storetest.Append(ctx, old, 0, storetest.Msgs(chat, 1, 9)); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	old.Close()
	successor := openStore(t, cfg)
	defer successor.Close()
	last, err := successor.LastSeq(ctx, chat)
	if err != nil || last != 9 {
		t.Fatalf("LastSeq: got %d, %v, want 9", last, err)
	}
	if err := storetest.Append(ctx, successor, 0, storetest.Msgs(chat, last+1, last+1)); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
	stale := openStore(t, cfg) // the old node again, still believing last = 9
	defer stale.Close()
	m := storetest.Msg(chat, 10)
	m.Body = "stale"
	if r := appendOne(ctx, stale, 0, m); !errors.Is(r.Err, record.ErrConflict) {
		t.Fatalf("stale append: got %+v, want ErrConflict", r)
	}
	if got, err := stale.Message(ctx, chat, 10); err != nil || got != storetest.Msg(chat, 10) {
		t.Fatalf("Message(10): got %+v, %v, want the successor's", got, err)
	}
}

// testSeenNeverReused is the regression test of a seq seen and then
// reused: an append of two chats where the second conflicts used to roll
// back the first chat's rows after they were readable, and its writer then
// stored another message at the same seq. A reader that saw the first
// version and later got the second dropped it as a duplicate. Now a seq,
// once readable, keeps its message: every body a reader ever sees at X:1
// is the final one.
func testSeenNeverReused(t *testing.T, cfg Config) {
	ctx := t.Context()
	a, b, reader := openStore(t, cfg), openStore(t, cfg), openStore(t, cfg)
	defer a.Close()
	defer b.Close()
	defer reader.Close()
	for round := range 20 {
		x, y := fmt.Sprintf("g:seen-x%d", round), fmt.Sprintf("g:seen-y%d", round)
		theirs := storetest.Msg(y, 1)
		theirs.Body = "node B's"
		if r := appendOne(ctx, b, 0, theirs); r.Err != nil {
			t.Fatalf("round %d: node B's append: %+v", round, r)
		}
		seen := map[string]bool{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if m, err := reader.Message(ctx, x, 1); err == nil {
					seen[m.Body] = true
				}
			}
		})
		first := storetest.Msg(x, 1)
		first.Body = "a"
		res := a.AppendMessages(ctx, []record.ChatAppend{{Msgs: []record.Message{first}}, {Msgs: []record.Message{storetest.Msg(y, 1)}}})
		if res[0].Err != nil || !errors.Is(res[1].Err, record.ErrConflict) {
			t.Fatalf("round %d: got %+v, want X stored and Y refused", round, res)
		}
		// What node A's sequencer did after a refused call: reload and
		// store the message again, here with other content.
		second := storetest.Msg(x, 1)
		second.Body = "b"
		appendOne(ctx, a, 0, second)
		close(stop)
		wg.Wait()
		final, err := reader.Message(ctx, x, 1)
		if err != nil {
			t.Fatalf("round %d: Message(X, 1): %v", round, err)
		}
		for body := range seen {
			if body != final.Body {
				t.Fatalf("round %d: a reader saw %q at X:1, which now holds %q", round, body, final.Body)
			}
		}
	}
}

// lateWrite makes the first write of the partition holding seq fail as if
// it timed out, and performs it after delay instead, as a driver retry or
// a slow replica would. It returns a function that waits for the late
// write.
func lateWrite(t *testing.T, s *Store, seq uint64, delay time.Duration, write func(ctx context.Context, p *part) error) func() {
	var once sync.Once
	done := make(chan error, 1)
	s.hookWritePart = func(ctx context.Context, p *part) error {
		if p.msgs[0].Seq > seq || p.msgs[len(p.msgs)-1].Seq < seq {
			return nil
		}
		fired := false
		once.Do(func() {
			fired = true
			go func() {
				time.Sleep(delay)
				done <- write(context.Background(), p)
			}()
		})
		if fired {
			return fmt.Errorf("injected: the write of seq %d timed out: %w", seq, context.DeadlineExceeded)
		}
		return nil
	}
	return func() {
		if err := <-done; err != nil {
			t.Errorf("late write: %v", err)
		}
	}
}

// testNoGapAfterLateWrite is the regression test of a permanent gap: an
// append spanning two buckets whose first bucket applied and whose second
// timed out was rolled back whole, and the second bucket's write then
// landed late: LastSeq covered a seq that was missing for good. Now the
// first bucket stays, the unknown rest is retried unchanged until known,
// and the late write changes nothing: seqs stay dense.
func testNoGapAfterLateWrite(t *testing.T, cfg Config) {
	testNoGap(t, cfg, 0, func(s *Store, p *part) func(ctx context.Context, p *part) error {
		return func(ctx context.Context, p *part) error {
			_, err := s.insertPart(ctx, p)
			return err
		}
	})
}

func testNoGap(t *testing.T, cfg Config, epoch uint64, late func(s *Store, p *part) func(ctx context.Context, p *part) error) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	for _, retryFirst := range []bool{false, true} {
		chat := fmt.Sprintf("g:gap-%v", retryFirst)
		if r := appendOne(ctx, s, epoch, storetest.Msgs(chat, 1, 5)...); r.Err != nil {
			t.Fatalf("AppendMessages: %+v", r)
		}
		msgs := storetest.Msgs(chat, 6, 7) // buckets 0 and 1 (7 seqs each)
		wait := lateWrite(t, s, 7, 300*time.Millisecond, late(s, nil))
		r := appendOne(ctx, s, epoch, msgs...)
		if r.Err == nil || errors.Is(r.Err, record.ErrConflict) || r.Stored != 1 {
			t.Fatalf("append across buckets with a timed-out second bucket: got %+v, want 1 stored and an unknown outcome", r)
		}
		if !retryFirst {
			wait()
		}
		// The writer retries the unknown part unchanged until it knows.
		s.hookWritePart = nil
		if r := appendOne(ctx, s, epoch, msgs[r.Stored:]...); r.Err != nil || r.Stored != 1 {
			t.Fatalf("retry of the unknown part: got %+v, want stored", r)
		}
		if retryFirst {
			wait()
		}
		got, err := s.Messages(ctx, chat, record.Page{Limit: 10})
		if err != nil || !slices.Equal(got, storetest.Msgs(chat, 1, 7)) {
			t.Fatalf("Messages: got seqs %v, %v, want 1..7 dense", seqsOf(got), err)
		}
		if last, err := s.LastSeq(ctx, chat); err != nil || last != 7 {
			t.Fatalf("LastSeq: got %d, %v, want 7", last, err)
		}
	}
}

func seqsOf(msgs []record.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// testRetriedTransaction: resending a partition's conditional batch with
// the same content (what the driver's retry policy, or a writer that did
// not learn the outcome, does) counts as applied, never as a conflict;
// other content is a conflict.
func testRetriedTransaction(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	msgs := storetest.Msgs("g:retry", 1, 3)
	parts := s.partition(msgs)
	if len(parts) != 1 {
		t.Fatalf("partition: got %d parts, want 1", len(parts))
	}
	other := &part{chat: parts[0].chat, bucket: parts[0].bucket, msgs: slices.Clone(parts[0].msgs)}
	other.msgs[2].Body = "other"
	for i, tc := range []struct {
		p      *part
		stored int
		err    error
	}{{parts[0], 3, nil}, {parts[0], 3, nil}, {other, 2, record.ErrConflict}} {
		got, err := s.insertPart(ctx, tc.p)
		if got != tc.stored || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Fatalf("attempt %d: got %d stored, %v, want %d, %v", i, got, err, tc.stored, tc.err)
		}
	}
}

// testSettingsFixed: the bucket size, the sequencing mode and the slot
// count are part of the data layout; Open refuses another value.
func testSettingsFixed(t *testing.T, cfg Config) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.BucketSize = 1000 }, "bucket_size"},
		{func(c *Config) { c.Sequencing = SequencingLease }, "sequencing"},
	} {
		c := cfg
		tc.edit(&c)
		_, err := Open(t.Context(), c, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Open with another %s: got %v, want a %s error", tc.want, err, tc.want)
		}
	}
}

// testLegacyKeyspace: a keyspace created before migration 3 keeps LWT
// sequencing and finds the dedup keys of the old table until they expire.
func testLegacyKeyspace(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	// Make the keyspace look as it did before migration 3.
	for _, q := range []string{
		"DELETE FROM schema_version WHERE id = 3",
		"DELETE FROM settings WHERE name = 'sequencing'",
		"DELETE FROM settings WHERE name = 'legacy_dedup_until'",
	} {
		if err := s.sess.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	m := storetest.Msg("g:legacy", 2) // carries request id req-2
	if err := s.sess.Query(insertMessageLWT, m.ChatID, int64(0), int64(m.Seq), m.Sender, m.Device, m.RequestID, m.TS, int8(m.Kind), []byte(m.Body)).Exec(); err != nil {
		t.Fatalf("insert message: %v", err)
	}
	if err := s.sess.Query(`INSERT INTO dedup (chat_id, sender, request_id, seq) VALUES (?, ?, ?, ?)`, m.ChatID, m.Sender, m.RequestID, int64(m.Seq)).Exec(); err != nil {
		t.Fatalf("insert legacy dedup key: %v", err)
	}
	s.Close()

	lease := cfg
	lease.Sequencing = SequencingLease
	if _, err := Open(ctx, lease, testLogger(t)); err == nil || !strings.Contains(err.Error(), "sequencing") {
		t.Fatalf("Open of a legacy keyspace under leases: got %v, want a sequencing error", err)
	}
	s = openStore(t, cfg)
	defer s.Close()
	got, err := s.LookupDedup(ctx, record.MessageDedupKey(&m))
	if err != nil || got != m {
		t.Fatalf("LookupDedup of a legacy key: got %+v, %v, want %+v", got, err, m)
	}
	if _, complete, err := s.DedupKeys(ctx, m.ChatID, 100); err != nil || complete {
		t.Fatalf("DedupKeys of a legacy keyspace: got complete=%v, %v, want incomplete", complete, err)
	}
}

// testUnscopedKeys: a keyspace created before migration 4 holds dedup keys
// of bare request ids; until they expire LookupDedup finds them for the
// device their message came from, and only for it, and DedupKeys lists them
// as unscoped.
func testUnscopedKeys(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	m := storetest.Msg("g:unscoped", 2) // carries request id req-2, device phone-1
	if r := appendOne(ctx, s, 0, m); r.Err != nil {
		t.Fatalf("append: %v", r.Err)
	}
	// Make the keyspace look as it did before migration 4: a bare key.
	for _, q := range []string{
		"DELETE FROM schema_version WHERE id = 4",
		"DELETE FROM settings WHERE name = 'unscoped_dedup_until'",
		"DELETE FROM settings WHERE name = 'legacy_dedup_until'", // left by LegacyKeyspace
		"DELETE FROM dedup_keys WHERE chat_id = 'g:unscoped'",
	} {
		if err := s.sess.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := s.sess.Query(insertDedupKey, m.ChatID, m.Sender, m.RequestID, int64(m.Seq), 3600).Exec(); err != nil {
		t.Fatalf("insert unscoped dedup key: %v", err)
	}
	s.Close()

	s = openStore(t, cfg)
	defer s.Close()
	if s.unscopedUntil.IsZero() {
		t.Fatal("a keyspace from before migration 4 recorded no unscoped_dedup_until")
	}
	storetest.CheckUnscopedKey(t, s, m)
}

// TestLease covers sequencing under leases: the lease transactions, the
// fence, the no-gap regression with plain writes, and the zombie suite.
func TestLease(t *testing.T) {
	cfg := testConfig(t)
	cfg.BucketSize = 7
	cfg.Sequencing = SequencingLease
	cfg.Slots = 4
	openStore(t, cfg).Close()
	tests := []struct {
		name string
		fn   func(t *testing.T, cfg Config)
	}{
		{"Transactions", testLeaseTransactions},
		{"Fence", testFence},
		{"NoGapAfterLateWrite", func(t *testing.T, cfg Config) {
			testNoGap(t, cfg, 1, func(s *Store, _ *part) func(ctx context.Context, p *part) error {
				return func(ctx context.Context, p *part) error {
					_, err := s.writePart(ctx, p, 1)
					return err
				}
			})
		}},
		{"Zombie", testZombie},
		{"FenceWritesDedupKeys", testFenceWritesDedupKeys},
		{"SettingsFixed", func(t *testing.T, cfg Config) {
			for _, edit := range []func(*Config){
				func(c *Config) { c.Sequencing = SequencingLWT },
				func(c *Config) { c.Slots = 8 },
			} {
				c := cfg
				edit(&c)
				if _, err := Open(t.Context(), c, testLogger(t)); err == nil {
					t.Fatalf("Open with sequencing %s, slots %d: got nil, want an error", c.Sequencing, c.Slots)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			truncate(t, openStore(t, cfg))
			tc.fn(t, cfg)
		})
	}
}

// testLeaseTransactions: of two nodes taking a free slot at once exactly
// one gets it; renewals are conditional on the row as held; a release
// frees the slot for the next epoch.
func testLeaseTransactions(t *testing.T, cfg Config) {
	ctx := t.Context()
	a, b := openStore(t, cfg), openStore(t, cfg)
	defer a.Close()
	defer b.Close()
	rows, err := a.Leases(ctx)
	if err != nil || len(rows) != 4 {
		t.Fatalf("Leases: got %d rows, %v, want 4", len(rows), err)
	}
	for i, r := range rows {
		if r != (record.Lease{Slot: i}) {
			t.Fatalf("fresh row %d: got %+v, want free", i, r)
		}
	}
	for slot := range 4 {
		var wg sync.WaitGroup
		got := make([]record.Lease, 2)
		ok := make([]bool, 2)
		for n, s := range []*Store{a, b} {
			wg.Go(func() {
				var err error
				got[n], ok[n], err = s.AcquireLease(ctx, rows[slot], fmt.Sprintf("node%d", n))
				if err != nil {
					t.Errorf("AcquireLease: %v", err)
				}
			})
		}
		wg.Wait()
		if ok[0] == ok[1] {
			t.Fatalf("slot %d: got acquired %v and %v, want exactly one", slot, ok[0], ok[1])
		}
		if got[0] != got[1] || got[0].Epoch != 1 || got[0].Version>>versionRandBits != 1 {
			t.Fatalf("slot %d: both must see the winner's row at epoch 1: got %+v and %+v", slot, got[0], got[1])
		}
		rows[slot] = got[0]
	}
	held := []record.Lease{rows[0], rows[1]}
	renewed, current, err := a.RenewLeases(ctx, held)
	if err != nil || current != nil || len(renewed) != 2 || renewed[0].Version>>versionRandBits != 2 || renewed[1].Version>>versionRandBits != 2 {
		t.Fatalf("RenewLeases: got %+v, %+v, %v, want both at version 2", renewed, current, err)
	}
	// A stale view (the version before) renews nothing and learns the
	// rows, even when the row is one write ahead: a renewal finding the
	// row another attempt wrote never counts as applied.
	stale, current, err := a.RenewLeases(ctx, held)
	if err != nil || stale != nil || len(current) != 2 || current[0] != renewed[0] || current[1] != renewed[1] {
		t.Fatalf("stale RenewLeases: got %+v, %+v, %v, want the current rows %+v", stale, current, err, renewed)
	}
	if _, ok, err := a.ReleaseLease(ctx, held[0]); err != nil || ok {
		t.Fatalf("stale ReleaseLease: got %v, %v, want refused", ok, err)
	}
	released, ok, err := a.ReleaseLease(ctx, current[0])
	if err != nil || !ok || released.Owner != "" || released.Version <= current[0].Version {
		t.Fatalf("ReleaseLease: got %+v, %v, %v, want released at a newer version", released, ok, err)
	}
	rows, _ = b.Leases(ctx)
	if rows[0] != released {
		t.Fatalf("released row: got %+v, want %+v", rows[0], released)
	}
	l, ok, err := b.AcquireLease(ctx, rows[0], "node-b")
	if err != nil || !ok || l.Epoch != 2 || l.Owner != "node-b" {
		t.Fatalf("AcquireLease after release: got %+v, %v, %v, want node-b at epoch 2", l, ok, err)
	}
}

// testFence: a fence at epoch 2 hides every later write of epoch 1 above
// the head, in the head's bucket and the next ones, and not one of epoch 2.
func testFence(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	const chat = "g:fence"
	if err := storetest.Append(ctx, s, 1, storetest.Msgs(chat, 1, 5)); err != nil {
		t.Fatal(err)
	}
	head, err := s.Fence(ctx, chat, 2, 16)
	if err != nil || head != 5 {
		t.Fatalf("Fence: got %d, %v, want 5", head, err)
	}
	// Epoch 1's writes above the head, landing after the fence, in
	// buckets 0, 1 and 2 (seqs 6, 7..13, 14..20): invisible.
	old := storetest.Msgs(chat, 6, 20)
	for i := range old {
		old[i].Body = "zombie"
	}
	if r := appendOne(ctx, s, 1, old...); r.Err != nil {
		t.Fatalf("zombie append: %+v", r)
	}
	if last, err := s.LastSeq(ctx, chat); err != nil || last != 5 {
		t.Fatalf("LastSeq after zombie writes: got %d, %v, want 5", last, err)
	}
	if got, err := s.Messages(ctx, chat, record.Page{After: 5}); err != nil || len(got) != 0 {
		t.Fatalf("Messages after 5: got %v, %v, want none", seqsOf(got), err)
	}
	// Epoch 2's own writes show.
	if err := storetest.Append(ctx, s, 2, storetest.Msgs(chat, 6, 9)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Messages(ctx, chat, record.Page{Limit: 20})
	if err != nil || !slices.Equal(got, storetest.Msgs(chat, 1, 9)) {
		t.Fatalf("Messages: got %v, %v, want 1..9 with epoch 2's rows", seqsOf(got), err)
	}
	// A fence of a chat with no rows is harmless.
	if head, err := s.Fence(ctx, "g:empty", 3, 16); err != nil || head != 0 {
		t.Fatalf("Fence of an empty chat: got %d, %v, want 0", head, err)
	}
}

// testFenceWritesDedupKeys: rows of an older epoch that landed without
// their dedup keys (the keys' half of writePart's batch lost, its outcome
// never learnt) have their keys once a new holder fences the chat, so a
// client's retry of such a message is found, not stored twice. A key
// lives no longer than dedup_ttl after its message was sent: a message
// older than that gets none, an older one a shorter time to live.
func testFenceWritesDedupKeys(t *testing.T, cfg Config) {
	ctx := t.Context()
	s := openStore(t, cfg)
	defer s.Close()
	const chat = "g:fencekeys"
	msgs := storetest.Msgs(chat, 1, 4)
	now := time.Now()
	for i := range msgs {
		m := &msgs[i]
		m.Sender, m.Device, m.RequestID = "alice", "d1", fmt.Sprintf("r%d", m.Seq)
		switch m.Seq {
		case 1: // its key expired
			m.TS = now.Add(-time.Duration(s.dedupTTL+60) * time.Second).UnixMilli()
		case 2: // an hour old
			m.TS = now.Add(-time.Hour).UnixMilli()
		default:
			m.TS = now.UnixMilli()
		}
		// The rows' mutation alone, as writePart stamps it.
		if err := s.write(ctx, insertMessageAt, m.ChatID, int64(m.Seq/s.bucketSize), int64(m.Seq), m.Sender, m.Device,
			m.RequestID, m.TS, int8(m.Kind), []byte(m.Body), leaseTimestamp(1, m.Seq, 0)).Exec(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.write(ctx, insertBucket, chat, int64(0)).Exec(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupDedup(ctx, record.MessageDedupKey(&msgs[0])); !errors.Is(err, record.ErrNotFound) {
		t.Fatalf("LookupDedup before the fence: got %v, want not found (the rows were written without keys)", err)
	}
	if head, err := s.Fence(ctx, chat, 2, 16); err != nil || head != 4 {
		t.Fatalf("Fence: got %d, %v, want 4", head, err)
	}
	if _, err := s.LookupDedup(ctx, record.MessageDedupKey(&msgs[0])); !errors.Is(err, record.ErrNotFound) {
		t.Fatalf("LookupDedup of seq 1, sent longer than dedup_ttl ago: got %v, want not found", err)
	}
	for i := 1; i < len(msgs); i++ {
		got, err := s.LookupDedup(ctx, record.MessageDedupKey(&msgs[i]))
		if err != nil || got != msgs[i] {
			t.Fatalf("LookupDedup of seq %d after the fence: got %+v, %v, want the message", msgs[i].Seq, got, err)
		}
	}
	var ttl int
	if err := s.read(ctx, `SELECT TTL(seq) FROM dedup_keys WHERE chat_id = ? AND sender = ? AND request_id = ?`,
		chat, "alice", record.MessageDedupKey(&msgs[1]).Stored()).Scan(&ttl); err != nil {
		t.Fatal(err)
	}
	if ttl > s.dedupTTL-3600 || ttl < s.dedupTTL-3700 {
		t.Fatalf("TTL of the hour-old message's key: got %d s, want about %d", ttl, s.dedupTTL-3600)
	}
}

// testZombie is the two-epoch zombie suite: store A writes a chat at epoch
// 1, some of its writes delayed (they land late) and some sent twice (a
// driver retry landing late), and keeps writing after its deadline; store B
// takes epoch 2 after A's deadline, fences and writes. B's rows win,
// nothing of A's appears above B's head, and everything A acknowledged
// before its deadline survives.
func testZombie(t *testing.T, cfg Config) {
	ctx := t.Context()
	a, b, reader := openStore(t, cfg), openStore(t, cfg), openStore(t, cfg)
	defer a.Close()
	defer b.Close()
	defer reader.Close()
	const chat, span = "g:zombie", 64
	var (
		mu       sync.Mutex
		deadline time.Time // A's lease deadline; zero until set
		acked    = map[uint64]record.Message{}
		late     sync.WaitGroup
	)
	a.hookWritePart = func(ctx context.Context, p *part) error {
		if p.msgs[0].Seq%3 == 0 {
			time.Sleep(150 * time.Millisecond) // a slow write, landing late
		}
		return nil
	}
	stopA := make(chan struct{})
	aDone := make(chan uint64)
	go func() {
		seq := uint64(0)
		defer func() { aDone <- seq }()
		for {
			select {
			case <-stopA:
				return
			default:
			}
			seq++
			m := storetest.Msg(chat, seq)
			m.Body = fmt.Sprintf("A's %d", seq)
			r := appendOne(context.Background(), a, 1, m)
			done := time.Now()
			mu.Lock()
			d := deadline
			mu.Unlock()
			if r.Err != nil {
				t.Errorf("A's append of %d: %+v", seq, r)
				return
			}
			if d.IsZero() || done.Before(d) {
				mu.Lock()
				acked[seq] = m
				mu.Unlock()
			}
			if seq%4 == 0 { // the same write again, later: a driver retry
				late.Go(func() {
					time.Sleep(400 * time.Millisecond)
					a.writePart(context.Background(), &part{chat: chat, bucket: int64(m.Seq / a.bucketSize), msgs: []record.Message{m}}, 1)
				})
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	deadline = time.Now() // A's lease runs out: from now on A acknowledges nothing
	mu.Unlock()
	time.Sleep(50 * time.Millisecond) // the new holder takes over after A's deadline
	head, err := b.Fence(ctx, chat, 2, span)
	if err != nil {
		t.Fatalf("Fence: %v", err)
	}
	fenced := time.Now()
	// A, a zombie now, keeps writing a little longer (it cannot run more
	// than the span ahead of what it acknowledged).
	var seen sync.Map // A's rows a reader saw above B's head after the fence
	stopReader := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stopReader:
				return
			default:
			}
			msgs, err := reader.Messages(ctx, chat, record.Page{After: head, Limit: 100})
			if err != nil {
				continue
			}
			for _, m := range msgs {
				if strings.HasPrefix(m.Body, "A's") {
					seen.Store(m.Seq, m.Body)
				}
			}
		}
	})
	var bMsgs []record.Message
	for i := uint64(1); i <= 12; i++ {
		m := storetest.Msg(chat, head+i)
		m.Body = fmt.Sprintf("B's %d", head+i)
		bMsgs = append(bMsgs, m)
		if r := appendOne(ctx, b, 2, m); r.Err != nil {
			t.Fatalf("B's append of %d: %+v", head+i, r)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stopA)
	last := <-aDone
	late.Wait()
	time.Sleep(200 * time.Millisecond)
	close(stopReader)
	readers.Wait()
	if last > head+span {
		t.Fatalf("A ran %d seqs past B's head %d, beyond the fence span %d: the test is wrong", last-head, head, span)
	}
	t.Logf("A wrote up to %d (acknowledged %d before its deadline), B fenced at head %d %v after A's deadline",
		last, len(acked), head, fenced.Sub(deadline).Round(time.Millisecond))
	seen.Range(func(k, v any) bool {
		t.Errorf("a reader saw A's row %v (%v) above B's head %d after the fence", k, v, head)
		return true
	})
	got, err := reader.Messages(ctx, chat, record.Page{Before: head + 100, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	if want := head + uint64(len(bMsgs)); len(got) != int(want) {
		t.Fatalf("Messages: got seqs %v, want 1..%d dense", seqsOf(got), want)
	}
	for _, m := range got {
		switch {
		case m.Seq <= head:
			if want, ok := acked[m.Seq]; ok && m != want {
				t.Fatalf("seq %d: got %+v, want A's acknowledged %+v", m.Seq, m, want)
			}
			if !strings.HasPrefix(m.Body, "A's") {
				t.Fatalf("seq %d below B's head: got %q, want A's", m.Seq, m.Body)
			}
		default:
			if want := bMsgs[m.Seq-head-1]; m != want {
				t.Fatalf("seq %d above B's head: got %q, want B's", m.Seq, m.Body)
			}
		}
	}
	for seq := range acked {
		if seq > head {
			t.Fatalf("A acknowledged seq %d before its deadline but B's head is %d", seq, head)
		}
	}
	if lastSeq, err := reader.LastSeq(ctx, chat); err != nil || lastSeq != head+uint64(len(bMsgs)) {
		t.Fatalf("LastSeq: got %d, %v, want %d", lastSeq, err, head+uint64(len(bMsgs)))
	}
}
