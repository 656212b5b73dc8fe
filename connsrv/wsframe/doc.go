// Package wsframe parses and builds WebSocket (RFC 6455) frames over byte
// slices, without allocating, for the connection tier (connsrv).
//
// gobwas/ws supplies the types (ws.Header, ws.OpCode, ws.StatusCode) and the
// unmasking cipher (ws.Cipher); its io.Reader based readers are not used
// because an event-loop callback must never block on a partial frame. Here
// every parser works on the bytes already buffered and reports "need more"
// (n == 0, err == nil) instead of reading.
//
// What is accepted (the server side of the Parley client protocol):
//   - no extensions: any RSV bit set is a protocol error (1002);
//   - client frames must be masked (1002);
//   - control frames carry at most 125 bytes and are never fragmented (1002);
//   - a frame's declared payload length is checked against the frame limit
//     as soon as the length field is readable, before the payload is
//     buffered (1009);
//   - fragmented messages are reassembled by an Assembler, capped at the
//     message limit (1009);
//   - text messages must be valid UTF-8 (1007); binary messages are refused
//     (1003) because the client protocol is JSON text.
//
// Every error is a *Error carrying the close code to send; CloseCode maps
// any error to one.
//
// # Concurrency
//
// All functions are pure and safe for concurrent use. An Assembler belongs
// to one connection and is used by one goroutine (its event loop) at a time.
//
// Tier: connsrv.
package wsframe
