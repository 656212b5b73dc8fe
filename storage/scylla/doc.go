// Package scylla is Parley's storage backend for fleets: the storage
// contract (storage.Store) on ScyllaDB or Apache Cassandra over CQL.
// It passes storage/storetest like the embedded storage/pebble; its
// integration tests run against a real Cassandra 5.0 node (see
// scripts/cassandra.sh) when PARLEY_CQL_HOSTS is set.
//
// # Driver
//
// The driver is github.com/scylladb/gocql, the ScyllaDB fork of gocql, under
// the upstream import path github.com/gocql/gocql (go.mod replaces one with
// the other). On ScyllaDB it is shard-aware: one connection per shard, each
// statement sent to the shard that owns its partition; on Cassandra (our
// test stand-in) it behaves like upstream gocql. The protocol is pinned to
// v4 (ScyllaDB speaks v4; letting the driver negotiate v5 with Cassandra 5
// fails). Routing is token-aware over round robin, or over DC-aware round
// robin with Config.LocalDC. Reads and writes use Config.Consistency
// (LOCAL_QUORUM), lightweight transactions Config.SerialConsistency
// (LOCAL_SERIAL). The retry policy (exponential backoff, Config.Retries)
// resends what is marked idempotent: reads, plain writes of fixed values,
// the batches of plain writes whose cells carry fixed values or fixed
// timestamps (dedup keys, lease-mode message rows, markers and cursors, a
// direct chat's member rows), and the single-row lease transactions (a
// lost answer is recognised by the version the keeper finds). Conditional
// batches (LWT-mode message rows, lease renewals) and the logged
// membership batches of groups are never resent by the driver: their callers retry, recognising their own earlier
// attempt by content (appends, below) or version (renewals). Only reads
// are speculated (Config.SpeculativeAttempts, off by default). Statement strings are constants, so gocql prepares each once
// per connection.
//
// # Schema (migrations 1 to 6, schema.go)
//
// Open creates the keyspace (Config.Replication: SimpleStrategy with a
// factor or NetworkTopologyStrategy with per-DC factors) and applies
// pending migrations, each recorded in schema_version. All statements are
// idempotent (CREATE ... IF NOT EXISTS, ALTER ... WITH) and valid on
// Cassandra 4+/5 and ScyllaDB 5+.
//
//	messages       ((chat_id, bucket), seq DESC) sender, device, request_id,
//	               ts, kind tinyint, body blob, wid uuid (unused since 3)
//	chat_buckets   (chat_id, bucket DESC)            every bucket of a chat
//	dedup_keys     (chat_id, sender, request_id) seq USING TTL dedup_ttl;
//	               time-window compaction, gc_grace 1h (TTL only);
//	               request_id is "device/request-id" (a bare id before
//	               migration 4: read only while such keys can be alive)
//	dedup          ((chat_id, sender, request_id)) seq  migration 1's keys,
//	               read only while they can be alive (legacy keyspaces)
//	chats          (chat_id) kind, name, created_by, created_at, wid
//	chat_members   (chat_id, user_id)                Members, ascending
//	chat_roles     (chat_id, user_id) role, joined   GroupMembers (migration 6;
//	               absent for members from before: RoleUnset)
//	user_chats     (user_id, chat_id)                UserChats
//	read_markers   (user_id, chat_id) seq
//	device_cursors ((user_id, device), chat_id) seq  no longer read or
//	               written: a copy of chat_cursors, kept beside it before
//	chat_cursors   (chat_id, user_id, device) seq    ChatCursors, DeviceCursor
//	leases         (grp, slot) owner, epoch, version LWT only (lease.go)
//	settings       (name) value                      fixed at creation
//	push_subscriptions (user_id, device) endpoint, p256dh, auth, created_at
//	user_settings  (user_id) hide_last_seen          UserSettings (migration 5)
//	push_ledger    (key) wid uuid    LWT only, USING TTL (MarkPushed);
//	               time-window compaction, gc_grace 1h
//
// bucket = seq / Config.BucketSize (default 1000), so a chat's messages
// spread over partitions of at most BucketSize rows and no chat grows an
// unbounded partition. body is a blob so that any Go string round-trips
// byte for byte. The settings the first Open records, and later ones must
// match, are bucket_size, sequencing (lwt or lease) and, under leases,
// slots; a keyspace created before migration 3 is recorded as lwt, with
// legacy_dedup_until (the old dedup table's keys expire by then); one
// created before migration 4 records unscoped_dedup_until (its dedup keys
// not scoped per device expire by then).
//
// # Sequencing: two modes
//
// A chat's seq must stay unique and ordered when two logic nodes, or a
// restarted one, could write the same chat. The store, not the writer, has
// the last word, in one of two ways chosen at creation
// (Config.Sequencing):
//
// Lightweight transactions ("lwt"). Every message row is written by INSERT
// ... IF NOT EXISTS, one conditional batch per (chat, bucket). Of two writers
// of the same seq, Paxos lets exactly one insert the row; the other gets
// record.ErrConflict (the logic tier reloads the chat and the client
// retries). A row, once written, is never overwritten: the messages table is
// only ever touched by lightweight transactions in this mode, so the Paxos
// and timestamp orderings never mix on those cells. The cost is Paxos per
// append: four round trips between coordinator and replicas on Cassandra
// (fewer with paxos_variant: v2), each writing system.paxos.
//
// Leases ("lease", see logic/lease). Chats map to Config.Slots slots; a
// slot's lease (the leases table, written only by lightweight transactions:
// acquisition, a renewal per node every second, release) names the only
// node that may sequence its chats, with an epoch that grows with every
// acquisition. Message rows are then plain writes at the configured
// consistency (LOCAL_QUORUM), one unlogged batch per partition, stamped
// USING TIMESTAMP with the writer's (epoch, seq) (leaseTimestamp in
// append.go): 1<<62 | epoch<<41 | seq<<8 | revision. When a node starts
// using a chat in a new epoch it calls Fence: it reads the head at the
// configured consistency and deletes, stamped (epoch, 0), the span of seqs
// above it (a range tombstone in the head's bucket, partition tombstones in
// the next ones). Every write of an older epoch that lands later (a paused
// node, a driver retry, a hint replayed) sorts below the fence and stays
// invisible; the new epoch's rows sort above it; nothing stamped by the real
// clock can win over either. A row and a fence of one epoch never meet
// (the holder fences before writing). Lightweight transactions then follow
// lease churn, not the message rate. What the store cannot do in this mode
// is detect two writers of one seq in one epoch: the lease excludes them.
// The window it leaves: a write of an older epoch that lands between a new
// holder's head read and its fence is readable for that moment (it was
// never acknowledged: a holder acknowledges only writes that completed
// before its lease ended).
//
// LastSeq is derived, not stored, in both modes: it reads the newest row
// of the newest non-empty bucket (chat_buckets gives the buckets newest
// first; a bucket marker is written, idempotently and before any row of
// that bucket, once per process and bucket). A counter would cost a second
// transaction per append in LWT mode and could run ahead of the rows.
//
// # Appends
//
// AppendMessages takes one append per chat (record.ChatAppend) and answers
// per chat (record.AppendResult); chats are written in parallel and never
// affect each other. Within a chat: under LWT first the dedup keys (one
// unlogged batch, the chat's partition of dedup_keys), then the bucket
// markers, then the partitions one after another in seq order; under
// leases the bucket markers, then the partitions, each in one unlogged
// batch with its messages' dedup keys (one request per partition, not
// two; a partition above 4 KiB sends its keys in a batch of their own
// alongside, since Cassandra refuses multi-partition batches above 50 KiB).
// The first failure ends
// the chat's append, so what a chat has stored is always a prefix of the
// append, and a later seq can never be stored while an earlier one of the
// same append is missing. Nothing is ever rolled back: a conflict (LWT)
// leaves the stored prefix in place and reports it, and an error leaves the
// rest's outcome unknown, to be retried unchanged by the writer
// (record.AppendResult). A retry is recognised by content: under LWT a
// partition refused because its rows exist with exactly our content counts
// as stored (then the rest of the partition is tried), any other content is
// a conflict; under leases the retry rewrites the same cells with the same
// timestamps. So a seq that a reader has seen keeps its message, and no
// bucket can be left with a hole below a stored seq (TestStore/
// SeenSeqNeverReused and NoGapAfterLateWrite, the regressions of the
// all-or-nothing rollback this replaced).
//
// A dedup key is only a hint: LookupDedup trusts it only when the message
// row at its seq carries the same sender, request id and device (a bare-id
// key from before migration 4: record.UnscopedMatch). A stored message
// always has its key, so a retry after a crash between the rows and the
// client's "sent" finds it: under LWT the keys are written before the
// rows; under leases they share the rows' batch, whose two mutations
// (rows, keys) can land apart only in a write of unknown outcome, which
// its holder retries until it succeeds or loses the lease, and Fence
// writes the keys of every row it keeps before the next holder sequences.
// DedupKeys lists a chat's keys for the sequencer's filter.
//
// # Markers and cursors
//
// SaveMarks (read markers, device cursors) must never lower a value. It
// writes with USING TIMESTAMP <seq>, in unlogged batches of at most ten
// partitions, one partition's rows together: the cell with the highest seq wins Cassandra's
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
// None in the CQL used. The driver: the ScyllaDB fork reads a discovered
// node's CQL port from a column Cassandra does not fill and falls back to
// ClusterConfig.Port, so Open sets that from Config.Hosts (which must then
// name one port). LWT cost differs: Cassandra's classic Paxos takes four
// round trips between coordinator and replicas (fewer with paxos_variant:
// v2, available since 4.1, which our test clusters run), ScyllaDB's three,
// and ScyllaDB runs them on the owning shard; either way one costs several
// times a plain write, which is why lease sequencing keeps them off the
// message path. Multi-DC: the leases' transactions use
// Config.SerialConsistency; LOCAL_SERIAL (the default) is only safe when
// every logic node that can hold a slot writes through the same data
// centre; a fleet spread over data centres must use SERIAL (a cross-DC
// Paxos round per renewal) or partition slots by DC. On ScyllaDB releases
// whose tablets do not support LWT, create the keyspace with tablets
// disabled (CREATE KEYSPACE ... AND tablets = {'enabled': false}) before the
// first Open. Concurrent first Opens of several nodes run the same CREATE
// TABLE IF NOT EXISTS at once, which Cassandra before 5 can turn into a
// schema disagreement: start one node first, or create the schema with one
// node.
//
// Tier: storage. Imports only internal/record of Parley's packages.
package scylla
