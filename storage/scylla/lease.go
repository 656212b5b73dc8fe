package scylla

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Statements of the slot leases (migration 3). Every write of the leases
// table is a lightweight transaction, never a plain write, so Paxos and
// timestamp orderings never mix on its cells. All rows live in one
// partition (grp 0): a node renews every slot it holds with one
// conditional batch.
const (
	selectLeases = `SELECT slot, owner, epoch, version FROM leases WHERE grp = 0`
	insertLease  = `INSERT INTO leases (grp, slot, owner, epoch, version) VALUES (0, ?, ?, ?, ?) IF NOT EXISTS`
	updateLease  = `UPDATE leases SET owner = ?, epoch = ?, version = ? WHERE grp = 0 AND slot = ? IF owner = ? AND epoch = ? AND version = ?`
)

// Slots returns the number of sequencing slots of the keyspace (under
// leases; 0 under LWT sequencing). Safe for concurrent use.
func (s *Store) Slots() int {
	if !s.lease {
		return 0
	}
	return s.cfg.Slots
}

// Leases returns every slot's lease, indexed by slot; a slot whose row does
// not exist yet reads as free with epoch and version 0. A plain read at the
// configured consistency (LOCAL_QUORUM) sees every transaction that
// committed before it; one still in flight is missed, which is safe: a
// taker's transaction is conditional on the version it read, and Paxos
// completes the one in flight first. Safe for concurrent use.
func (s *Store) Leases(ctx context.Context) ([]record.Lease, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if !s.lease {
		return nil, errors.New("cannot read leases: the keyspace sequences by lightweight transactions")
	}
	out := make([]record.Lease, s.cfg.Slots)
	for i := range out {
		out[i].Slot = i
	}
	iter := s.read(ctx, selectLeases).Iter()
	var (
		l              record.Lease
		epoch, version int64
	)
	for iter.Scan(&l.Slot, &l.Owner, &epoch, &version) {
		if l.Slot >= 0 && l.Slot < len(out) {
			l.Epoch, l.Version = uint64(epoch), uint64(version)
			out[l.Slot] = l
		}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read leases: %w", mapErr(err))
	}
	return out, nil
}

// nextVersion returns the version of the write that follows v: the
// counter in the high bits grows by one, the low versionRandBits are drawn
// at random for every attempt. Versions of one slot thus grow with every
// write, and two attempts (two calls) want the same row only with
// probability 2^-versionRandBits: a row of one's own with other random bits
// is an earlier attempt whose outcome was unknown, never this call's
// success (see lease.Store). Only the driver's resend of this call's own
// write finds exactly the row this call wanted, and counts as its success
// (casLease).
func nextVersion(v uint64) uint64 {
	return (v>>versionRandBits+1)<<versionRandBits | rand.Uint64N(1<<versionRandBits)
}

// versionRandBits: 24 random bits leave a 40-bit write counter per slot.
const versionRandBits = 24

// AcquireLease takes prev's slot for owner at prev.Epoch+1, on condition
// that the row is still exactly prev (its owner, epoch and version). It
// returns the lease now stored and whether this call wrote it. Safe for
// concurrent use.
func (s *Store) AcquireLease(ctx context.Context, prev record.Lease, owner string) (record.Lease, bool, error) {
	want := record.Lease{Slot: prev.Slot, Owner: owner, Epoch: prev.Epoch + 1, Version: nextVersion(prev.Version)}
	if owner == "" {
		return prev, false, errors.New("cannot acquire a lease for an empty owner")
	}
	return s.casLease(ctx, prev, want)
}

// ReleaseLease frees l's slot, on condition that l is still the stored
// row, and returns the row now stored. A successor can then take it at
// once instead of waiting out the lease duration. Safe for concurrent use.
func (s *Store) ReleaseLease(ctx context.Context, l record.Lease) (record.Lease, bool, error) {
	want := record.Lease{Slot: l.Slot, Owner: "", Epoch: l.Epoch, Version: nextVersion(l.Version)}
	return s.casLease(ctx, l, want)
}

