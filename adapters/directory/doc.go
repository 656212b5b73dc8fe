// Package directory is the fleet directory in Redis: who is online, where
// each online device is connected, and which nodes are alive. Logic nodes
// write their sessions' locations and read the locations of message
// recipients; every node registers itself. It is used by the logic and
// connection tiers and the notifier (wired in cmd/); it imports only the
// leaf package record, and answers in its own types or record's, never
// in the client wire's.
//
// # Only state that can be rebuilt
//
// Redis holds presence, device locations and the node registry. All of it
// is rebuilt from the live sessions within one refresh period after Redis
// loses it (Refresh re-creates missing locations, Heartbeat re-registers).
// Sequence numbers, dedup and ack state never live here.
//
// # Fail-open
//
// With Redis down every call returns an error wrapping ErrUnavailable
// within about Config.Timeout (default 200ms; a refused connection fails at
// once), never blocks longer and never panics. Open succeeds while Redis is
// unreachable and connects in the background; the same Directory recovers
// by itself when Redis returns (no restart, no new client). Callers treat
// errors as "unknown": presence reads as offline, delivery falls back to
// the local node or to the recipient's next reconnect. Healthy tells
// whether the last call reached Redis.
//
// # Keys
//
// Every key starts with Config.KeyPrefix (default "parley:"). Keys of one
// user share the hash tag {user} and keys of one node kind the tag {kind},
// so each group lives in one Redis Cluster slot and the Lua scripts (which
// touch only one group) run on a cluster.
//
//	<prefix>loc:{<user>}           hash: field device -> location value
//	                               (value.go: format version, deadline,
//	                               write time, session id, logic node id,
//	                               connection node id); PEXPIRE LocationTTL,
//	                               raised by every Attach and Refresh
//	<prefix>seen:{<user>}          string: last seen, unix ms; PX LastSeenTTL
//	<prefix>nodes:{<kind>}         set of the node ids of kind
//	<prefix>node:{<kind>}:<id>     string: record.Node as JSON; PX NodeTTL
//
// A location is live while its deadline (write time + LocationTTL, by the
// writer's clock) has not passed, its logic node is registered, and it was
// written after that node's Started time (a restarted process reusing a
// node id does not resurrect its predecessor's sessions). Readers ignore
// the others; Attach deletes the user's expired fields, and a key no one
// refreshes expires whole. Detach deletes a field only if it still names
// the detaching session, and Refresh never overwrites another live session
// of the device: a newer session wins over a stale Detach or Refresh.
// Online means at least one live location; SetOffline records the last-seen
// time only when none is left.
//
// Node liveness is the TTL of the node's key, kept by Redis; readers drop
// ids whose key is gone from the member set (atomically, in a script).
// Logic nodes must Register before they Attach.
//
// Deadlines are compared with the reader's clock, so the fleet's clocks
// must agree to well within LocationTTL (NTP); a skew of d shortens or
// lengthens a location's life by d.
//
// # Client-side caching
//
// Locate, Lookup and Nodes read through rueidis's client-side cache (RESP3
// CLIENT TRACKING): Redis invalidates a cached key as soon as any node
// writes it, so a Locate on node A sees node B's Attach within the
// invalidation's network delay; Config.CacheTTL only bounds staleness if an
// invalidation were lost. A connection loss drops the cache. Heartbeats
// rewrite node keys every NodeTTL/3, which invalidates those entries: each
// node refetches every node record about that often, independent of the
// read rate. Commands are auto-pipelined.
//
// # Deployments
//
// One address is a single Redis; several are Redis Cluster seeds; with
// Config.SentinelMaster set they are Sentinels and the directory follows
// the master they name. Tested here: a single node (Debian's redis-server
// 7.0, scripts/redis.sh) and one Sentinel in front of it (the same binary
// with --sentinel, TestSentinel). Redis Cluster is not tested here (it needs
// several nodes); it uses the same commands, every multi-key script stays
// in one slot, and nothing needs a feature newer than Redis 7.0.
//
// # Concurrency
//
// A Directory is safe for concurrent use by any number of goroutines; all
// methods may block for at most Config.Timeout (Close up to DialTimeout).
package directory
