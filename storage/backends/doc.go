// Package backends is the table of storage backends: each name
// (store.backend) with its validation and how to open it, and the store
// section of the configuration (Config). cmd/parley, the configs and the
// e2e tests all choose a backend through it, so a new backend is one
// table entry and one Config section.
//
// The backends were once configured under other names: backend cql and
// section store.cql are now scylla and store.scylla. Config.Normalize
// still reads the old names, with a warning, for one release.
//
// Tier: storage. Imports storage (the contract), storage/pebble and
// storage/scylla; only wiring (cmd, e2e) imports it, never a tier.
package backends
