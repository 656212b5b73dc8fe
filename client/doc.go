// Package client is the Go SDK for Parley: it speaks the JSON WebSocket
// protocol of internal/proto (docs/protocol.md) to a Parley server.
//
// Dial connects (token in an Authorization: Bearer header, or ?token= with
// Config.TokenInQuery; device as ?device=), waits for the hello frame and
// returns a Client that keeps itself connected: after a drop it reconnects
// with capped exponential backoff and full jitter, then resyncs the chats
// it has seen with history requests (the server does not replay). It does
// not reconnect after close codes 4001 (token expired), 4005 (auth failed),
// 1008 (policy) or 4004 (replaced by another session), nor after an HTTP
// 400/401/403 at upgrade, unless Config.TokenFunc yields a different
// token; the client then stops, Err says why, and every channel is closed.
// While connected it answers the server's WebSocket pings and sends an
// application ping when nothing arrived for the hello's heartbeat interval;
// a connection silent for three intervals is dropped and redialled.
//
// Requests (Send, SendTo, History, Chats, CreateGroup, ...) are correlated
// with their answers by a random 128-bit request id. With Config.SendRetry
// a send is retried on retryable errors, timeouts and reconnects with the
// same id, so the server stores it once; a server's retry_after_ms hint is
// honoured. Server errors come back as *Error (errors.As).
//
// Events come on bounded channels: Messages (never dropped: when full the
// client stops reading the socket), Receipts and PresenceEvents (dropped
// and counted when full), States (latest state wins). Delivery is at most
// once per (chat, seq), in seq order per chat; gaps are filled from history
// (see Messages). Each delivered message is acknowledged automatically.
//
// Concurrency: every method of Client is safe for concurrent use. Close is
// idempotent and waits for the client's goroutines (one reader per
// connection, one heartbeat, one delivery goroutine, short-lived gap
// fetchers) to exit.
//
// Tier: client side; it imports only the leaf packages internal/proto and
// (in tests) internal/record.
package client
