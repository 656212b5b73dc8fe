package logic

import (
	"testing"

	"github.com/parley-chat/parley/storage/storetest"
)

// The logic tier's Store is roles of the storage contract: every backend
// that passes the conformance suite is one.
var _ Store = storetest.Store(nil)

// TestMemStoreConformance keeps the in-memory fake used by logic's tests
// honest: it must behave like a real backend.
func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return newMemStore() }, storetest.Options{})
}
