// Package connsrv is the connection tier: it holds client WebSocket
// connections on gnet event loops and relays them to the logic tier.
//
// # Flow
//
//  0. With ProxyProtocol on, the connection must come from a trusted proxy
//     (TrustedProxies, empty = any) and start with a PROXY v1 or v2 header
//     (package proxyproto), parsed from gnet's inbound buffer across
//     reads; a missing or malformed header closes the connection. The
//     header's client address replaces the socket's peer address
//     everywhere: the per-IP limit, Open.Remote sent to logic, logs.
//     Then (or at accept when ProxyProtocol is off) the client IP takes a
//     token of its connection bucket (IPConnRate per second, IPConnBurst,
//     IPRateExempt CIDRs skipped); an empty bucket gets "429 Too Many
//     Requests" with Retry-After once the request head is read (reading it
//     first keeps the close from resetting the connection before the
//     client sees the answer).
//  1. A client connects; the HTTP upgrade request is parsed on the event
//     loop once its head is complete (at most MaxHandshakeSize bytes, else
//     431). The token is taken from "Authorization: Bearer <t>", the
//     subprotocol list ("parley.v1", "bearer.<t>"; "parley.v1" is selected)
//     or the query parameter "token"; the device from the query parameter
//     "device", the token's dev claim, or "default". Refusals: 401 bad,
//     missing or expired token; 400 bad device id or request, or a device
//     other than the token's dev claim; 403 origin
//     not in AllowedOrigins; 503 the session's logic link is down.
//  2. After the upgrade the session gets an id unique in the process and is
//     bound to one link: to its user's home logic node (the rendezvous hash
//     of the user over the logic nodes with an up link, the ring the logic
//     tier computes too), and there to one of that node's pooled links by
//     session id. All its frames travel on that link connection in order
//     (TCP, or in standalone an in-process pipe: Config.LinkDial): Open
//     first, then one Data frame per complete client text message (the
//     bytes verbatim; a message that may be a refresh, below, is decoded
//     here, and a refresh is answered here),
//     then Close with the WebSocket close code.
//  3. Logic answers with Deliver (one session), Multi (many sessions, one
//     payload) and Kick (close with code and reason). Each payload becomes
//     one WebSocket text frame.
//
// # Token refresh
//
// A client message {"type":"refresh","id":"<request id>","token":"<jwt>"}
// is answered by this tier and never forwarded: messages are tested with
// bytes.Contains for `"refresh"` and only those are JSON-decoded. The
// token must verify and name the session's user and, if it has a dev
// claim, the session's device; the session's expiry then moves to the
// token's exp when that is later (an earlier exp is accepted and changes
// nothing) and the answer is {"type":"ok","id":...}. Otherwise an error
// frame with code "auth_failed" answers and the old expiry stands (4001
// when it passes).
//
// # Drain
//
// When Run's context is cancelled (SIGTERM) the server refuses new
// connections at once (closed at accept, readyz 503), then over
// DrainWindow tells every open session, in random order, in batches every
// 100ms spread evenly over the window, to reconnect elsewhere: a goaway
// frame (retry_after_ms random in [0, 1000), no url) followed by close
// 1001 in the same write, after what logic had queued for the session.
// Client messages (acks) read before that keep flowing to logic; the
// links are flushed after the last batch and the sessions' closes, then
// closed. DrainWindow 0 closes every session with 1001 at once.
//
// # Refusals and metrics
//
// Every refusal and drop is counted by reason:
// parley_connsrv_rejected_total{reason} (ip_rate, proxy_missing,
// proxy_invalid, proxy_untrusted, draining), parley_connsrv_drops_total,
// parley_connsrv_handshakes_rejected_total (401/403/431 upgrades),
// parley_connsrv_token_refresh_total{result} (ok, unchanged, invalid,
// mismatch), parley_connsrv_drain_sessions_left, parley_connsrv_drained_total,
// parley_connsrv_draining, parley_connsrv_ip_buckets and
// parley_connsrv_ip_buckets_full_total.
//
// # Close codes
//
// Protocol violations close with the wsframe code (1002, 1003, 1007, 1009).
// 1000 echoes a client close; 1001 on shutdown (after a goaway frame when
// draining); 1012 when the session's
// logic link is lost (logic lost the session: reconnect and resync);
// 4000 idle timeout; 4001 token expired; 4002 the client's write queue
// passed WriteQueueLimit.
//
// # Concurrency
//
// No goroutine, timer or eagerly allocated buffer per connection. gnet
// callbacks run on their connection's event loop and never block. Other
// goroutines (link readers, the sweeper) never write to a connection: they
// append framed bytes to the session's pending buffer under its mutex and
// wake the loop once; the loop takes the buffer, writes the whole batch in
// one call and gives the buffer back to a shared pool, so an idle session
// holds no write buffer (BenchmarkIdleConns reports heap bytes per idle
// connection). One sweeper goroutine sends heartbeats and enforces
// the idle, handshake and token-expiry timeouts for all connections and
// drops idle per-IP buckets (sharded map, bounded). Each logic link has
// one writer goroutine (one write per batch from a bounded queue; a full
// queue refuses the client message with an "overloaded" error frame) and
// one reader goroutine.
//
// Lock order: registry shard mutex, then session mutex. A link's mutex and
// a per-IP bucket shard's mutex are never held while taking another lock.
//
// Server methods document whether they are safe for concurrent use.
//
// Tier links open with tierlink's authenticated handshake (the fleet's
// link secret, Config.LinkSecret, or a client certificate); /metrics on the
// HTTP listener asks for Config.MetricsToken when one is set (required
// beyond loopback).
//
// Tier: connsrv. Imports internal/{adminauth,auth,gostats,proto,record,
// ring,tierlink,tlsconf}, connsrv/wsframe and connsrv/proxyproto; never
// logic or storage.
package connsrv
