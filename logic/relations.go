package logic

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Who sees whose presence (docs/protocol.md, "Presence"): a user sees the
// presence and last-seen of the other side of a 1-on-1 chat in which both
// have sent a text message (a stranger's first "hi" is a request, not a
// relationship), and of the members of a group they are in who have sent a
// text message in that group (being added to a group is not consent;
// speaking in it is). Anyone else, unknown or unrelated, is answered as
// offline and never seen, the same as a user id that does not exist.
// Presence pushes follow the same rule, and when a 1-on-1 chat becomes
// mutual each side is pushed the other's presence.
//
// Who has spoken in a chat is learned two ways: the shard that stores a
// text message notes its sender (exact, on the node that sequences the
// chat), and a node that must answer without that knowledge reads the
// chat's first and latest spokenScan messages (a sender whose only
// messages lie between the two windows is missed: the error hides
// presence, it never reveals it). Known senders are never forgotten while
// the entry lives; a read is repeated at most every rescanAfter.

const (
	// spokenScan is how many messages are read from each end of a chat.
	spokenScan = 50
	// rescanAfter is how long a read's answer stands before a sender it did
	// not find is looked for again.
	rescanAfter = 30 * time.Second
	// relationsMax bounds the number of chats remembered; a full cache is
	// emptied.
	relationsMax = 200_000
)

// spoken is what is known of one chat's senders.
type spoken struct {
	mu        sync.Mutex
	senders   map[string]struct{}
	scannedAt time.Time // zero: never read
}

// relations remembers who has spoken in which chat. Safe for concurrent
// use.
type relations struct {
	store Store
	now   func() time.Time
	chats sync.Map // chat id → *spoken
	n     atomic.Int64
}

func newRelations(store Store, now func() time.Time) *relations {
	return &relations{store: store, now: now}
}

func (r *relations) entry(chat string) *spoken {
	if e, ok := r.chats.Load(chat); ok {
		return e.(*spoken)
	}
	if r.n.Add(1) > relationsMax {
		r.chats.Clear()
		r.n.Store(1)
	}
	e, _ := r.chats.LoadOrStore(chat, &spoken{senders: map[string]struct{}{}})
	return e.(*spoken)
}

// Outcomes of noteSender for a 1-on-1 chat.
const (
	notFormed     = iota // nothing changed, or still one-sided as far as is known
	formed               // this message made the chat mutual
	mayHaveFormed        // the other side's earlier messages are unknown here: look
)

// noteSender records that sender stored a text message in chat and tells
// whether that made a 1-on-1 chat mutual: formed when the other side is
// known to have spoken, mayHaveFormed when this node has never read the
// chat (after a restart or a lease move) and so cannot tell. Called by the
// shard after a store: one map load and a small lock.
func (r *relations) noteSender(chat, sender string) int {
	e := r.entry(chat)
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.senders[sender]; ok {
		return notFormed
	}
	e.senders[sender] = struct{}{}
	a, b, ok := record.DirectMembers(chat)
	if !ok {
		return notFormed
	}
	_, sa := e.senders[a]
	_, sb := e.senders[b]
	switch {
	case sa && sb:
		return formed
	case e.scannedAt.IsZero():
		return mayHaveFormed
	}
	return notFormed
}

// hasSpoken reports whether every one of users has sent a text message in
// chat, reading the chat (at most every rescanAfter) when this node does
// not know. lastSeq (0: unknown) saves the second read of a short chat.
func (r *relations) hasSpoken(ctx context.Context, chat string, lastSeq uint64, users ...string) (bool, error) {
	if len(users) == 0 {
		return false, nil
	}
	e := r.entry(chat)
	all := func() bool {
		for _, u := range users {
			if _, ok := e.senders[u]; !ok {
				return false
			}
		}
		return true
	}
	e.mu.Lock()
	if all() || (!e.scannedAt.IsZero() && r.now().Sub(e.scannedAt) < rescanAfter) {
		ok := all()
		e.mu.Unlock()
		return ok, nil
	}
	e.mu.Unlock()
	found := map[string]struct{}{}
	pages := []record.Page{{Before: spokenScan + 1, Limit: spokenScan}}
	if lastSeq == 0 || lastSeq > spokenScan {
		pages = append(pages, record.Page{Limit: spokenScan})
	}
	for _, p := range pages {
		msgs, err := r.store.Messages(ctx, chat, p)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if m.Kind == record.MsgText && m.Sender != "" {
				found[m.Sender] = struct{}{}
			}
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range found { // a union: what the shard noted meanwhile stays
		e.senders[s] = struct{}{}
	}
	e.scannedAt = r.now()
	return all(), nil
}

// relationFormed pushes each side of a 1-on-1 chat that just became mutual
// the other's presence; with check, it first reads whether it is mutual
// (the shard could not tell). Called by the presence loop.
func (s *Service) relationFormed(ctx context.Context, chat string, check bool, scratch *fanoutScratch) {
	a, b, ok := record.DirectMembers(chat)
	if !ok {
		return
	}
	if check {
		if mutual, err := s.rel.hasSpoken(ctx, chat, 0, a, b); err != nil || !mutual {
			return
		}
	}
	found, err := s.presence.Lookup(ctx, []string{a, b})
	info := wirePresence(found)
	if err != nil || len(info) != 2 {
		info = []proto.PresenceInfo{{User: a}, {User: b}}
	}
	for i := range info {
		if s.reg.online(info[i].User) {
			info[i].Online, info[i].LastSeen = true, 0
		}
	}
	s.hideLastSeen(ctx, "", info)
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
		if left == 0 || ctx.Err() != nil {
			break
		}
		if a, b, ok := record.DirectMembers(c.Chat.ID); ok {
			peer := a
			if peer == requester {
				peer = b
			}
			if seen, asked := vis[peer]; !asked || seen {
				continue
			}
			mutual, err := s.rel.hasSpoken(ctx, c.Chat.ID, c.LastSeq, a, b)
			if err != nil {
				return nil, err
			}
			if mutual {
				vis[peer] = true
				left--
			}
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
			if seen, asked := vis[m]; !asked || seen {
				continue
			}
			spoke, err := s.rel.hasSpoken(ctx, c.Chat.ID, c.LastSeq, m)
			if err != nil {
				return nil, err
			}
			if spoke {
				vis[m] = true
				left--
			}
		}
	}
	return vis, nil
}
