// Package storage declares the storage contract once, by role: the
// message log, chats and membership, cursors, user settings, push
// subscriptions and the push ledger. Every backend implements Store, the
// sum of the roles; storage/storetest checks a backend against it, and
// storage/backends opens one by name.
//
// Consumers declare only what they use: the logic tier's logic.Store
// is the message log, chats, cursors, settings and push subscriptions;
// the notifier's notifier.Store reads and drops push subscriptions and
// holds the ledger.
//
// Adding a method means declaring it here, in the role it belongs to,
// guarding it in logic's circuit breaker when logic uses it, and
// implementing it in each backend and in logic's test fake; the
// compiler and the conformance suite point at every place left.
//
// Error contract for every role: methods return record.ErrNotFound
// (wrapped) when the named chat, message or key does not exist,
// record.ErrConflict when a write would overwrite an immutable row,
// record.ErrClosed once the store is closed, and any other error for I/O
// failures (the caller treats those as retryable). All methods are safe
// for concurrent use.
//
// Tier: storage. Imports only internal/record and never a backend; a
// backend satisfies Store by its method set and need not import it.
package storage
