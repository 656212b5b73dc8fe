// Package scylla is Parley's storage backend for fleets: the logic tier's
// Store contract (logic/store.go) on ScyllaDB or Apache Cassandra over CQL.
// It passes storage/storetest like the embedded storage/pebble; its
// integration tests run against a real Cassandra 5.0 node (see
// scripts/cassandra.sh) when PARLEY_CQL_HOSTS is set.
//
// # Driver
//
// The code uses github.com/gocql/gocql (upstream) and only API that the
// ScyllaDB fork github.com/scylladb/gocql keeps under the same import path.
// A ScyllaDB fleet gets shard-aware routing (one connection per shard,
// statements sent to the owning shard) by adding to go.mod
//
//	replace github.com/gocql/gocql => github.com/scylladb/gocql vX.Y.Z
//
// and nothing else. The protocol is pinned to v4 (ScyllaDB speaks v4;
// letting the driver negotiate v5 with Cassandra 5 fails). Routing is
// token-aware over round robin, or over DC-aware round robin with
// Config.LocalDC. Reads and writes use Config.Consistency (LOCAL_QUORUM),
// lightweight transactions Config.SerialConsistency (LOCAL_SERIAL). Every
// statement is idempotent (plain writes set fixed values; lightweight
// transactions are made retry-safe by a write id, below), so the retry
// policy (exponential backoff, Config.Retries) covers all of them; only
// reads are speculated (Config.SpeculativeAttempts, off by default).
// Statement strings are constants, so gocql prepares each once per
// connection.
//
// # Schema (migrations 1 and 2, schema.go)
//
// Open creates the keyspace (Config.Replication: SimpleStrategy with a
// factor or NetworkTopologyStrategy with per-DC factors) and applies
// pending migrations, each recorded in schema_version. All statements are
// CREATE ... IF NOT EXISTS and valid on Cassandra 4+/5 and ScyllaDB 5+.
//
//	messages       ((chat_id, bucket), seq DESC) sender, device, request_id,
//	               ts, kind tinyint, body blob, wid uuid
//	chat_buckets   (chat_id, bucket DESC)            every bucket of a chat
//	dedup          ((chat_id, sender, request_id)) seq    USING TTL dedup_ttl
//	chats          (chat_id) kind, name, created_by, created_at, wid
//	chat_members   (chat_id, user_id)                Members, ascending
//	user_chats     (user_id, chat_id)                UserChats
//	read_markers   (user_id, chat_id) seq
//	device_cursors ((user_id, device), chat_id) seq  DeviceCursor
//	chat_cursors   (chat_id, user_id, device) seq    ChatCursors
//	settings       (name) value                      bucket_size
//	push_subscriptions (user_id, device) endpoint, p256dh, auth, created_at
//	push_ledger    (key) wid uuid    LWT only, USING TTL (MarkPushed)
//
// bucket = seq / Config.BucketSize (default 1000), so a chat's messages
// spread over partitions of at most BucketSize rows and no chat grows an
// unbounded partition. The bucket size is recorded in settings on first
// Open; a different value is refused later, since it is part of the data
// layout. body is a blob so that any Go string round-trips byte for byte.
//
// # Sequence safety
//
// A chat's seq stays unique and ordered when two logic nodes, or a
// restarted one, write to the same chat, because the store, not the
// writer, decides: every message row is written by a lightweight
// transaction, INSERT ... IF NOT EXISTS on (chat, bucket, seq). Of two
// writers of the same seq, Paxos lets exactly one insert the row; the other
// gets applied=false and AppendMessages returns record.ErrConflict (the
// logic tier then reloads LastSeq and the client retries). A row, once
// written, is never overwritten: the messages table is only ever touched by
// lightweight transactions (inserts, and the conditional deletes of a
// rollback below), never by plain writes, so the Paxos and timestamp
// orderings never mix on those cells. Everything else (dedup keys, bucket
// markers, membership, markers, push subscriptions) is written by plain
// writes only. push_ledger rows are written only by INSERT ... IF NOT EXISTS
// USING TTL (MarkPushed; a retried transaction is recognised by its wid as
// for messages), so exactly one caller of a key is first. chats rows
// likewise are written only by INSERT ... IF NOT EXISTS, which makes
// CreateChat's ErrConflict exact.
//
// Retries: each AppendMessages call draws a random write id (wid) stored in
// its rows. A transaction whose reply was lost may be resent by the driver;
// when it then reports applied=false with rows that carry our own wid, the
// first attempt committed, and it counts as applied. So a retry never turns
// a success into a conflict. (TestStore/RetriedTransaction.)
//
// LastSeq is derived, not stored: it reads the newest row of the newest
// non-empty bucket (chat_buckets gives the buckets newest first; a bucket
// marker is written, idempotently and before any row of that bucket, once
// per process and bucket). The alternative, a chat_seq counter kept by a
// second lightweight transaction (UPDATE ... IF last = ?), would double the
// Paxos rounds of every append (four round trips each on Cassandra; on
// ScyllaDB LWTs are cheaper but still several times a plain write) to save
// one extra read on a chat's first load and in UserChats. The messages rows
// stay the single source of truth, and a rolled-back append cannot leave a
// counter ahead of the rows. Reads at LOCAL_QUORUM see every committed
// transaction; a transaction still in flight may be missed, but then the
// next append at that seq conflicts instead of overwriting.
//
// # Atomicity of AppendMessages
//
// A conditional batch (all its statements applied or none) can only span
// one partition, so a call is written as one conditional batch per
// (chat, bucket), in parallel. If any partition conflicts, the partitions
// of the same call that did apply (or whose outcome is unknown after an
// error) are deleted again with DELETE ... IF wid = <our wid> (another
// writer's rows are never touched) before ErrConflict is returned. Dedup
// keys are written only after every row is in, and if that fails, the rows
// and keys are taken back the same way. The result is what storetest
// demands: a refused batch leaves no message, seq or dedup key behind,
// across chats and buckets (TestStore/RollbackAcrossBuckets, and the
// conformance suite with 7-seq buckets). What CQL cannot give, and this
// package does not claim: isolation. Until the rollback completes (one
// round trip), readers may see rows of a batch that ends up refused, and if
// the rollback itself fails (the cluster became unreachable mid-call) those
// rows stay; the error then says so and is logged. Such rows were never
// acknowledged to a client. Two nodes racing batches over the same chats in
// opposite orders may both lose a round (each rolls back); both retry.
//
// # Markers and cursors
//
// SetReadSeq and SetDeviceCursor must never lower a value. They write with
// USING TIMESTAMP <seq>: the cell with the highest seq wins Cassandra's
// last-write-wins merge whatever the arrival order, without a read or a
// transaction. These cells must never get a real-clock write or delete (a
// microsecond timestamp would win forever); nothing does. Cassandra 5's
// minimum_timestamp guardrails must stay off (the default).
//
// # Concurrency
//
// Every method of Store is safe for concurrent use. A call fans out at
// most Config.Concurrency statements at a time. Close waits for calls in
// flight (they hold a read lock), closes the session, and makes later
// calls return record.ErrClosed.
//
// # Cassandra and ScyllaDB differences
//
// None in the CQL used. LWT cost differs: Cassandra's classic Paxos takes
// four round trips between coordinator and replicas (fewer with
// paxos_variant: v2, available since 4.1), ScyllaDB's three, and ScyllaDB
// runs them on the owning shard; either way an append costs several times a
// plain write, which is why only message rows, chat creation and the
// settings row use them. On ScyllaDB
// releases whose tablets do not support LWT, create the keyspace with
// tablets disabled (CREATE KEYSPACE ... AND tablets = {'enabled': false})
// before the first Open. Concurrent first Opens of several nodes run the same
// CREATE TABLE IF NOT EXISTS at once, which Cassandra before 5 can turn into
// a schema disagreement: start one node first, or create the schema with
// one node.
//
// Tier: storage. Imports only internal/record of Parley's packages.
package scylla
