// Package lease keeps a logic node's sequencing leases: chats map to a
// fixed number of slots, and a slot's lease holder is the only node that
// assigns seqs to its chats (see ARCHITECTURE.md, "Sequencing under
// leases"). The leases live in the store (a row per slot: owner, epoch,
// version), written only by conditional writes (lightweight transactions on
// CQL); the ring of live logic nodes only says which node should try to
// hold a slot.
//
// # Timing
//
// Every duration is measured on the node's monotonic clock; nodes compare
// no timestamps. With D = Config.Duration and ε = Config.Margin:
//
//   - A holder's lease is valid until the send time of its last successful
//     acquisition or renewal + D − ε. It renews every Config.Renew (D/3 by
//     default) with one conditional batch for all its slots, sequences a
//     slot's chats only while the lease is valid, bounds its message writes
//     and group changes by that deadline and acknowledges only writes that
//     completed before it.
//   - A node that wants a slot another node holds takes it only after the
//     row (owner, epoch, version) stayed unchanged for D + ε since it first
//     saw it (at the completion of a read, which is after the renewal that
//     wrote it was sent), by a conditional write on that very version, at
//     epoch + 1. A renewal that commits first makes the take fail; a take
//     that commits first makes the renewal fail. A free slot (never held,
//     or released) is taken at once.
//   - So two nodes never both hold a valid lease of one slot, provided the
//     two clocks advance at rates that differ by less than ε/D (2ε over
//     the interval; monotonic clocks drift by parts per million) and a
//     process that stalls (a pause, a long GC) checks its deadline again
//     before it acknowledges: a stalled holder misses its deadline and
//     stops, and its late writes, stamped with its older epoch, lose to
//     the new holder's fence in the store.
//   - A holder that leaves the ring's choice (a node joined) clears its
//     grant (Grant stops answering for the slot at once) and releases the
//     row in the same round, so the successor need not wait; its message
//     writes still in flight carry the old epoch and lose to the
//     successor's fence (membership writes carry none: see ARCHITECTURE.md).
//
// What a node failure costs: the dead node's slots are unavailable (sends
// to their chats are answered unavailable with retry_after_ms, nothing is
// lost) until a survivor sees the dead node leave its ring and the lease
// expire: at most D + ε + Config.Poll after the last renewal, plus one
// conditional write and, per chat at its first use, a fence.
//
// # Concurrency
//
// A Keeper runs its loop in one goroutine (Run); its query methods
// (Grant, Holder) are safe for concurrent use from any goroutine and take
// no locks on the hot path.
//
// Tier: logic. Imports internal/record only.
package lease
