// Package pebble is Parley's embedded default storage backend: a durable
// implementation of the storage contract (storage.Store,
// storage/contract.go) on Pebble, CockroachDB's LSM key-value engine, in
// a local directory.
//
// Why Pebble: a chat server's storage load is overwhelmingly appends of
// small immutable rows plus short range reads of recent history. An LSM tree
// turns every write into a sequential WAL append and a memtable insert, so
// the append path costs one (shared) fsync and no random I/O; recent history,
// the data read most, is still in the memtable or the newest sstables.
// Pebble is pure Go (no cgo, one static binary), runs in-process (no server
// to deploy for single-node installs), and its commit pipeline lets
// concurrent synced commits share one WAL fsync, which is the group commit
// the Store contract asks for. BenchmarkAppendParallel reports the number of
// messages per WAL fsync to show it (2-core VM, local disk, one message per
// call: 1 writer 1.0, 8 writers 4, 64 writers 25 msgs/fsync).
//
// The key layout is documented in keys.go and the value encodings in
// codec.go. Messages are keyed by chat and big-endian seq, so LastSeq is one
// reverse seek and a history page one bounded range scan.
//
// Durability: AppendMessages, CreateChat, AddMember and RemoveMember return
// after their batch is synced to the WAL (Config.Sync, default true; turning
// it off voids this promise and is for benchmarks only). SaveMarks (read
// markers and device cursors) is synced too; the logic tier coalesces marks
// and saves those that came due up to eight times an interval.
// SetRole, PutUserSettings, push subscriptions and push ledger claims
// (MarkPushed) are synced. Close syncs everything.
//
// Concurrency: every method of Store is safe for concurrent use. The
// conflict check and commit of AppendMessages (and the existence check and
// commit of CreateChat) run under a striped mutex chosen by a hash of the
// chat id, so they are atomic against concurrent writers of the same chat
// even though the logic tier already serializes per chat; writers of
// different chats run in parallel and share fsyncs. The conflict check
// reads a row only at or below the chat's ceiling, a seq no stored row
// exceeds, kept in memory under the same stripe (learnt from one reverse
// seek per chat, raised before every commit): this process is the
// database's only writer, so the usual append, above its chat's newest
// row, reads nothing. Read markers and device
// cursors are raised, and push ledger keys claimed, with a read-modify-write
// under a second, separate set of striped mutexes. Reads take no locks beyond a shared read lock that lets
// Close wait for operations in flight; after Close every method returns
// record.ErrClosed.
//
// Tier: storage. Imports only internal/record of Parley's packages.
package pebble
