package logic

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

const (
	// settingsTTL is how long a node trusts the settings it read of a
	// user: a change made through another node shows here within it (the
	// node that took the change knows at once).
	settingsTTL = 10 * time.Second
	// settingsMax bounds the users whose settings are remembered; a full
	// cache is emptied.
	settingsMax = 100_000
)

// settingsCache remembers users' settings (record.UserSettings) for
// settingsTTL, read through from the store. Safe for concurrent use.
type settingsCache struct {
	store Store
	now   func() time.Time
	mu    sync.Mutex // guards the following
	m     map[string]settingsEntry
	gen   uint64 // counts reads started and changes made
	floor uint64 // gen when m was last emptied: older reads are not kept
}

type settingsEntry struct {
	st  record.UserSettings
	at  time.Time
	gen uint64 // when the value was read (its read's start) or written
}

func newSettingsCache(store Store, now func() time.Time) *settingsCache {
	return &settingsCache{store: store, now: now, m: map[string]settingsEntry{}}
}

// get returns user's settings, from the cache when fresh unless fresh is
// set (then from the store).
func (c *settingsCache) get(ctx context.Context, user string, fresh bool) (record.UserSettings, error) {
	c.mu.Lock()
	e, ok := c.m[user]
	c.gen++
	start := c.gen
	c.mu.Unlock()
	if ok && !fresh && c.now().Sub(e.at) < settingsTTL {
		return e.st, nil
	}
	st, err := c.store.UserSettings(ctx, user)
	if err != nil {
		return record.UserSettings{}, err
	}
	c.remember(user, st, start)
	return st, nil
}

// changed records that user's settings were just written: the next get
// reads them from the store (two changes racing on this node may be
// written in either order, so the value to keep is the store's), and a
// read that started before the change cannot put the old value back.
func (c *settingsCache) changed(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if _, ok := c.m[user]; !ok && len(c.m) >= settingsMax {
		c.clearLocked()
	}
	c.m[user] = settingsEntry{gen: c.gen} // expired: at is zero
}

func (c *settingsCache) clearLocked() {
	clear(c.m)
	c.floor = c.gen
}

// remember caches st as user's settings as of now, unless what the cache
// holds is newer than gen: a read that started before a change must not
// put back the value from before it.
func (c *settingsCache) remember(user string, st record.UserSettings, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[user]
	if ok && e.gen > gen || gen <= c.floor {
		return
	}
	if !ok && len(c.m) >= settingsMax {
		c.clearLocked()
	}
	c.m[user] = settingsEntry{st: st, at: c.now(), gen: gen}
}

// lastSeenHidden reports whether user hides their last-seen time. When the
// settings cannot be read it says hidden: an error withholds, it never
// reveals.
func (s *Service) lastSeenHidden(ctx context.Context, user string) bool {
	st, err := s.settings.get(ctx, user, false)
	if err != nil {
		s.log.Debug("cannot read settings; hiding last seen", "user_id", user, "err", err)
		return true
	}
	return st.HideLastSeen
}

// hideLastSeen clears the last-seen time of each entry of info whose user
// hides it, but requester's own.
func (s *Service) hideLastSeen(ctx context.Context, requester string, info []proto.PresenceInfo) {
	for i := range info {
		if info[i].LastSeen != 0 && info[i].User != requester && s.lastSeenHidden(ctx, info[i].User) {
			info[i].LastSeen = 0
		}
	}
}

// Settings returns user's settings after applying a change: hideLastSeen,
// when not nil, sets the hide-last-seen setting (written even when it
// seems unchanged: another node may be changing it at the same time, and
// the last write should win). The answer is read from the store, not the
// cache. Safe for concurrent use.
func (s *Service) Settings(ctx context.Context, user string, hideLastSeen *bool) (record.UserSettings, error) {
	if hideLastSeen == nil {
		return s.settings.get(ctx, user, true)
	}
	st, err := s.store.UserSettings(ctx, user)
	if err != nil {
		return record.UserSettings{}, err
	}
	st.HideLastSeen = *hideLastSeen
	if err := s.store.PutUserSettings(ctx, user, st); err != nil {
		return record.UserSettings{}, err
	}
	s.settings.changed(user)
	return st, nil
}
