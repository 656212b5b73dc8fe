package scylla

import (
	"context"
	"fmt"
	"time"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Statements of push subscriptions and the push ledger (migration 2).
const (
	insertPushSub  = `INSERT INTO push_subscriptions (user_id, device, endpoint, p256dh, auth, created_at) VALUES (?, ?, ?, ?, ?, ?)`
	selectPushSubs = `SELECT device, endpoint, p256dh, auth, created_at FROM push_subscriptions WHERE user_id = ?`
	deletePushSub  = `DELETE FROM push_subscriptions WHERE user_id = ? AND device = ?`

	insertLedger = `INSERT INTO push_ledger (key, wid) VALUES (?, ?) IF NOT EXISTS USING TTL ?`
)

// PutPushSubscription stores sub as the subscription of (sub.User,
// sub.Device) with one plain write of every column, which replaces any
// earlier one. Safe for concurrent use.
func (s *Store) PutPushSubscription(ctx context.Context, sub record.PushSubscription) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if sub.User == "" || sub.Device == "" {
		return fmt.Errorf("cannot store push subscription: empty user or device id")
	}
	err := s.write(ctx, insertPushSub, sub.User, sub.Device, sub.Endpoint, sub.P256dh, sub.Auth, sub.CreatedAt).Exec()
	if err != nil {
		return fmt.Errorf("cannot store push subscription of %s/%s: %w", sub.User, sub.Device, mapErr(err))
	}
	return nil
}

// PushSubscriptions returns the user's subscriptions in ascending device
// order; empty (not nil) for a user without any. Safe for concurrent use.
func (s *Store) PushSubscriptions(ctx context.Context, user string) ([]record.PushSubscription, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	out := []record.PushSubscription{}
	if user == "" {
		return out, nil
	}
	iter := s.read(ctx, selectPushSubs, user).Iter()
	sub := record.PushSubscription{User: user}
	for iter.Scan(&sub.Device, &sub.Endpoint, &sub.P256dh, &sub.Auth, &sub.CreatedAt) {
		out = append(out, sub)
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("cannot read push subscriptions of %s: %w", user, mapErr(err))
	}
	return out, nil
}

// DeletePushSubscription removes the device's subscription; an absent one
// is not an error. Safe for concurrent use.
func (s *Store) DeletePushSubscription(ctx context.Context, user, device string) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if user == "" || device == "" {
		return nil
	}
	if err := s.write(ctx, deletePushSub, user, device).Exec(); err != nil {
		return fmt.Errorf("cannot delete push subscription of %s/%s: %w", user, device, mapErr(err))
	}
	return nil
}

// MarkPushed claims key in the push ledger for ttl (rounded up to whole
// seconds, at most 20 years) by a lightweight transaction, INSERT ... IF
// NOT EXISTS USING TTL: of concurrent callers on any number of nodes
// exactly one is first, and an expired row counts as absent. A driver
// retry of our own applied transaction finds our write id and still
// reports first. Safe for concurrent use.
func (s *Store) MarkPushed(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	if err := s.enter(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	if key == "" {
		return false, fmt.Errorf("cannot mark pushed: empty key")
	}
	if ttl <= 0 {
		return false, fmt.Errorf("cannot mark %q pushed: ttl must be positive, got %s", key, ttl)
	}
	secs := min((ttl+time.Second-1)/time.Second, maxTTL/time.Second)
	wid, err := gocql.RandomUUID()
	if err != nil {
		return false, fmt.Errorf("cannot mark %q pushed: %w", key, err)
	}
	existing := map[string]any{}
	applied, err := s.write(ctx, insertLedger, key, wid, int(secs)).MapScanCAS(existing)
	if err != nil {
		return false, fmt.Errorf("cannot mark %q pushed: %w", key, mapErr(err))
	}
	return applied || existing["wid"] == wid, nil
}
