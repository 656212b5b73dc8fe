package pebble

import (
	"context"
	"errors"
	"fmt"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/parley-chat/parley/internal/record"
)

// UserSettings returns the user's settings, the zero value when none are
// stored. Safe for concurrent use.
func (s *Store) UserSettings(ctx context.Context, user string) (record.UserSettings, error) {
	if err := s.enter(ctx); err != nil {
		return record.UserSettings{}, fmt.Errorf("cannot read settings of %s: %w", user, err)
	}
	defer s.leave()
	if checkID("user id", user) != nil {
		return record.UserSettings{}, nil // no such row can exist
	}
	v, closer, err := s.db.Get(settingsKey(nil, user))
	if errors.Is(err, pdb.ErrNotFound) {
		return record.UserSettings{}, nil
	}
	if err != nil {
		return record.UserSettings{}, fmt.Errorf("cannot read settings of %s: %w", user, err)
	}
	defer closer.Close()
	return decodeSettings(user, v)
}

// PutUserSettings replaces the user's settings. Synced like membership
// changes. Safe for concurrent use.
func (s *Store) PutUserSettings(ctx context.Context, user string, st record.UserSettings) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("cannot store settings of %s: %w", user, err)
	}
	defer s.leave()
	if err := checkID("user id", user); err != nil {
		return fmt.Errorf("cannot store settings: %w", err)
	}
	if err := s.db.Set(settingsKey(nil, user), appendSettings(nil, st), s.wo); err != nil {
		return fmt.Errorf("cannot store settings of %s: %w", user, err)
	}
	return nil
}

func settingsKey(b []byte, user string) []byte {
	b = append(b, tableSettings)
	return append(b, user...)
}
