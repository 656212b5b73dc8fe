// Package connsrv is the connection tier: it holds client WebSocket
// connections on gnet event loops and relays them to the logic tier.
//
// # Flow
//
//  1. A client connects; the HTTP upgrade request is parsed on the event
//     loop once its head is complete (at most MaxHandshakeSize bytes, else
//     431). The token is taken from "Authorization: Bearer <t>", the
//     subprotocol list ("parley.v1", "bearer.<t>"; "parley.v1" is selected)
//     or the query parameter "token"; the device from the query parameter
//     "device", the token's dev claim, or "default". Refusals: 401 bad,
//     missing or expired token; 400 bad device id or request; 403 origin
//     not in AllowedOrigins; 503 the session's logic link is down.
//  2. After the upgrade the session gets an id unique in the process and is
//     bound to one link of the pool (id modulo the number of links), so all
//     its frames travel on one TCP connection in order: Open first, then one
//     Data frame per complete client text message (the bytes verbatim, not
//     parsed here), then Close with the WebSocket close code.
//  3. Logic answers with Deliver (one session), Multi (many sessions, one
//     payload) and Kick (close with code and reason). Each payload becomes
//     one WebSocket text frame.
//
// # Close codes
//
// Protocol violations close with the wsframe code (1002, 1003, 1007, 1009).
// 1000 echoes a client close; 1001 on shutdown; 1012 when the session's
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
// wake the loop once; the loop swaps the double buffer and writes the whole
// batch in one call. One sweeper goroutine sends heartbeats and enforces
// the idle and handshake timeouts for all connections. Each logic link has
// one writer goroutine (one write per batch from a bounded queue; a full
// queue refuses the client message with an "overloaded" error frame) and
// one reader goroutine.
//
// Lock order: registry shard mutex, then session mutex. A link's mutex is
// never held while taking another lock.
//
// Server methods document whether they are safe for concurrent use.
//
// Tier: connsrv. Imports internal/{auth,proto,record,tierlink} and
// connsrv/wsframe; never logic or storage.
package connsrv
