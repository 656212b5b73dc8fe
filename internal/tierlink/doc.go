// Package tierlink defines the binary framing of the link between the
// connection tier (connsrv) and the logic tier (logic). It is a leaf package:
// it imports nothing else of Parley's.
//
// A connsrv node dials every logic node with a small pool of TCP connections.
// Each connection multiplexes many client sessions; frames of one session
// always travel on the same connection, so per-session order is kept.
//
// # Frame layout
//
// All integers are big endian.
//
//	+-----------+--------+----------------+-----------------+
//	| length u32| type u8| session u64    | payload ...     |
//	+-----------+--------+----------------+-----------------+
//	 length counts type, session and payload: 9 + len(payload).
//	 length must be in [9, MaxFrame]; anything else is a protocol error and
//	 the link is closed.
//
// # Frame types
//
//	Hello    c->l  session 0   payload: min u8 | max u8 | idlen u8 | node id | nonce [32]
//	HelloAck l->c  session 0   payload: version u8 | idlen u8 | node id | nonce [32] | maclen u8 | mac
//	Auth     c->l  session 0   payload: mac (0 or 32 bytes)
//	Open     c->l  session s   payload: ulen u8 | user | dlen u8 | device | alen u8 | remote addr
//	Close    c->l  session s   payload: ws close code u16
//	Data     c->l  session s   payload: one client frame (JSON text)
//	Deliver  l->c  session s   payload: one server frame (JSON text)
//	Kick     l->c  session s   payload: ws close code u16 | reason (UTF-8, <= 123 bytes)
//	Ping     both  session 0   payload: nonce u64
//	Pong     both  session 0   payload: the ping's nonce u64
//	Multi    l->c  session 0   payload: count u16 | count × session u64 | server frame
//
// # Handshake
//
// A link opens with Hello (or PeerHello) from the dialer, HelloAck from the
// accepting node and Auth from the dialer; nothing else is read before
// Auth checks out (handshake.go: DialHandshake, AcceptHandshake).
//
//   - Versions: Hello carries the dialer's range [min, max]; the acceptor
//     answers the highest version both ranges share, or closes. So frame
//     changes roll out node by node: a build adds a version at the top of
//     its range, and drops the bottom one once no node needs it.
//   - Authentication: both sides prove the fleet's link secret with
//     HMAC-SHA256 over the handshake transcript (the hello type, the
//     chosen version, both node ids and both nonces): the acceptor in
//     HelloAck, the dialer in Auth. The secret never crosses the wire;
//     each side's fresh nonce makes a recorded proof useless on another
//     link; the proofs also cover the dialer's whole version range (no
//     downgrade) and, on TLS, the session's channel binding (an exporter),
//     so a proof cannot be relayed into another TLS session. On plain TCP
//     the proofs show that both ends hold the secret, not that nobody
//     relays between them: a node never proves the secret to itself (a
//     relay back to the dialer is refused), but only TLS protects the
//     stream from a relay or an on-path attacker. A node without a secret
//     sends empty proofs and must be authenticated by mutual TLS instead
//     (the logic node checks the verified client certificate). Frames are
//     limited to HandshakeMaxFrame until the proof checks out.
//
// Multi delivers one server frame to several sessions of the same connsrv
// node without repeating the payload: what logic sends to users rather
// than to one session (receipts, presence, and the Users frames peers
// forward). Messages, group changes included, go per session as Deliver,
// since each session's delivery window is its own.
//
// # Frames between logic nodes
//
// Logic nodes of a fleet dial each other's link port. A peer connection
// starts with PeerHello (answered by HelloAck) instead of Hello; the dialer
// sends requests on it and the accepting node answers on the same
// connection.
//
//	PeerHello l->l session 0     payload: as Hello, its node id "id|addr"
//	                              (the dialer's node id and the link address
//	                              others dial it at, joined by '|')
//	Forward   l->l session token payload: ulen u8 | user | dlen u8 | device | client frame
//	Reply     l->l session token payload: seq u64 | server frame (seq > 0: "sent" for that seq)
//	Fanout    l->l session 0     payload: count u16 | count × (flags u8 | ulen u8 | user) | message
//	Users     l->l session 0     payload: count u16 | count × (flags u8 | ulen u8 | user) | server frame
//
// Forward carries a client request to the node that sequences its chat;
// Reply carries the answer back under the request's token. Fanout hands a
// stored message to the node holding the named users' sessions; Users does
// the same for any other server frame (receipts, presence). The message of
// Fanout is, from version 3 (VersionMessageFields; AppendMessage)
//
//	seq u64 | ts i64 | kind u8 | clen u16 | chat | slen u8 | sender |
//	dlen u8 | device | rlen u8 | request id | blen u32 | body |
//	fields: zero or more of (tag u8 | len u16 | value)
//
// where a reader skips the field tags it does not know (none is defined
// yet; tag 0 is reserved), so a message can gain a field without a new
// link version. On a version-2 link it is the fixed layout
//
//	seq u64 | ts i64 | kind u8 | clen u16 | chat | slen u8 | sender |
//	dlen u8 | device | rlen u8 | request id | body (the rest)
//
// Both ends encode and decode record.Message itself: there is no mirror
// of it here.
//
// User flag FlagPush asks the receiver to emit a push event when it holds no
// session of that user.
//
// # Versions
//
//	1  initial version; the logic-to-logic frames 0x0B-0x0F were added with
//	   the fleet (nodes of one fleet run one release).
//	2  version ranges in Hello and link authentication (HelloAck's nonce
//	   and proof, the Auth frame 0x10). A node of version 2 refuses a
//	   version-1 hello (ErrLegacyHello, logged), and a version-1 node
//	   cannot parse a version-2 hello: moving to 2 is a flag day for the
//	   whole fleet; every later version is negotiated.
//	3  Fanout's message in the message encoding with fields (above). A
//	   node speaks 2-3 and encodes each link's Fanout in the version that
//	   link chose, so a fleet upgrades one node at a time.
//
// # Concurrency
//
// The append functions and Parse are pure and safe for concurrent use.
// A Reader is owned by one goroutine. DialHandshake and AcceptHandshake
// do network I/O on the connection they are given (deadlines are the
// caller's); LoadSecret reads a file. The package also owns the link
// secret (Secret, LoadSecret) and the TLS channel binding (Binding).
package tierlink
