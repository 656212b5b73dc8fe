// Package logic is Parley's logic tier. It accepts tier links from
// connection nodes (connsrv) that prove the fleet's link secret or show a
// verified client certificate (internal/tierlink's handshake), trusts the
// user an authenticated link names in an Open frame (connsrv verified the
// session's token at upgrade), and runs the message path:
//
//	Data frame -> proto.Decode -> chat shard worker (one goroutine owns a chat)
//	  -> membership + dedup checks -> seq = last+1 -> Store.AppendMessages
//	  (synced, group-committed) -> "sent" to the sender -> "msg" fan-out to
//	  every online device of every member.
//
// The shard worker's decisions are the sequencer core's (logic/seq); in a
// fleet on a keyspace that sequences under leases, a chat's worker runs on
// the node holding the lease of the chat's slot (logic/lease, SetLeases).
//
// Group changes (add, remove, leave, role) run on the chat's shard worker
// too: roles.go holds the rules (creator, admins, members; a group with
// members always has an admin), and each change stores its event before
// the membership or role it makes, so a retry completes it.
//
// Read requests (history, chat list, members, presence, settings) run on
// a bounded pool of goroutines and never touch the shard workers. Presence is
// answered only for related users (relations.go: 1-on-1 chats where both
// have written, group members who have written in the group); the shard
// notes each text message's sender, and a node that did not see them
// reads a chat's first and latest messages, so a presence request can
// cost a few store reads. A user's settings (settings.go: hide last-seen)
// are cached for 10 s per node.
//
// Overload: a full shard queue, or a request that waited in it longer
// than Config.QueueDeadline, is answered "overloaded" (counted, and logged
// at most every 10 s: overload.go).
//
// HTTP: the public API (http.go, JWT-authenticated) and an admin listener
// for /metrics, /healthz and /readyz (Config.AdminListen, behind
// Config.AdminToken beyond loopback). Every store call goes through a
// circuit breaker (logic/breaker, wired in breaker.go and guarded.go) that
// opens when most calls of its window fail.
//
// # Concurrency
//
// A chat is owned by exactly one shard worker (hash of the chat id), which
// serializes every mutation of that chat: sends, membership changes, acks.
// That single owner is what makes seqs strictly increasing and gapless. The
// session registry and the per-link write queues are guarded by mutexes;
// no I/O happens under a lock. Lock order: registry.mu before link.mu;
// session.dmu before deliveryWatch.mu and before link.mu, and never under
// registry.mu (never the reverse of any of these).
//
// refreshAllSeen's passes run through Service.background: they end when
// Run begins to stop, and Run waits for them (and their own reads, up to
// 2 × store_timeout). Catch-up runs they or others schedule, read handlers
// and session closes are not tracked yet (issue 16).
//
// Service methods are safe for concurrent use unless documented otherwise.
package logic
