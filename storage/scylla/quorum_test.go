package scylla

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage/storetest"
)

// TestQuorum runs on the three-node test cluster (PARLEY_CASSANDRA_NODES=3,
// started by scripts/test-integration.sh) with replication factor 3, and
// checks the quorum claims sequencing under leases rests on:
//
//   - with one replica down, LOCAL_QUORUM appends go on;
//   - a replica that missed acknowledged rows (down while they were
//     written, hinted handoff off so it stays behind) never hides them
//     from a new lease holder: the holder's fence reads the head at
//     LOCAL_QUORUM, which always includes a replica that has them.
func TestQuorum(t *testing.T) {
	if os.Getenv("PARLEY_CASSANDRA_NODES") != "3" {
		t.Skip("needs the three-node cluster (PARLEY_CASSANDRA_NODES=3; scripts/test-integration.sh starts it)")
	}
	ctx := t.Context()
	cfg := testConfig(t)
	cfg.Replication = Replication{Class: simpleStrategy, Factor: 3}
	cfg.Sequencing = SequencingLease
	cfg.Slots = 4
	a := openStore(t, cfg)
	defer a.Close()
	const chat = "g:quorum"
	if err := storetest.Append(ctx, a, 1, storetest.Msgs(chat, 1, 5)); err != nil {
		t.Fatalf("AppendMessages with every replica up: %v", err)
	}
	// Node 3 misses rows 6..10 for good: no hints for it.
	for _, n := range []string{"1", "2"} {
		nodetool(t, n, "disablehandoff")
	}
	defer func() {
		for _, n := range []string{"1", "2"} {
			nodetool(t, n, "enablehandoff")
		}
	}()
	cluster(t, "stop-node", "3")
	stopped3 := true
	defer func() {
		if stopped3 {
			cluster(t, "start-node", "3")
		}
	}()
	start := time.Now()
	if err := storetest.Append(ctx, a, 1, storetest.Msgs(chat, 6, 10)); err != nil {
		t.Fatalf("AppendMessages with one replica down: %v", err)
	}
	t.Logf("appends with node 3 down: ok (%v for 5 messages)", time.Since(start).Round(time.Millisecond))
	cluster(t, "start-node", "3")
	stopped3 = false
	// Now every quorum must include node 3 or node 2: stop node 1 so that
	// the only quorum is {2, 3}, and node 3 lacks 6..10.
	cluster(t, "stop-node", "1")
	defer cluster(t, "start-node", "1")
	b := openStore(t, cfg) // a new holder, at epoch 2
	defer b.Close()
	head, err := b.Fence(ctx, chat, 2, 64)
	if err != nil || head != 10 {
		t.Fatalf("Fence with node 1 down and node 3 behind: got head %d, %v, want 10", head, err)
	}
	if err := storetest.Append(ctx, b, 2, storetest.Msgs(chat, 11, 11)); err != nil {
		t.Fatalf("new holder's append: %v", err)
	}
	got, err := b.Messages(ctx, chat, record.Page{Limit: 20})
	if err != nil || !slices.Equal(got, storetest.Msgs(chat, 1, 11)) {
		t.Fatalf("Messages: got seqs %v, %v, want 1..11", seqsOf(got), err)
	}
}

func cluster(t *testing.T, args ...string) {
	t.Helper()
	runScript(t, nil, args...)
}

func nodetool(t *testing.T, node string, args ...string) {
	t.Helper()
	runScript(t, []string{"PARLEY_CASSANDRA_NODE=" + node}, append([]string{"nodetool"}, args...)...)
}

func runScript(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "bash", append([]string{"../../scripts/cassandra.sh"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/cassandra.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
