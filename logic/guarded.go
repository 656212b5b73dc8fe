package logic

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/logic/breaker"
)

// This file is the one place where the breaker (logic/breaker) meets the
// store: every Store method goes through it.

// guardedStore wraps a Store with the breaker: when the store is slow or
// failing, calls fail fast instead of queueing behind it.
type guardedStore struct {
	s Store
	b *breaker.Breaker
}

// AppendMessages counts a call as failed when any chat's append failed
// other than by a conflict (a conflict is another writer, not the store
// failing).
func (g guardedStore) AppendMessages(ctx context.Context, apps []record.ChatAppend) (res []record.AppendResult) {
	err := g.b.Call(func() error {
		res = g.s.AppendMessages(ctx, apps)
		for _, r := range res {
			if r.Err != nil && !errors.Is(r.Err, record.ErrConflict) {
				return r.Err
			}
		}
		return nil
	})
	if res == nil { // the circuit is open: nothing was tried
		res = make([]record.AppendResult, len(apps))
		for i := range res {
			res[i].Err = err
		}
	}
	return res
}

func (g guardedStore) DedupKeys(ctx context.Context, chatID string, limit int) (k []record.DedupKey, complete bool, err error) {
	err = g.b.Call(func() (e error) { k, complete, e = g.s.DedupKeys(ctx, chatID, limit); return })
	return
}

func (g guardedStore) LastSeq(ctx context.Context, chatID string) (n uint64, err error) {
	err = g.b.Call(func() (e error) { n, e = g.s.LastSeq(ctx, chatID); return })
	return
}

func (g guardedStore) LookupDedup(ctx context.Context, key record.DedupKey) (m record.Message, err error) {
	err = g.b.Call(func() (e error) { m, e = g.s.LookupDedup(ctx, key); return })
	return
}

func (g guardedStore) Message(ctx context.Context, chatID string, seq uint64) (m record.Message, err error) {
	err = g.b.Call(func() (e error) { m, e = g.s.Message(ctx, chatID, seq); return })
	return
}

func (g guardedStore) Messages(ctx context.Context, chatID string, p record.Page) (ms []record.Message, err error) {
	err = g.b.Call(func() (e error) { ms, e = g.s.Messages(ctx, chatID, p); return })
	return
}

func (g guardedStore) CreateChat(ctx context.Context, c record.Chat, members []string) error {
	return g.b.Call(func() error { return g.s.CreateChat(ctx, c, members) })
}

func (g guardedStore) Chat(ctx context.Context, chatID string) (c record.Chat, err error) {
	err = g.b.Call(func() (e error) { c, e = g.s.Chat(ctx, chatID); return })
	return
}

func (g guardedStore) Members(ctx context.Context, chatID string) (m []string, err error) {
	err = g.b.Call(func() (e error) { m, e = g.s.Members(ctx, chatID); return })
	return
}

func (g guardedStore) AddMember(ctx context.Context, chatID string, m record.Member) error {
	return g.b.Call(func() error { return g.s.AddMember(ctx, chatID, m) })
}

func (g guardedStore) GroupMembers(ctx context.Context, chatID string) (ms []record.Member, err error) {
	err = g.b.Call(func() (e error) { ms, e = g.s.GroupMembers(ctx, chatID); return })
	return
}

func (g guardedStore) SetRole(ctx context.Context, chatID, user string, role record.Role) error {
	return g.b.Call(func() error { return g.s.SetRole(ctx, chatID, user, role) })
}

func (g guardedStore) RemoveMember(ctx context.Context, chatID, user string) error {
	return g.b.Call(func() error { return g.s.RemoveMember(ctx, chatID, user) })
}

func (g guardedStore) UserChats(ctx context.Context, user string) (e []record.ChatEntry, err error) {
	err = g.b.Call(func() (x error) { e, x = g.s.UserChats(ctx, user); return })
	return
}

func (g guardedStore) SaveMarks(ctx context.Context, marks []record.Mark) error {
	return g.b.CallBulk(func() error { return g.s.SaveMarks(ctx, marks) })
}

func (g guardedStore) DeviceCursor(ctx context.Context, user, device, chatID string) (n uint64, err error) {
	err = g.b.Call(func() (e error) { n, e = g.s.DeviceCursor(ctx, user, device, chatID); return })
	return
}

func (g guardedStore) ChatCursors(ctx context.Context, chatID string) (c []record.DeviceCursor, err error) {
	err = g.b.Call(func() (e error) { c, e = g.s.ChatCursors(ctx, chatID); return })
	return
}

func (g guardedStore) UserSettings(ctx context.Context, user string) (st record.UserSettings, err error) {
	err = g.b.Call(func() (e error) { st, e = g.s.UserSettings(ctx, user); return })
	return
}

func (g guardedStore) PutUserSettings(ctx context.Context, user string, st record.UserSettings) error {
	return g.b.Call(func() error { return g.s.PutUserSettings(ctx, user, st) })
}

func (g guardedStore) PutPushSubscription(ctx context.Context, sub record.PushSubscription) error {
	return g.b.Call(func() error { return g.s.PutPushSubscription(ctx, sub) })
}

func (g guardedStore) PushSubscriptions(ctx context.Context, user string) (subs []record.PushSubscription, err error) {
	err = g.b.Call(func() (e error) { subs, e = g.s.PushSubscriptions(ctx, user); return })
	return
}

func (g guardedStore) DeletePushSubscription(ctx context.Context, user, device string) error {
	return g.b.Call(func() error { return g.s.DeletePushSubscription(ctx, user, device) })
}

func (g guardedStore) Close() error { return g.s.Close() }
