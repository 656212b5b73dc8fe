// Package wsclient is Parley's one Go WebSocket client (RFC 6455, client
// side), used by the SDK (package client), the load generator (loadtest)
// and the density harness (bench).
//
// Two layers:
//   - Frames: ParseServerFrame and AppendClientFrame work on byte slices
//     and own nothing. bench's epoll poller drives its idle connections
//     with them directly, so it needs no goroutine per connection.
//   - Conn: one net.Conn with an optional read buffer and no goroutine of
//     its own. ReadMessage reassembles fragmented messages, answers pings,
//     echoes a close and returns *CloseError, and refuses a broken stream
//     (a protocol violation or an oversized message) with a close frame
//     and an error wrapping ErrProtocol. Every frame it writes is masked;
//     WriteTexts writes a batch of frames in one write call.
//
// Dialer opens Conns: the token as a bearer header (or in the query, as
// browsers must), the device in the query, an optional local address (to
// spread load over source addresses) and read buffer.
//
// Concurrency: ReadMessage, SetReadIdle and SetReadDeadline are for one
// reader goroutine; the write methods, Close, CloseWith, Drop and LastRead
// are safe for concurrent use with it and with each other.
//
// Tier: leaf (client side); imports gobwas/ws and the standard library.
package wsclient
