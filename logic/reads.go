package logic

import (
	"context"
	"errors"
	"slices"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// maxPresenceUsers bounds one presence query.
const maxPresenceUsers = 256

// handleRead answers history, chats, members, presence and settings. It
// runs on the bounded read pool.
func (s *Service) handleRead(r *request) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	frame, err := s.read(ctx, r)
	s.requestDone(r, err)
	if err != nil {
		s.replyErr(r.out, r.in.ID, err)
		return
	}
	r.out.reply(frame)
}

func (s *Service) read(ctx context.Context, r *request) ([]byte, error) {
	in := &r.in
	switch in.Type {
	case proto.TypeHistory:
		p := record.Page{Before: in.Before, Limit: in.Limit}
		if in.After != nil {
			p.After, p.Forward = *in.After, true
		}
		msgs, more, err := s.History(ctx, r.user, in.Chat, p)
		if err != nil {
			return nil, err
		}
		return proto.AppendHistory(nil, in.ID, in.Chat, msgs, more), nil
	case proto.TypeChats:
		chats, err := s.Chats(ctx, r.user)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(proto.TypeChats, in.ID, proto.ChatsAnswer{Chats: chats})
	case proto.TypeMembers:
		ans, err := s.ChatMembers(ctx, r.user, in.Chat)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(proto.TypeMembers, in.ID, ans)
	case proto.TypePresence:
		users, err := s.Presence(ctx, r.user, in.Users)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(proto.TypePresence, in.ID, proto.PresenceAnswer{Users: users})
	case proto.TypeSettings:
		st, err := s.Settings(ctx, r.user, in.HideLastSeen)
		if err != nil {
			return nil, err
		}
		return proto.Marshal(proto.TypeSettings, in.ID, proto.SettingsAnswer{HideLastSeen: st.HideLastSeen})
	}
	return nil, proto.Errorf(proto.CodeUnknownType, "unexpected frame type %q", in.Type)
}

// checkMember returns nil if user may read chat.
func (s *Service) checkMember(ctx context.Context, user, chat string) error {
	kind, ok := record.ParseChatID(chat)
	if !ok {
		return proto.Errorf(proto.CodeBadRequest, "chat is missing or not a valid chat id")
	}
	if kind == record.KindDirect {
		a, b, _ := record.DirectMembers(chat)
		if user != a && user != b {
			return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", chat)
		}
		return nil
	}
	members, err := s.store.Members(ctx, chat)
	if err != nil {
		return err
	}
	if _, found := slices.BinarySearch(members, user); !found && !slices.Contains(members, user) {
		return proto.Errorf(proto.CodeNotMember, "you are not a member of %s", chat)
	}
	return nil
}

// History returns a page of chat's messages for user, in ascending seq
// order, and whether more messages lie beyond the page in the paging
// direction. Safe for concurrent use.
func (s *Service) History(ctx context.Context, user, chat string, p record.Page) ([]record.Message, bool, error) {
	p.Forward = p.Forward || p.After > 0
	if p.Before > 0 && p.Forward {
		return nil, false, proto.Errorf(proto.CodeBadRequest, "history takes before or after, not both")
	}
	if p.Limit == 0 {
		p.Limit = 50
	}
	if p.Limit < 0 || p.Limit > record.MaxPageLimit {
		return nil, false, proto.Errorf(proto.CodeBadRequest, "limit must be in 1..%d", record.MaxPageLimit)
	}
	if err := s.checkMember(ctx, user, chat); err != nil {
		return nil, false, err
	}
	want := p.Limit
	if want < record.MaxPageLimit {
		p.Limit = want + 1 // one extra tells whether there is more
	}
	msgs, err := s.store.Messages(ctx, chat, p)
	if err != nil {
		return nil, false, err
	}
	more := false
	if len(msgs) > want {
		more = true
		if p.Forward {
			msgs = msgs[:want]
		} else {
			msgs = msgs[len(msgs)-want:]
		}
	} else if want == record.MaxPageLimit && len(msgs) == want {
		more = true // cannot tell without a second query; the client asks again
		if !p.Forward && msgs[0].Seq == 1 {
			more = false
		}
	}
	if msgs == nil {
		msgs = []record.Message{}
	}
	return msgs, more, nil
}

