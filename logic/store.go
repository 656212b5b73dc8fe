package logic

import (
	"context"

	"github.com/parley-chat/parley/logic/lease"
	"github.com/parley-chat/parley/storage"
)

// Store is what the logic tier needs from persistent storage: the roles
// of the storage contract it uses (storage/contract.go says what each
// method promises). The embedded default is storage/pebble; fleets use
// storage/scylla; both pass storage/storetest. The push ledger is the
// notifier's, not logic's.
type Store interface {
	storage.MessageLog
	storage.Chats
	storage.Cursors
	storage.Settings
	storage.PushSubscriptions
	// Close flushes and releases the store.
	Close() error
}

// LeaseStore is what sequencing under leases needs of the store (the CQL
// store with store.scylla.sequencing: lease): the lease rows (logic/lease)
// and the fence a new holder puts above a chat's head.
type LeaseStore interface {
	lease.Store
	// Fence reads chatID's highest stored seq and makes every write of an
	// epoch before epoch, in the span seqs above it, invisible for good;
	// it returns that head.
	Fence(ctx context.Context, chatID string, epoch uint64, span int) (uint64, error)
}
