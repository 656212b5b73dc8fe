// Package seq is the logic tier's sequencer core: for the chats of one shard
// worker it decides, from requests and the store's answers, which seq each
// message gets, what to append, whom to answer and what to fan out. It does
// no I/O and reads no clock: the shard worker (logic/shard.go) loads chats,
// calls the store and carries out what the core returns, so the decisions
// are tested as scenarios from testdata/ without sockets or sleeps.
//
// # What a chat holds
//
// Per chat the core keeps its metadata and sorted members, the head (the
// highest durable seq), the messages assigned but not known durable, the
// request keys it stored or assigned since the chat was loaded (exact, the
// newest Config.Keys of them) plus a Bloom filter of every key the store held
// at load and every key added since, the newest stored messages (for acks'
// receipts) and each device's delivery cursor.
//
// # Sends
//
// A request key is (user, device, request id): two devices of one user
// number their requests independently. A send is refused (not a member,
// too many in flight, ErrIDReused: its key names a message with another
// body), answered from memory (its key names a stored message), joined to
// an earlier message of the same key still on its way (in this batch, or in
// doubt), sent to the store for a lookup (the filter says the key may
// exist, or the chat has no filter; a chat whose store holds keys from
// before keys were per device also probes the bare id), or given the next
// seq. Appends carry the messages of each chat in
// seq order, the ones in doubt first.
//
// # Outcomes of an append
//
// The store answers per chat (record.AppendResult). Stored messages advance
// the head and are answered and fanned out. After a conflict the chat is
// dropped (its next use reloads it) and the rest is answered with a
// retryable error. After an unknown outcome, or a write that completed when
// the writer no longer held the chat's lease, the rest stays in doubt: its
// requests are answered with a retryable error, its seqs are never given to
// another message, and it is appended again, unchanged, with the chat's next
// append or when its retry is due, until the store gives an answer. A
// client's retry of a message in doubt waits for that answer.
//
// # Concurrency
//
// A Core is used by one goroutine (its shard worker); nothing in it is safe
// for concurrent use.
//
// Tier: logic. Imports internal/record only.
package seq
