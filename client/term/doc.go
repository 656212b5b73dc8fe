// Package term is a line-oriented terminal chat client built on the client
// SDK: a person types commands (/to, /use, /group, /history, ...) and
// plain lines, and sees incoming messages, delivery receipts, presence
// changes and connection state as they happen. cmd/parley wires it as
// `parley chat`.
//
// Concurrency: Run reads commands and prints events on its own goroutines
// and serialises all writes to out; one Run per Client at a time.
//
// Tier: client side (no server imports).
package term
