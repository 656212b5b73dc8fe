// Package ring maps keys (user ids, chat ids) to the live logic nodes of a
// fleet by rendezvous (highest random weight) hashing. Every node that knows
// the same member list computes the same owner, without coordination, and
// when a member joins or leaves only the keys it gains or loses move.
//
// connsrv uses it to send each user's sessions to that user's home logic
// node; logic uses it to find the node that sequences a chat.
//
// It is a leaf package. Owner is pure and safe for concurrent use.
package ring
