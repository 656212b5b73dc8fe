// Package client is the Go SDK for Parley: it speaks the JSON WebSocket
// protocol of internal/proto (docs/protocol.md) to a Parley server.
//
// Dial connects (token in an Authorization: Bearer header, or ?token= with
// Config.TokenInQuery; device as ?device=), waits for the hello frame and
// returns a Client that keeps itself connected: after a drop it reconnects
// with capped exponential backoff and full jitter. It does not reconnect
// after close codes 4001 (token expired), 4005 (auth failed), 1008
// (policy) or 4004 (replaced by another session), nor after an HTTP
// 400/401/403 at upgrade, unless Config.TokenFunc yields a different
// token; the client then stops, Err says why, and every channel is closed.
// A goaway frame closes the connection and reconnects after its
// retry_after_ms plus jitter (capped by Config.Backoff.Max), to its url
// when it names one (then kept for later reconnects; see URL). While
// connected it answers the server's WebSocket pings and sends an
// application ping when nothing arrived for the hello's heartbeat interval;
// a connection silent for three intervals is dropped and redialled.
//
// Reliable delivery: right after every hello the client sends sync with
// its positions (per chat, the highest seq handed to the app without gaps;
// from Config.Resume at first). The server answers ok, pushes every
// message after them and then synced (WaitSynced, State.Synced). Messages
// are handed to the app exactly once per (chat, seq) and in seq order per
// chat: duplicates (retransmits, catch-up overlap) are dropped and
// counted, gaps are held for the server to fill and then filled from
// history. Acks are cumulative per chat, sent once the app took the
// messages from Messages, batched (Config.AckInterval, Config.AckBatch).
// Positions returns the app's positions; persisting them and passing them
// back as Config.Resume continues without gaps or re-downloads across
// process restarts. A server that refuses sync (older versions) is caught
// up with history requests instead.
//
// Token refresh: with Config.TokenFunc the session is refreshed in-band
// before its token expires. The client reads the token's exp (and iat)
// claims without verifying them and, at about 80% of its lifetime and at
// least 5s before exp, sends {"type":"refresh","id":...,"token":...} with
// a token from TokenFunc on the live connection; the server answers ok or
// an error with code auth_failed. Failures are retried with
// Config.RetryBackoff until exp; then the server closes with 4001 and the
// reconnect path asks TokenFunc again. RefreshToken forces one refresh.
//
// Requests (Send, SendTo, History, Chats, CreateGroup, ...) are correlated
// with their answers by a random 128-bit request id. With Config.SendRetry
// a send is retried on retryable errors, timeouts and reconnects with the
// same id, so the server stores it once; a server's retry_after_ms hint is
// honoured. Sends to one destination (a chat; a 1-on-1 chat by user id or
// by dm: id alike) go out one at a time in call order (sendQueue), so a
// retried send is never overtaken. Server errors come back as *Error
// (errors.As). Config.Observe sees every frame written and read, for
// debugging and contract checks (api/apicheck).
//
// Events come on bounded channels: Messages (never dropped: when full the
// client stops reading the socket and stops acking, so the server pauses),
// Receipts and PresenceEvents (dropped and counted when full), States
// (latest state wins).
//
// Concurrency: every method of Client is safe for concurrent use. Close is
// idempotent and waits for the client's goroutines (one reader per
// connection, one heartbeat, one delivery goroutine, one ack goroutine,
// one token refresh goroutine with TokenFunc, short-lived gap fetchers) to exit. Locks: Client.mu and handoff.mu are
// never held together; the send queue has its own lock, never held with
// either.
//
// Tier: client side; it imports only the leaf packages internal/proto,
// internal/record and internal/wsclient (the WebSocket connection, shared
// with loadtest and bench).
package client