// Chats returns user's chat list. Safe for concurrent use.
func (s *Service) Chats(ctx context.Context, user string) ([]proto.ChatInfo, error) {
	entries, err := s.store.UserChats(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]proto.ChatInfo, 0, len(entries))
	for _, e := range entries {
		// A read marker this node has not written yet.
		e.ReadSeq = max(e.ReadSeq, s.marks.Get(record.MarkRead, user, "", e.Chat.ID))
		ci := proto.ChatInfo{Chat: e.Chat.ID, Kind: e.Chat.Kind.String(), Name: e.Chat.Name, LastSeq: e.LastSeq, ReadSeq: e.ReadSeq, Unread: e.Unread()}
		if a, b, ok := record.DirectMembers(e.Chat.ID); ok {
			ci.Members = []string{a, b}
		}
		out = append(out, ci)
	}
	slices.SortFunc(out, func(a, b proto.ChatInfo) int {
		if a.Chat < b.Chat {
			return -1
		}
		if a.Chat > b.Chat {
			return 1
		}
		return 0
	})
	return out, nil
}

// ChatMembers returns chat's members (and a group's admins and creator) if
// user is one. Safe for concurrent use.
func (s *Service) ChatMembers(ctx context.Context, user, chat string) (proto.MembersAnswer, error) {
	ans := proto.MembersAnswer{Chat: chat}
	if err := s.checkMember(ctx, user, chat); err != nil {
		return ans, err
	}
	if a, b, ok := record.DirectMembers(chat); ok {
		ans.Members = []string{a, b}
		return ans, nil
	}
	meta, err := s.store.Chat(ctx, chat)
	if err != nil {
		return ans, err
	}
	rows, err := s.store.GroupMembers(ctx, chat)
	if err != nil {
		return ans, err
	}
	ans.Members = make([]string, len(rows))
	for i, m := range rows {
		ans.Members[i] = m.User
	}
	roles, _ := resolveRoles(meta, rows)
	ans.Admins, ans.Creator = roles.adminList()
	return ans, nil
}

// Presence answers whether users are online and when they were last
// seen, as requester may see it (relations.go): users requester has no
// relationship with, and ids no one uses, are answered the same way —
// offline, never seen.
func (s *Service) Presence(ctx context.Context, requester string, users []string) ([]proto.PresenceInfo, error) {
	if len(users) == 0 || len(users) > maxPresenceUsers {
		return nil, proto.Errorf(proto.CodeBadRequest, "presence takes 1..%d users", maxPresenceUsers)
	}
	for _, u := range users {
		if !record.ValidID(u) {
			return nil, proto.Errorf(proto.CodeBadRequest, "%q is not a valid user id", truncate(u, 64))
		}
	}
	vis, err := s.visibleTo(ctx, requester, users)
	if err != nil {
		return nil, err
	}
	var shown []string
	for _, u := range users {
		if vis[u] {
			shown = append(shown, u)
		}
	}
	known := map[string]proto.PresenceInfo{}
	if len(shown) > 0 {
		info, err := s.presence.Lookup(ctx, shown)
		if err != nil {
			s.log.Warn("presence lookup failed; reporting offline", "err", err)
			info = nil
		}
		for _, pi := range wirePresence(info) {
			known[pi.User] = pi
		}
	}
	out := make([]proto.PresenceInfo, len(users))
	for i, u := range users {
		out[i] = proto.PresenceInfo{User: u}
		if !vis[u] {
			continue
		}
		if pi, ok := known[u]; ok {
			out[i] = pi
		}
		// This node knows its own sessions for sure.
		if s.reg.online(u) {
			out[i].Online, out[i].LastSeen = true, 0
		}
	}
	s.hideLastSeen(ctx, requester, out)
	return out, nil
}

var _ = errors.Is
