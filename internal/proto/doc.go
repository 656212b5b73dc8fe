// Package proto is the client wire schema: the JSON frames a client and the
// server exchange over WebSocket text frames, their fields, error codes and
// close codes. docs/protocol.md is the prose version of this file; keep the
// two in step.
//
// It is a leaf package (it imports only internal/record). Decoding uses
// encoding/json with strict checks; the encoders for the hot server frames
// (msg, sent, receipt) append to a caller's buffer without allocating.
//
// All functions are pure and safe for concurrent use.
package proto
