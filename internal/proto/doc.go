// Package proto is the client wire schema: the JSON frames a client and the
// server exchange over WebSocket text frames, their fields, error codes and
// close codes. docs/protocol.md is the prose version of this file; keep the
// two in step.
//
// It is a leaf package (it imports only internal/record). Decode is
// strict (exact-case keys, no repeated key, ids checked on every frame):
// a hand-written fast path takes the hot frames (send, ack, read) and
// leaves everything else to a fallback that checks the keys itself and
// lets encoding/json decode the values; a fuzz target checks that the two
// agree. The encoders for the hot server frames (msg, sent, receipt)
// append to a caller's buffer without allocating.
//
// All functions are pure and safe for concurrent use.
package proto
