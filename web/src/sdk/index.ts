// Parley TypeScript SDK: a WebSocket client with the semantics of the Go
// SDK (client/): idempotent sends retried until sent, exactly-once in-order
// delivery per (chat, seq), batched cumulative acks, sync on every
// (re)connect, full-jitter reconnects, goaway. Works in browsers and in any
// runtime with a WebSocket (pass options.webSocket otherwise).
export { ParleyClient, newRequestId, permanent, retryable } from "./client.js";
export type { ClientOptions, WebSocketLike, WebSocketFactory, Logger, LogLevel } from "./client.js";
export { Orderer } from "./order.js";
export { jitter, goawayDelay } from "./backoff.js";
export { decodeServerFrame } from "./frame.js";
export * from "./types.js";
