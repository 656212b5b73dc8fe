// Package wsc is a lean WebSocket client connection for Parley's load
// generators (loadtest and bench): one net.Conn, an optional small read
// buffer, no goroutines of its own. It answers pings and close frames while
// reading and masks every frame it writes, and nothing more: it is not a
// general-purpose client (use package client for applications).
//
// Concurrency: ReadMessage must be called by one goroutine at a time;
// WriteText, WriteTexts (a batch in one write), Close and Drop (close
// without a close frame, as a network failure) are safe for concurrent use
// with it and with each other.
//
// Tier: tooling (client side); imports no tier.
package wsc
