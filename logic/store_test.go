package logic

import (
	"testing"

	"github.com/parley-chat/parley/storage/storetest"
)

// The logic tier's Store and the conformance suite's Store are the same
// contract.
var (
	_ Store           = storetest.Store(nil)
	_ storetest.Store = Store(nil)
)

// TestMemStoreConformance keeps the in-memory fake used by logic's tests
// honest: it must behave like a real backend.
func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return newMemStore() }, storetest.Options{})
}
