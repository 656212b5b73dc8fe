// Package memlink is an in-process transport for the tier link: a
// net.Listener whose connections are made by Dial in the same process, as
// buffered in-memory pipes. Standalone runs its connection tier and logic
// tier in one process and links them through it; the link's frames,
// handshake and backpressure are the same as over TCP: a writer goes on
// while its reader is busy, up to a bound (pipeCap, like a socket buffer),
// then waits. Bytes are copied into the pipe and out of it, as through a
// socket, but with no syscall, no kernel buffer and no network stack:
// each direction is a buffer under a mutex, and its waiters wait on a
// sync.Cond that data, room, a close or a passed deadline broadcasts. A
// direction's deadline timer is made once and re-armed only when a
// deadline moves earlier than its next firing, since both tiers push a
// deadline ahead before every read or write.
//
// A synchronous pipe (net.Pipe: one copy, straight into the reader's
// buffer) was tried first; the writer then waits for every read, which
// coupled the two tiers' goroutines and lengthened latency tails.
//
// Tier: internal (shared by connsrv and logic through cmd/parley).
package memlink
