package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/parley-chat/parley/internal/record"
)

// The push ledger sweep: every sweepEvery-th MarkPushed deletes up to
// sweepLimit expired entries, oldest first.
const (
	sweepEvery = 256
	sweepLimit = 1024
)

// PutPushSubscription stores sub as the subscription of (sub.User,
// sub.Device), replacing any earlier one. Synced like membership changes.
// Safe for concurrent use.
func (s *Store) PutPushSubscription(ctx context.Context, sub record.PushSubscription) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot store push subscription of %s/%s: %w", sub.User, sub.Device, err)
	}
	defer s.leave()
	if err := errors.Join(checkID("user id", sub.User), checkID("device id", sub.Device)); err != nil {
		return fmt.Errorf("cannot store push subscription: %w", err)
	}
	if err := s.db.Set(pushSubKey(nil, sub.User, sub.Device), appendPushSub(nil, &sub), s.wo); err != nil {
		return fmt.Errorf("cannot store push subscription of %s/%s: %w", sub.User, sub.Device, err)
	}
	return nil
}

// PushSubscriptions returns the user's subscriptions in ascending device
// order; empty (not nil) for a user without any. Safe for concurrent use.
func (s *Store) PushSubscriptions(ctx context.Context, user string) ([]record.PushSubscription, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("cannot read push subscriptions of %s: %w", user, err)
	}
	defer s.leave()
	out := []record.PushSubscription{}
	if err := checkID("user id", user); err != nil {
		return out, nil
	}
	prefix := pushSubPrefix(nil, user)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("cannot read push subscriptions of %s: %w", user, err)
	}
	var derr error
	for valid := it.First(); valid; valid = it.Next() {
		sub, err := decodePushSub(user, string(it.Key()[len(prefix):]), it.Value())
		if err != nil {
			derr = err
			break
		}
		out = append(out, sub)
	}
	if err := errors.Join(derr, it.Error(), it.Close()); err != nil {
		return nil, fmt.Errorf("cannot read push subscriptions of %s: %w", user, err)
	}
	return out, nil
}

// DeletePushSubscription removes the device's subscription; an absent one
// is not an error. Synced. Safe for concurrent use.
func (s *Store) DeletePushSubscription(ctx context.Context, user, device string) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot delete push subscription of %s/%s: %w", user, device, err)
	}
	defer s.leave()
	if checkID("user id", user) != nil || checkID("device id", device) != nil {
		return nil // no such row can exist
	}
	if err := s.db.Delete(pushSubKey(nil, user, device), s.wo); err != nil {
		return fmt.Errorf("cannot delete push subscription of %s/%s: %w", user, device, err)
	}
	return nil
}

// MarkPushed records key in the push ledger until now+ttl and reports
// whether this call was the first to record it (an expired record counts
// as absent). The read-check-write runs under the marker stripe of key, so
// concurrent callers get exactly one first=true. Synced (unless
// Config.Sync is false): a crash does not forget a claim. Safe for
// concurrent use.
func (s *Store) MarkPushed(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := s.enter(ctx); err != nil {
		return false, fmt.Errorf("cannot mark %q pushed: %w", key, err)
	}
	defer s.leave()
	if err := checkID("push key", key); err != nil {
		return false, fmt.Errorf("cannot mark pushed: %w", err)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("cannot mark %q pushed: ttl must be positive, got %s", key, ttl)
	}
	now := time.Now()
	first, err := s.markPushed(key, uint64(now.UnixNano()), expiryOf(now, ttl))
	if err != nil {
		return false, fmt.Errorf("cannot mark %q pushed: %w", key, err)
	}
	if s.marks.Add(1)%sweepEvery == 0 {
		if n, err := s.sweepLedger(uint64(now.UnixNano()), sweepLimit); err != nil {
			s.log.Warn("cannot sweep push ledger", "error", err)
		} else if n > 0 {
			s.log.Debug("push ledger swept", "expired", n)
		}
	}
	return first, nil
}

func expiryOf(now time.Time, ttl time.Duration) uint64 {
	n := now.UnixNano()
	if ttl > time.Duration(math.MaxInt64-n) {
		return math.MaxInt64
	}
	return uint64(n + int64(ttl))
}

func (s *Store) markPushed(key string, now, expiry uint64) (bool, error) {
	lk := ledgerKey(nil, key)
	m := &s.markerMu[fnv32(lk)%markerStripes]
	m.Lock()
	defer m.Unlock()
	var buf [8]byte
	v, err := s.get(lk, buf[:0])
	b := s.db.NewBatch()
	defer b.Close()
	switch {
	case err == nil:
		old, err := decodeSeq(v)
		if err != nil {
			return false, fmt.Errorf("corrupt ledger row: %w", err)
		}
		if old > now {
			return false, nil
		}
		if err := b.Delete(ledgerExpiryKey(nil, old, key), nil); err != nil {
			return false, err
		}
	case !errors.Is(err, pdb.ErrNotFound):
		return false, err
	}
	if err := b.Set(lk, appendSeq(nil, expiry), nil); err != nil {
		return false, err
	}
	if err := b.Set(ledgerExpiryKey(nil, expiry, key), nil, nil); err != nil {
		return false, err
	}
	if err := b.Commit(s.wo); err != nil {
		return false, err
	}
	return true, nil
}

// sweepLedger deletes up to limit ledger entries that expired before now,
// oldest first, and returns how many it deleted. Each entry is checked and
// deleted under its key's stripe, so a concurrent re-mark is never undone.
func (s *Store) sweepLedger(now uint64, limit int) (int, error) {
	lower := []byte{tableLedgerX}
	upper := binary.BigEndian.AppendUint64([]byte{tableLedgerX}, now)
	it, err := s.db.NewIter(&pdb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, err
	}
	type entry struct {
		expiry uint64
		key    string
	}
	var expired []entry
	for valid := it.First(); valid && len(expired) < limit; valid = it.Next() {
		k := it.Key()
		if len(k) < 9 {
			continue
		}
		expired = append(expired, entry{binary.BigEndian.Uint64(k[1:9]), string(k[9:])})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, err
	}
	for _, e := range expired {
		if err := s.dropLedgerEntry(e.key, e.expiry); err != nil {
			return 0, err
		}
	}
	return len(expired), nil
}

func (s *Store) dropLedgerEntry(key string, expiry uint64) error {
	lk := ledgerKey(nil, key)
	m := &s.markerMu[fnv32(lk)%markerStripes]
	m.Lock()
	defer m.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(ledgerExpiryKey(nil, expiry, key), nil); err != nil {
		return err
	}
	var buf [8]byte
	v, err := s.get(lk, buf[:0])
	switch {
	case err == nil && bytes.Equal(v, appendSeq(nil, expiry)):
		if err := b.Delete(lk, nil); err != nil {
			return err
		}
	case err != nil && !errors.Is(err, pdb.ErrNotFound):
		return err
	}
	return b.Commit(pdb.NoSync)
}
