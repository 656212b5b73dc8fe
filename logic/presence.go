package logic

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Presence records who is online and when users were last seen. The
// standalone node uses MemPresence; fleets plug in a Redis implementation.
// Presence is best effort (AP): errors make users read as offline, they never
// block messaging. Implementations are safe for concurrent use.
type Presence interface {
	// SetOnline marks user online (their first device connected).
	SetOnline(ctx context.Context, user string, at time.Time) error
	// SetOffline marks user offline (their last device left) at time at.
	SetOffline(ctx context.Context, user string, at time.Time) error
	// Lookup returns the presence of each user, in order.
	Lookup(ctx context.Context, users []string) ([]record.Presence, error)
}

// MemPresence is an in-process Presence. Safe for concurrent use.
type MemPresence struct {
	mu    sync.Mutex // guards the following
	state map[string]memPresenceEntry
}

type memPresenceEntry struct {
	online   bool
	lastSeen int64
}

// NewMemPresence returns an empty in-process presence table.
func NewMemPresence() *MemPresence {
	return &MemPresence{state: map[string]memPresenceEntry{}}
}

// SetOnline implements Presence.
func (p *MemPresence) SetOnline(_ context.Context, user string, at time.Time) error {
	p.mu.Lock()
	p.state[user] = memPresenceEntry{online: true, lastSeen: at.UnixMilli()}
	p.mu.Unlock()
	return nil
}

// SetOffline implements Presence.
func (p *MemPresence) SetOffline(_ context.Context, user string, at time.Time) error {
	p.mu.Lock()
	p.state[user] = memPresenceEntry{online: false, lastSeen: at.UnixMilli()}
	p.mu.Unlock()
	return nil
}

// Lookup implements Presence.
func (p *MemPresence) Lookup(_ context.Context, users []string) ([]record.Presence, error) {
	out := make([]record.Presence, len(users))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, u := range users {
		e := p.state[u]
		out[i] = record.Presence{User: u, Online: e.online}
		if !e.online {
			out[i].LastSeen = e.lastSeen
		}
	}
	return out, nil
}

// wirePresence is the client-wire form of the directory's answer.
func wirePresence(ps []record.Presence) []proto.PresenceInfo {
	out := make([]proto.PresenceInfo, len(ps))
	for i, p := range ps {
		out[i] = proto.PresenceInfo{User: p.User, Online: p.Online, LastSeen: p.LastSeen}
	}
	return out
}
