// Package loadtest is Parley's workload generator: it opens many client
// WebSocket connections to a connection node, sends messages on an
// open-loop schedule and measures what the system delivers.
//
// Modes:
//
//   - pairs: N one-on-one pairs; in each pair one user sends to the other.
//   - group: G groups of M members; one member of each group sends, the
//     other M-1 receive.
//   - population: U users following a daily-message model (model.go):
//     log-normal messages per day compressed to a target rate, optionally
//     following a curve over the day (DayCurve), 1-on-1 chats and groups,
//     bursts and replies, presence churn (a share of
//     users offline at any time, their messages delivered by sync when they
//     come back and measured apart as offline deliveries) and a reconnect
//     storm. Its conns reconnect: sends stay pending until their sent frame
//     and are written again (same id) after a reconnect or a retryable
//     error; a reconnect syncs from the positions the conn has. At the end
//     every user comes back, so every acked message is owed to every other
//     member of its chat.
//
// Every connection is a correct client of the reliable-delivery protocol
// (docs/protocol.md): it sends sync right after hello and waits for synced
// before the measured phase, acks cumulatively per chat (batched: every
// AckInterval, or at once after AckBatch messages, as the Go SDK), and
// drops msg frames whose (chat, seq) it already has. Those server resends
// are counted as retransmits, not as duplicates; a duplicate is one send
// delivered under two different seqs (stored twice). Out-of-order means a
// first copy arrived below a seq of its chat already received.
//
// The offered rate is fixed (open loop): message k of a stream is due at a
// scheduled time whatever happened to earlier ones, and that time travels in
// the body ("lt:<due unix ns>:<stream>:<k>"). Latency is measured from the
// due time to the recipient's receipt of the first copy of the msg frame
// (send→deliver) and to
// the sender's receipt of the sent frame (send→sent), so queueing in the
// generator or the server is counted, not hidden. The report gives achieved
// throughput, quantiles from a log-linear histogram (Histogram), errors by
// kind, lost messages (acked by sent but never delivered within a grace
// period), duplicates, out-of-order deliveries and retransmits.
//
// Every run also reports over time (one Interval per ReportInterval:
// throughput, latency quantiles, errors; printed as progress) and the
// generator's own CPU per message over the window (getrusage).
//
// Hot path: frames are parsed by parseFrame (no encoding/json, no
// allocation), sends come from a few scheduler shards (4 x GOMAXPROCS),
// each waking once for everything due, and the ack flusher visits only
// conns with unacked messages and writes each conn's acks in one syscall.
//
// Concurrency: Run is safe to call from any goroutine; it uses one
// goroutine per connection (the reader, which also writes batch acks),
// the sender shards, one ack flusher, one progress goroutine and, in
// population mode, a churn goroutine and one per reconnect. Histogram,
// Schedule and the model's generators are plain values, not safe for
// concurrent mutation.
//
// Tier: tooling (client side). It imports internal/proto for frame names
// and internal/wsclient for the WebSocket connection, and no tier.
package loadtest
