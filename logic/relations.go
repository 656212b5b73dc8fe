package logic

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Who sees whose presence (docs/protocol.md, "Presence"): a user sees the
// presence and last-seen of the users they share a group with, and of the
// other side of a 1-on-1 chat in which both have sent a message (a
// stranger's first "hi" is a request, not a relationship). Anyone else,
// unknown or unrelated, is answered as offline and never seen, the same as
// a user id that does not exist. The relation is symmetric, so presence
// pushes follow the same rule, and when a 1-on-1 chat becomes mutual each
// side is pushed the other's presence.

const (
	// mutualScan is how many messages are read from each end of a 1-on-1
	// chat (the oldest and the newest) to find both members as senders.
	// A chat whose reply lies only between the two windows is taken as
	// one-sided: the error hides presence, it never reveals it.
	mutualScan = 50
	// oneSidedTTL is how long a one-sided answer is reused before the chat
	// is read again (the node that sequences a reply forgets it at once).
	oneSidedTTL = 30 * time.Second
	// relationsMax bounds the one-sided cache; a full cache is emptied.
	relationsMax = 100_000
)

// oneSided is a 1-on-1 chat found with one member's messages only.
type oneSided struct {
	at     time.Time
	sender string // the member who has sent ("" if none)
}

// relations answers and caches whether the two members of a 1-on-1 chat
// have both sent in it. Safe for concurrent use.
type relations struct {
	store Store
	now   func() time.Time

	mutual sync.Map // chat id → struct{}: known mutual (it never reverts)

	mu  sync.Mutex
	one map[string]oneSided // chat id → last one-sided answer
}

func newRelations(store Store, now func() time.Time) *relations {
	return &relations{store: store, now: now, one: map[string]oneSided{}}
}

// mutualDirect reports whether both members of the 1-on-1 chat have sent a
// text message in it.
func (r *relations) mutualDirect(ctx context.Context, chat string) (bool, error) {
	a, b, ok := record.DirectMembers(chat)
	if !ok {
		return false, nil
	}
	if _, yes := r.mutual.Load(chat); yes {
		return true, nil
	}
	r.mu.Lock()
	o, no := r.one[chat]
	r.mu.Unlock()
	if no && r.now().Sub(o.at) < oneSidedTTL {
		return false, nil
	}
	sent := map[string]bool{}
	for _, p := range []record.Page{{Before: mutualScan + 1, Limit: mutualScan}, {Limit: mutualScan}} {
		msgs, err := r.store.Messages(ctx, chat, p)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Kind == record.MsgText {
				sent[m.Sender] = true
			}
		}
		if sent[a] && sent[b] {
			break
		}
	}
	if sent[a] && sent[b] {
		r.mutual.Store(chat, struct{}{})
		r.mu.Lock()
		delete(r.one, chat)
		r.mu.Unlock()
		return true, nil
	}
	o = oneSided{at: r.now()}
	if sent[a] {
		o.sender = a
	} else if sent[b] {
		o.sender = b
	}
	r.mu.Lock()
	if len(r.one) >= relationsMax {
		clear(r.one)
	}
	r.one[chat] = o
	r.mu.Unlock()
	return false, nil
}

// mayForm reports whether a text message sender stored in the 1-on-1 chat
// may have made it mutual (then the caller checks, off the message path).
// Cheap: one map load for a mutual chat.
func (r *relations) mayForm(chat, sender string) bool {
	if _, yes := r.mutual.Load(chat); yes {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.one[chat]; ok && o.sender == sender {
		return false // the same side again: nothing changed
	}
	delete(r.one, chat) // stale now
	return true
}

// relationCheck looks at a 1-on-1 chat that may just have become mutual
// and, if it has, pushes each side the other's presence. Called by the
// presence loop.
func (s *Service) relationCheck(ctx context.Context, chat string, scratch *fanoutScratch) {
	a, b, ok := record.DirectMembers(chat)
	if !ok {
		return
	}
	if _, known := s.rel.mutual.Load(chat); known {
		return
	}
	mutual, err := s.rel.mutualDirect(ctx, chat)
	if err != nil {
		s.log.Warn("cannot read a 1-on-1 chat for presence", "chat_id", chat, "err", err)
		return
	}
	if !mutual {
		return
	}
	info, err := s.presence.Lookup(ctx, []string{a, b})
	if err != nil || len(info) != 2 {
		info = []proto.PresenceInfo{{User: a}, {User: b}}
	}
	for i := range info {
		if s.reg.online(info[i].User) {
			info[i].Online, info[i].LastSeen = true, 0
		}
	}
	for _, p := range []struct {
		to   string
		info proto.PresenceInfo
	}{{a, info[1]}, {b, info[0]}} {
		frame, err := proto.Marshal(proto.TypePresence, "", proto.PresenceAnswer{Users: []proto.PresenceInfo{p.info}})
		if err == nil {
			s.deliverToUsers([]string{p.to}, frame, nil, scratch)
		}
	}
}

// visibleTo returns which of users requester may see the presence of.
func (s *Service) visibleTo(ctx context.Context, requester string, users []string) (map[string]bool, error) {
	vis := make(map[string]bool, len(users))
	left := 0
	for _, u := range users {
		if u == requester {
			vis[u] = true
		} else if _, ok := vis[u]; !ok {
			vis[u] = false
			left++
		}
	}
	if left == 0 {
		return vis, nil
	}
	chats, err := s.store.UserChats(ctx, requester)
	if err != nil {
		return nil, err
	}
	for _, c := range chats {
		if a, b, ok := record.DirectMembers(c.Chat.ID); ok {
			peer := a
			if peer == requester {
				peer = b
			}
			if seen, asked := vis[peer]; !asked || seen {
				continue
			}
			mutual, err := s.rel.mutualDirect(ctx, c.Chat.ID)
			if err != nil {
				return nil, err
			}
			if mutual {
				vis[peer] = true
				left--
			}
		}
	}
	for _, c := range chats {
		if left == 0 {
			break
		}
		if c.Chat.Kind == record.KindDirect {
			continue
		}
		members, err := s.store.Members(ctx, c.Chat.ID)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(members, requester) {
			continue // left or removed since the chat list was read
		}
		for _, m := range members {
			if seen, asked := vis[m]; asked && !seen {
				vis[m] = true
				left--
			}
		}
	}
	return vis, nil
}
