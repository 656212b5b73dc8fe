// Package marks coalesces the logic tier's monotonic positions — device
// delivery cursors (acks) and read markers — and writes them to the store
// in the background: at most one write per (device, chat) or (user, chat)
// per interval (less an eighth: the pacing tick). A mark is written about
// one interval after it first changed: a tick every eighth of the interval
// writes, in one store call, the marks that came due (one synced batch on
// the embedded store; on CQL batches of ten partitions, in parallel), so
// the writes are spread over the interval rather than sent as one burst
// per interval that delays the message appends queued behind it at the
// store. Acks and reads then cost the shard workers no I/O, a group's acks
// no longer serialize its shard, and no mark write ever waits in front of
// a message append.
//
// Durability bound: a mark is durable within Config.Interval plus a tick
// and two store calls (the one in progress when it came due, and its own)
// after it was added; a failed write is due again one interval later,
// merged with what came since. On the embedded store each write is a
// synced batch: up to eight fsyncs an interval instead of one. A crash loses at most that window: the
// device is sent those messages again (clients drop duplicates by seq) and
// an unread count may briefly go up.
//
// Until then, Get returns the pending value, so this node's own reads (the
// chat list, a session's start) see it; other nodes of a fleet see it when
// it is written.
//
// # Concurrency
//
// Add and Get are safe for concurrent use and never block on I/O; Run is
// the writer's loop, one goroutine.
//
// Tier: logic. Imports internal/record only.
package marks
