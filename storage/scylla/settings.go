package scylla

import (
	"context"
	"errors"
	"fmt"

	"github.com/gocql/gocql"

	"github.com/parley-chat/parley/internal/record"
)

// Statements of user settings (migration 5).
const (
	selectUserSettings = `SELECT hide_last_seen FROM user_settings WHERE user_id = ?`
	insertUserSettings = `INSERT INTO user_settings (user_id, hide_last_seen) VALUES (?, ?)`
)

// UserSettings returns the user's settings, the zero value when none are
// stored. Safe for concurrent use.
func (s *Store) UserSettings(ctx context.Context, user string) (record.UserSettings, error) {
	if err := s.enter(); err != nil {
		return record.UserSettings{}, err
	}
	defer s.mu.RUnlock()
	var st record.UserSettings
	if user == "" {
		return st, nil
	}
	err := s.read(ctx, selectUserSettings, user).Scan(&st.HideLastSeen)
	if errors.Is(err, gocql.ErrNotFound) {
		return record.UserSettings{}, nil
	}
	if err != nil {
		return record.UserSettings{}, fmt.Errorf("cannot read settings of %s: %w", user, mapErr(err))
	}
	return st, nil
}

// PutUserSettings replaces the user's settings with one plain write of
// every column. Safe for concurrent use.
func (s *Store) PutUserSettings(ctx context.Context, user string, st record.UserSettings) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if user == "" {
		return fmt.Errorf("cannot store settings: empty user id")
	}
	if err := s.write(ctx, insertUserSettings, user, st.HideLastSeen).Exec(); err != nil {
		return fmt.Errorf("cannot store settings of %s: %w", user, mapErr(err))
	}
	return nil
}
