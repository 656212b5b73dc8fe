package storage

import (
	"context"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Store is the whole contract: what every backend implements and
// storage/storetest checks. Sequencing is not the store's job: the logic
// tier assigns seqs and only ever appends seq = LastSeq+1 for a chat it
// owns. The store never overwrites a stored (chat, seq) with other
// content: it refuses with ErrConflict, or (CQL under leases) fences the
// older writer by epoch.
type Store interface {
	MessageLog
	Chats
	Cursors
	Settings
	PushSubscriptions
	PushLedger
	// Close flushes and releases the store.
	Close() error
}

// MessageLog is a chat's messages and the request keys that make sends
// idempotent.
type MessageLog interface {
	// AppendMessages durably stores each chat's messages and, for each with
	// a RequestID, the dedup entry record.MessageDedupKey (chat, sender,
	// device, request id) -> message,
	// and returns one result per append (record.AppendResult): chats are
	// independent; a chat whose seqs meet a stored message with other
	// content gets ErrConflict; an error leaves the outcome of the rest
	// unknown, and the caller appends it again, unchanged, until it knows.
	// Messages stored already with the same content count as stored. It
	// returns only after the writes are durable (synced); concurrent calls
	// share syncs (group commit). Each append names one chat, at most once
	// per call, with dense ascending seqs.
	AppendMessages(ctx context.Context, appends []record.ChatAppend) []record.AppendResult
	// LastSeq returns the highest seq stored for chat, 0 if none.
	LastSeq(ctx context.Context, chatID string) (uint64, error)
	// LookupDedup returns the message stored under key, or ErrNotFound.
	// A key stored before keys were scoped per device (no device) answers
	// only when record.UnscopedMatch says so.
	LookupDedup(ctx context.Context, key record.DedupKey) (record.Message, error)
	// DedupKeys returns up to limit of the chat's stored request keys;
	// complete is false when there may be more (then a key absent from the
	// list may still be stored). Keys may name messages that never landed
	// (LookupDedup tells).
	DedupKeys(ctx context.Context, chatID string, limit int) (keys []record.DedupKey, complete bool, err error)
	// Message returns one message, or ErrNotFound.
	Message(ctx context.Context, chatID string, seq uint64) (record.Message, error)
	// Messages returns a page of history in ascending seq order (see
	// record.Page). A chat without messages gives an empty slice.
	Messages(ctx context.Context, chatID string, page record.Page) ([]record.Message, error)
}

// Chats is chats, their members and each user's chat list.
type Chats interface {
	// CreateChat durably stores a chat with its initial members and adds it
	// to each member's chat list. ErrConflict if a group chat exists. A
	// direct chat's id fixes its members, so creating one that exists either
	// succeeds (its members unchanged; created_by and created_at may take
	// this call's values) or gives ErrConflict, as the backend finds cheaper
	// (CQL: success, with no transaction).
	CreateChat(ctx context.Context, chat record.Chat, members []string) error
	// Chat returns a chat's metadata, or ErrNotFound.
	Chat(ctx context.Context, chatID string) (record.Chat, error)
	// Members returns the chat's members in ascending order, or ErrNotFound
	// when the chat does not exist.
	Members(ctx context.Context, chatID string) ([]string, error)
	// GroupMembers returns the chat's member rows (record.Member: role and
	// join seq) in ascending user order, or ErrNotFound when the chat does
	// not exist. CreateChat stores a group's creator as RoleCreator and
	// every other initial member as RoleMember, joined 0; rows stored
	// before roles existed read as RoleUnset.
	GroupMembers(ctx context.Context, chatID string) ([]record.Member, error)
	// AddMember durably adds m.User to chat, with m's role and join seq,
	// and the chat to the user's list. Adding an existing member is not an
	// error and replaces its row (role and join seq).
	AddMember(ctx context.Context, chatID string, m record.Member) error
	// SetRole durably changes the role of user in chat; ErrNotFound when
	// the chat does not exist or user is not a member. Not atomic against a
	// concurrent RemoveMember of the same user (the logic tier serialises
	// a chat's changes).
	SetRole(ctx context.Context, chatID, user string, role record.Role) error
	// RemoveMember durably removes user from chat and the chat from the
	// user's list. Removing a non-member is not an error.
	RemoveMember(ctx context.Context, chatID, user string) error
	// UserChats returns the user's chat list with each chat's last seq and
	// the user's read marker, in no particular order.
	UserChats(ctx context.Context, user string) ([]record.ChatEntry, error)
}

// Cursors is read markers and per-device delivery cursors.
type Cursors interface {
	// SaveMarks raises read markers and device cursors (record.Mark), never
	// lowering one, durably when it returns nil (synced). The logic tier
	// coalesces marks and calls it up to eight times an interval, each call
	// with the marks that came due (logic/marks).
	SaveMarks(ctx context.Context, marks []record.Mark) error
	// DeviceCursor returns the device's delivery cursor in chat, 0 if none.
	DeviceCursor(ctx context.Context, user, device, chatID string) (uint64, error)
	// ChatCursors returns the delivery cursor of every device that has one
	// in chat (any order); empty for a chat without cursors. Receipts for a
	// sender who was offline are rebuilt from it.
	ChatCursors(ctx context.Context, chatID string) ([]record.DeviceCursor, error)
}

// Settings is each user's settings.
type Settings interface {
	// UserSettings returns the user's settings; the zero value for a user
	// who never stored any (not an error).
	UserSettings(ctx context.Context, user string) (record.UserSettings, error)
	// PutUserSettings durably replaces the user's settings.
	PutUserSettings(ctx context.Context, user string, st record.UserSettings) error
}

// PushSubscriptions is each device's Web Push subscription.
type PushSubscriptions interface {
	// PutPushSubscription stores sub as the push subscription of
	// (sub.User, sub.Device), replacing any earlier one. Durable.
	PutPushSubscription(ctx context.Context, sub record.PushSubscription) error
	// PushSubscriptions returns the user's subscriptions, one per device,
	// in no particular order; empty for a user without any.
	PushSubscriptions(ctx context.Context, user string) ([]record.PushSubscription, error)
	// DeletePushSubscription removes the device's subscription. Deleting
	// an absent one is not an error.
	DeletePushSubscription(ctx context.Context, user, device string) error
}

// PushLedger is the notifier's record of pushes made, so that a push is
// made once however many notifiers see its event.
type PushLedger interface {
	// MarkPushed is the push ledger: it records key for ttl and reports
	// first=true only to the first caller of key while the record lives
	// (an expired record counts as absent). Concurrent callers of one key,
	// on one node or several, get exactly one first=true.
	MarkPushed(ctx context.Context, key string, ttl time.Duration) (first bool, err error)
}