func (s *Store) casLease(ctx context.Context, prev, want record.Lease) (record.Lease, bool, error) {
	if err := s.enter(); err != nil {
		return prev, false, err
	}
	defer s.mu.RUnlock()
	if !s.lease {
		return prev, false, errors.New("cannot write a lease: the keyspace sequences by lightweight transactions")
	}
	if prev.Slot < 0 || prev.Slot >= s.cfg.Slots || want.Epoch > maxEpoch {
		return prev, false, fmt.Errorf("cannot write lease of slot %d epoch %d: out of range", prev.Slot, want.Epoch)
	}
	var q *gocql.Query
	if prev.Version == 0 {
		q = s.sess.Query(insertLease, want.Slot, want.Owner, int64(want.Epoch), int64(want.Version))
	} else {
		q = s.sess.Query(updateLease, want.Owner, int64(want.Epoch), int64(want.Version), prev.Slot,
			prev.Owner, int64(prev.Epoch), int64(prev.Version))
	}
	cur := map[string]any{}
	applied, err := q.WithContext(ctx).SerialConsistency(s.serial).Idempotent(true).MapScanCAS(cur)
	if err != nil {
		return prev, false, fmt.Errorf("cannot write lease of slot %d: %w", prev.Slot, mapErr(err))
	}
	if applied {
		return want, true, nil
	}
	// The driver resends this idempotent write when an answer is lost: a
	// resend of a write that did apply finds exactly the row this call
	// wanted (its version's random bits make an earlier attempt's row
	// differ but for a 2^-24 chance) and is this call's success.
	got := leaseOf(prev.Slot, cur)
	return got, got == want, nil
}

// RenewLeases bumps the version of every lease in held (all of one owner)
// with one conditional batch, on condition that each row is still exactly
// as held. It is all or nothing: when any row changed, nothing is renewed
// and current holds every row as stored (held's slots only), so the
// caller can renew the ones still its own (a row of its own at a newer
// version was written by one of its attempts whose outcome it did not
// learn: not a renewal it may count from now). The driver never retries
// the batch (Batch.Query entries are not idempotent): a renewal whose
// answer is lost is only retried by the keeper's next round, which then
// sees its own newer version. Safe for concurrent use.
func (s *Store) RenewLeases(ctx context.Context, held []record.Lease) (renewed []record.Lease, current []record.Lease, err error) {
	if err := s.enter(); err != nil {
		return nil, nil, err
	}
	defer s.mu.RUnlock()
	if !s.lease {
		return nil, nil, errors.New("cannot renew leases: the keyspace sequences by lightweight transactions")
	}
	if len(held) == 0 {
		return nil, nil, nil
	}
	b := s.sess.Batch(gocql.UnloggedBatch).WithContext(ctx)
	b.SerialConsistency(s.serial)
	renewed = make([]record.Lease, len(held))
	for i, l := range held {
		if l.Owner == "" || l.Slot < 0 || l.Slot >= s.cfg.Slots {
			return nil, nil, fmt.Errorf("cannot renew lease of slot %d owned by %q", l.Slot, l.Owner)
		}
		renewed[i] = l
		renewed[i].Version = nextVersion(l.Version)
		b.Query(updateLease, l.Owner, int64(l.Epoch), int64(renewed[i].Version), l.Slot, l.Owner, int64(l.Epoch), int64(l.Version))
	}
	row := map[string]any{}
	applied, iter, err := s.sess.MapExecuteBatchCAS(b, row)
	if err != nil {
		if iter != nil {
			iter.Close()
		}
		return nil, nil, fmt.Errorf("cannot renew %d leases: %w", len(held), mapErr(err))
	}
	if applied {
		return renewed, nil, iter.Close()
	}
	bySlot := map[int]record.Lease{}
	for {
		if slot, ok := row["slot"].(int); ok {
			bySlot[slot] = leaseOf(slot, row)
		}
		row = map[string]any{}
		if !iter.MapScan(row) {
			break
		}
	}
	if err := iter.Close(); err != nil {
		return nil, nil, fmt.Errorf("cannot renew %d leases: %w", len(held), mapErr(err))
	}
	current = make([]record.Lease, len(held))
	for i, l := range held {
		current[i] = bySlot[l.Slot]
		current[i].Slot = l.Slot
	}
	return nil, current, nil
}

// leaseOf reads a lease row of a transaction's result.
func leaseOf(slot int, row map[string]any) record.Lease {
	l := record.Lease{Slot: slot}
	l.Owner, _ = row["owner"].(string)
	if v, ok := row["epoch"].(int64); ok {
		l.Epoch = uint64(v)
	}
	if v, ok := row["version"].(int64); ok {
		l.Version = uint64(v)
	}
	return l
}
