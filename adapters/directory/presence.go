package directory

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/redis/rueidis"
)

// Presence: a user is online while at least one of their devices has a live
// location (Attach, Refresh), so it follows the sessions of every logic node
// and vanishes by itself when a node dies. The last-seen time lives at
// <prefix>seen:{user} for LastSeenTTL and only ever moves forward.

// SetOnline raises the user's last-seen time to at. Online itself comes
// from the user's locations; recording the time here gives a user whose
// node died without SetOffline a last-seen of when they came online rather
// than none. Implements logic.Presence; safe for concurrent use.
func (d *Directory) SetOnline(ctx context.Context, user string, at time.Time) error {
	err := d.call(ctx, opSetOnline, func(ctx context.Context, c rueidis.Client) error {
		return d.raiseSeen(ctx, c, user, at)
	})
	if err != nil {
		return fmt.Errorf("cannot set user %s online: %w", user, err)
	}
	return nil
}

// SetOffline records at as the user's last-seen time if the user has no
// live location left (another device may still be online through another
// node). Call it after Detach of the user's last local device. Implements
// logic.Presence; safe for concurrent use.
func (d *Directory) SetOffline(ctx context.Context, user string, at time.Time) error {
	err := d.call(ctx, opSetOffline, func(ctx context.Context, c rueidis.Client) error {
		// Uncached: the caller's own Detach must be seen.
		locs, _, err := d.locate(ctx, c, []string{user}, false, false)
		if err != nil {
			return err
		}
		if len(locs[user]) > 0 {
			return nil
		}
		return d.raiseSeen(ctx, c, user, at)
	})
	if err != nil {
		return fmt.Errorf("cannot set user %s offline: %w", user, err)
	}
	return nil
}

func (d *Directory) raiseSeen(ctx context.Context, c rueidis.Client, user string, at time.Time) error {
	args := []string{strconv.FormatInt(at.UnixMilli(), 10), strconv.FormatInt(ms(d.cfg.LastSeenTTL), 10)}
	return seenScript.run(ctx, c, []string{d.seenKey(user)}, args).Error()
}

// Lookup returns the presence of each user, in order: Online when the user
// has a live location, else LastSeen in unix ms (0 when unknown). Reads are
// served from the client-side cache while Redis has not invalidated them.
// Implements logic.Presence; safe for concurrent use.
func (d *Directory) Lookup(ctx context.Context, users []string) ([]record.Presence, error) {
	var out []record.Presence
	err := d.call(ctx, opLookup, func(ctx context.Context, c rueidis.Client) error {
		locs, seen, err := d.locate(ctx, c, users, true, true)
		if err != nil {
			return err
		}
		out = make([]record.Presence, len(users))
		for i, u := range users {
			out[i] = record.Presence{User: u, Online: len(locs[u]) > 0}
			if !out[i].Online {
				out[i].LastSeen = seen[i]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot look up presence of %d users: %w", len(users), err)
	}
	return out, nil
}
