// Package storetest is the conformance suite every Parley storage backend
// passes (storage/pebble, storage/scylla, and any fake used in logic tests).
//
// Run checks the storage contract (storage.Store, storage/contract.go)
// against a fresh store per sub-test: appends and history pages, the error
// contract (record.ErrNotFound, record.ErrConflict, record.ErrClosed),
// per-chat append results (a conflict in one chat stores the others; rows
// stored with identical content count as stored; malformed appends are
// refused), dedup lookups and key lists, chats and membership, chat lists,
// monotonic read markers and device cursors, concurrent appends, push
// subscriptions, and the push ledger (MarkPushed: one first caller per key,
// expiry). Options says what a backend does not promise (conflict
// detection, under leases) and the epoch to write with.
// RunPersistent additionally closes a store and reopens it on the same
// directory to check that everything survived.
//
// Tier: storage (test support). The suite itself runs sub-tests
// sequentially; individual sub-tests start goroutines against the store under
// test to exercise its concurrency contract.
package storetest
