package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/storage"
)

// Store is the contract the suite checks: storage.Store, declared once
// in storage/contract.go.
type Store = storage.Store

// Options says what the backend under test promises beyond the common
// contract.
type Options struct {
	// Epoch is the lease epoch the suite appends with
	// (record.ChatAppend.Epoch). Backends that fence stale writers by epoch
	// need one above 0; the others ignore it.
	Epoch uint64
	// NoConflicts: the backend does not detect two writers of one seq
	// (CQL under leases, where the lease makes the writer unique and
	// message rows are plain writes); the sub-tests that race writers of
	// one seq are skipped.
	NoConflicts bool
}

// Run runs the conformance suite. newStore must return a fresh, empty store
// for every call; Run closes each store it creates (Close must therefore be
// idempotent if newStore also registers a cleanup that closes it).
//
// Semantics pinned down by the suite beyond the interface comments:
//   - Page.Limit <= 0 or > record.MaxPageLimit means record.MaxPageLimit.
//   - With Page.Before > 0, Page.After is ignored (record.Page).
//   - An append that is not one chat with dense ascending seqs, or that
//     names a chat twice in one call, is refused with an error other than
//     ErrConflict, and nothing of it is stored.
//   - The appends of one call are independent: a conflict in one chat
//     stores the others (record.AppendResult).
//   - Appending messages that are stored already with identical content
//     succeeds (the retry of an append whose outcome was unknown).
//   - AddMember and RemoveMember on a chat that does not exist return
//     ErrNotFound; UserChats of an unknown user is empty, not an error.
//   - UserSettings of a user who never stored any is the zero value, not
//     an error; PutUserSettings refuses an empty user id.
//   - PushSubscriptions returns an empty, non-nil slice for a user without
//     subscriptions. MarkPushed refuses an empty key and a ttl <= 0; CQL
//     backends round ttl up to whole seconds.
func Run(t *testing.T, newStore func(t *testing.T) Store, o Options) {
	t.Helper()
	tests := []struct {
		name      string
		fn        func(t *testing.T, s Store, o Options)
		conflicts bool // needs a backend that detects writers racing for a seq
	}{
		{"AppendAndRead", testAppendAndRead, false},
		{"Pages", testPages, false},
		{"PageLimitCap", testPageLimitCap, false},
		{"InvalidAppends", testInvalidAppends, false},
		{"RetrySameContent", testRetrySameContent, false},
		{"ConflictPerChat", testConflict, true},
		{"Dedup", testDedup, false},
		{"DedupKeys", testDedupKeys, false},
		{"ManyChatsOneBatch", testManyChats, false},
		{"ConcurrentAppends", testConcurrentAppends, false},
		{"RacingAppendsSameSeq", testRacingAppends, true},
		{"CreateChat", testCreateChat, false},
		{"Membership", testMembership, false},
		{"Roles", testRoles, false},
		{"UserChats", testUserChats, false},
		{"MonotonicMarkers", testMonotonicMarkers, false},
		{"UserSettings", testUserSettings, false},
		{"PushSubscriptions", testPushSubscriptions, false},
		{"MarkPushed", testMarkPushed, false},
		{"MarkPushedConcurrent", testMarkPushedConcurrent, false},
		{"Closed", testClosed, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.conflicts && o.NoConflicts {
				t.Skip("the backend does not detect racing writers of one seq (Options.NoConflicts)")
			}
			s := newStore(t)
			tc.fn(t, s, o)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// Msg returns a test message of chatID at seq with every field set, so that
// round trips are checked field by field. Messages with an even seq carry a
// request id (and so a dedup entry); odd ones are system messages.
func Msg(chatID string, seq uint64) record.Message {
	m := record.Message{
		ChatID: chatID,
		Seq:    seq,
		Sender: "alice",
		Device: "phone-1",
		TS:     1_700_000_000_000 + int64(seq),
		Kind:   record.MsgText,
		Body:   fmt.Sprintf("hello %d \u00e9\u6f22\x00 from %s", seq, chatID),
	}
	if seq%2 == 0 {
		m.RequestID = fmt.Sprintf("req-%d", seq)
	} else {
		m.Kind = record.MsgSystem
		m.Sender = ""
		m.Device = ""
		m.Body = `{"event":"join","user":"bob"}`
	}
	return m
}

// Msgs returns Msg(chatID, seq) for seq in [from, to].
func Msgs(chatID string, from, to uint64) []record.Message {
	var out []record.Message
	for seq := from; seq <= to; seq++ {
		out = append(out, Msg(chatID, seq))
	}
	return out
}

// Appends groups msgs by chat, in order of first appearance, into one
// ChatAppend per chat at epoch.
func Appends(epoch uint64, msgs []record.Message) []record.ChatAppend {
	var out []record.ChatAppend
	idx := map[string]int{}
	for _, m := range msgs {
		i, ok := idx[m.ChatID]
		if !ok {
			i = len(out)
			idx[m.ChatID] = i
			out = append(out, record.ChatAppend{Epoch: epoch})
		}
		out[i].Msgs = append(out[i].Msgs, m)
	}
	return out
}

// Append appends msgs (grouped by chat) at epoch and returns the joined
// errors of the chats that were not stored whole.
func Append(ctx context.Context, s Store, epoch uint64, msgs []record.Message) error {
	apps := Appends(epoch, msgs)
	res := s.AppendMessages(ctx, apps)
	if len(res) != len(apps) {
		return fmt.Errorf("AppendMessages: got %d results for %d appends", len(res), len(apps))
	}
	var errs []error
	for i, r := range res {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("chat %s (stored %d of %d): %w", apps[i].ChatID(), r.Stored, len(apps[i].Msgs), r.Err))
		} else if r.Stored != len(apps[i].Msgs) {
			errs = append(errs, fmt.Errorf("chat %s: no error but stored %d of %d", apps[i].ChatID(), r.Stored, len(apps[i].Msgs)))
		}
	}
	return errors.Join(errs...)
}

// setRead raises a read marker through SaveMarks.
func setRead(ctx context.Context, s Store, user, chat string, seq uint64) error {
	return s.SaveMarks(ctx, []record.Mark{{Kind: record.MarkRead, User: user, ChatID: chat, Seq: seq}})
}

// setCursor raises a device cursor through SaveMarks.
func setCursor(ctx context.Context, s Store, user, device, chat string, seq uint64) error {
	return s.SaveMarks(ctx, []record.Mark{{Kind: record.MarkCursor, User: user, Device: device, ChatID: chat, Seq: seq}})
}

func mustAppend(t *testing.T, s Store, o Options, msgs []record.Message) {
	t.Helper()
	if err := Append(t.Context(), s, o.Epoch, msgs); err != nil {
		t.Fatalf("AppendMessages(%d msgs): %v", len(msgs), err)
	}
}

// appendOne appends one chat's messages and returns its result.
func appendOne(t *testing.T, s Store, o Options, msgs []record.Message) record.AppendResult {
	t.Helper()
	res := s.AppendMessages(t.Context(), []record.ChatAppend{{Epoch: o.Epoch, Msgs: msgs}})
	if len(res) != 1 {
		t.Fatalf("AppendMessages: got %d results for 1 append", len(res))
	}
	return res[0]
}

func wantLastSeq(t *testing.T, s Store, chatID string, want uint64) {
	t.Helper()
	got, err := s.LastSeq(t.Context(), chatID)
	if err != nil {
		t.Fatalf("LastSeq(%q): %v", chatID, err)
	}
	if got != want {
		t.Fatalf("LastSeq(%q): got %d, want %d", chatID, got, want)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func seqs(msgs []record.Message) []uint64 {
	out := make([]uint64, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, m.Seq)
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	out := []uint64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func testAppendAndRead(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "g:read"
	wantLastSeq(t, s, chat, 0)
	in := Msgs(chat, 1, 5)
	in[2].Body = "" // empty body survives too
	mustAppend(t, s, o, in[:2])
	mustAppend(t, s, o, in[2:])
	for _, want := range in {
		got, err := s.Message(ctx, chat, want.Seq)
		if err != nil {
			t.Fatalf("Message(%q, %d): %v", chat, want.Seq, err)
		}
		if got != want {
			t.Fatalf("Message(%q, %d): got %+v, want %+v", chat, want.Seq, got, want)
		}
	}
	wantLastSeq(t, s, chat, 5)
	wantLastSeq(t, s, "g:rea", 0)
	wantLastSeq(t, s, "g:read2", 0)

	_, err := s.Message(ctx, chat, 6)
	wantErr(t, "Message past the end", err, record.ErrNotFound)
	_, err = s.Message(ctx, chat, 0)
	wantErr(t, "Message seq 0", err, record.ErrNotFound)
	_, err = s.Message(ctx, "g:nochat", 1)
	wantErr(t, "Message of unknown chat", err, record.ErrNotFound)

	got, err := s.Messages(ctx, chat, record.Page{Limit: 10})
	if err != nil {
		t.Fatalf("Messages: %v", err)
	}
	if !slices.Equal(got, in) {
		t.Fatalf("Messages: got %+v, want %+v", got, in)
	}
	got, err = s.Messages(ctx, "g:nochat", record.Page{Limit: 10})
	if err != nil {
		t.Fatalf("Messages of unknown chat: %v", err)
	}
	if len(got) != 0 {
		t.Fatalf("Messages of unknown chat: got %d messages, want 0", len(got))
	}
}

func testPages(t *testing.T, s Store, o Options) {
	const chat = "g:p"
	mustAppend(t, s, o, Msgs(chat, 1, 10))
	// Neighbours whose ids share a prefix must not leak into the pages.
	mustAppend(t, s, o, append(Msgs("g:pa", 1, 12), Msgs("g:", 1, 3)...))

	tests := []struct {
		name string
		page record.Page
		want []uint64
	}{
		{"newest", record.Page{Limit: 3}, seqRange(8, 10)},
		{"newest all", record.Page{Limit: 50}, seqRange(1, 10)},
		{"before", record.Page{Before: 5, Limit: 2}, seqRange(3, 4)},
		{"before short", record.Page{Before: 5, Limit: 10}, seqRange(1, 4)},
		{"before past end", record.Page{Before: 100, Limit: 3}, seqRange(8, 10)},
		{"before first", record.Page{Before: 1, Limit: 3}, []uint64{}},
		{"before wins over after", record.Page{Before: 5, After: 2, Limit: 10}, seqRange(1, 4)},
		{"after", record.Page{After: 2, Limit: 3}, seqRange(3, 5)},
		{"after short", record.Page{After: 7, Limit: 10}, seqRange(8, 10)},
		{"after last", record.Page{After: 10, Limit: 3}, []uint64{}},
		{"after past end", record.Page{After: 100, Limit: 3}, []uint64{}},
		{"forward from the start", record.Page{Forward: true, Limit: 3}, seqRange(1, 3)},
		{"forward after", record.Page{After: 4, Forward: true, Limit: 2}, seqRange(5, 6)},
		{"before wins over forward", record.Page{Before: 5, Forward: true, Limit: 2}, seqRange(3, 4)},
		{"limit zero means max", record.Page{}, seqRange(1, 10)},
		{"negative limit means max", record.Page{After: 4, Limit: -1}, seqRange(5, 10)},
		{"limit one", record.Page{Before: 10, Limit: 1}, []uint64{9}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Messages(t.Context(), chat, tc.page)
			if err != nil {
				t.Fatalf("Messages(%+v): %v", tc.page, err)
			}
			if !slices.Equal(seqs(got), tc.want) {
				t.Fatalf("Messages(%+v): got seqs %v, want %v", tc.page, seqs(got), tc.want)
			}
			for _, m := range got {
				if want := Msg(chat, m.Seq); m != want {
					t.Fatalf("Messages(%+v): got %+v, want %+v", tc.page, m, want)
				}
			}
		})
	}
}

func testPageLimitCap(t *testing.T, s Store, o Options) {
	const chat = "g:big"
	const n = record.MaxPageLimit + 50
	mustAppend(t, s, o, Msgs(chat, 1, n))
	tests := []struct {
		page record.Page
		want []uint64
	}{
		{record.Page{Limit: 1000}, seqRange(n-record.MaxPageLimit+1, n)},
		{record.Page{After: 10, Limit: 1000}, seqRange(11, 10+record.MaxPageLimit)},
		{record.Page{Before: n, Limit: record.MaxPageLimit + 1}, seqRange(n-record.MaxPageLimit, n-1)},
	}
	for _, tc := range tests {
		got, err := s.Messages(t.Context(), chat, tc.page)
		if err != nil {
			t.Fatalf("Messages(%+v): %v", tc.page, err)
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Fatalf("Messages(%+v): got seqs %v, want %v", tc.page, seqs(got), tc.want)
		}
	}
}

// testConflict: an append that meets a seq holding a different message is
// refused for that chat only; the other chats of the call are stored, and
// identical rows count as stored.
func testConflict(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const a, b = "g:ca", "g:cb"
	mustAppend(t, s, o, Msgs(a, 1, 4))
	other := func(m record.Message) record.Message {
		m.Body = "another writer"
		return m
	}

	tests := []struct {
		name    string
		appends [][]record.Message
		want    []record.AppendResult // Err: nil or ErrConflict
	}{
		{"taken seq", [][]record.Message{{other(Msg(a, 2))}},
			[]record.AppendResult{{Stored: 0, Err: record.ErrConflict}}},
		{"taken seq then a new one", [][]record.Message{{other(Msg(a, 4)), Msg(a, 5)}},
			[]record.AppendResult{{Stored: 0, Err: record.ErrConflict}}},
		{"identical rows then a taken one", [][]record.Message{{Msg(a, 3), other(Msg(a, 4)), Msg(a, 5)}},
			[]record.AppendResult{{Stored: 1, Err: record.ErrConflict}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var apps []record.ChatAppend
			for _, msgs := range tc.appends {
				apps = append(apps, record.ChatAppend{Epoch: o.Epoch, Msgs: msgs})
			}
			got := s.AppendMessages(ctx, apps)
			if len(got) != len(tc.want) {
				t.Fatalf("AppendMessages: got %d results, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				if got[i].Stored != w.Stored || !errors.Is(got[i].Err, w.Err) || (w.Err == nil) != (got[i].Err == nil) {
					t.Fatalf("AppendMessages result %d: got %+v, want %+v", i, got[i], w)
				}
			}
			// Nothing of the refused part is visible; the stored rows are
			// untouched.
			wantLastSeq(t, s, a, 4)
			_, err := s.Message(ctx, a, 5)
			wantErr(t, "Message of the refused part", err, record.ErrNotFound)
			for _, want := range Msgs(a, 1, 4) {
				got, err := s.Message(ctx, a, want.Seq)
				if err != nil || got != want {
					t.Fatalf("Message(%q, %d): got %+v, %v, want %+v", a, want.Seq, got, err, want)
				}
			}
		})
	}

	// A conflict in one chat leaves the other chats of the call alone.
	res := s.AppendMessages(ctx, []record.ChatAppend{
		{Epoch: o.Epoch, Msgs: Msgs(b, 1, 2)},
		{Epoch: o.Epoch, Msgs: []record.Message{other(Msg(a, 1))}},
		{Epoch: o.Epoch, Msgs: Msgs("g:cc", 1, 1)},
	})
	if len(res) != 3 || res[0].Err != nil || res[0].Stored != 2 || !errors.Is(res[1].Err, record.ErrConflict) || res[2].Err != nil || res[2].Stored != 1 {
		t.Fatalf("AppendMessages(b, taken a, c): got %+v, want b and c stored, a ErrConflict", res)
	}
	wantLastSeq(t, s, b, 2)
	wantLastSeq(t, s, "g:cc", 1)
	if got, err := s.Message(ctx, b, 2); err != nil || got != Msg(b, 2) {
		t.Fatalf("Message(%q, 2): got %+v, %v, want %+v", b, got, err, Msg(b, 2))
	}
	if got, err := s.LookupDedup(ctx, record.DedupKey{ChatID: b, Sender: "alice", Device: "phone-1", RequestID: "req-2"}); err != nil || got != Msg(b, 2) {
		t.Fatalf("LookupDedup(b, req-2): got %+v, %v, want %+v", got, err, Msg(b, 2))
	}
	// The store stays usable after a conflict.
	mustAppend(t, s, o, []record.Message{Msg(a, 5), Msg(b, 3)})
	wantLastSeq(t, s, a, 5)
	wantLastSeq(t, s, b, 3)
}

// testInvalidAppends: appends the contract forbids are refused with an
// error other than ErrConflict and store nothing; valid appends of the
// same call are not affected.
func testInvalidAppends(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	mixed := Msgs("g:iv", 1, 1)
	mixed = append(mixed, Msg("g:other", 2))
	tests := []struct {
		name string
		msgs []record.Message
	}{
		{"empty", nil},
		{"gap", []record.Message{Msg("g:iv", 1), Msg("g:iv", 3)}},
		{"descending", []record.Message{Msg("g:iv", 2), Msg("g:iv", 1)}},
		{"repeated seq", []record.Message{Msg("g:iv", 1), Msg("g:iv", 1)}},
		{"seq zero", []record.Message{Msg("g:iv", 0)}},
		{"two chats", mixed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.AppendMessages(ctx, []record.ChatAppend{{Epoch: o.Epoch, Msgs: tc.msgs}, {Epoch: o.Epoch, Msgs: Msgs("g:ok-"+strings.ReplaceAll(tc.name, " ", "-"), 1, 2)}})
			if len(res) != 2 {
				t.Fatalf("AppendMessages: got %d results, want 2", len(res))
			}
			if !errors.Is(res[0].Err, record.ErrInvalid) || res[0].Stored != 0 {
				t.Fatalf("AppendMessages(%s): got %+v, want ErrInvalid", tc.name, res[0])
			}
			if res[1].Err != nil || res[1].Stored != 2 {
				t.Fatalf("AppendMessages(valid beside %s): got %+v, want stored", tc.name, res[1])
			}
			wantLastSeq(t, s, "g:iv", 0)
			wantLastSeq(t, s, "g:other", 0)
		})
	}
	t.Run("chat twice in one call", func(t *testing.T) {
		res := s.AppendMessages(ctx, []record.ChatAppend{{Epoch: o.Epoch, Msgs: Msgs("g:twice", 1, 1)}, {Epoch: o.Epoch, Msgs: Msgs("g:twice", 2, 2)}})
		if len(res) != 2 || !errors.Is(res[1].Err, record.ErrInvalid) || res[1].Stored != 0 {
			t.Fatalf("AppendMessages(chat twice): got %+v, want the second refused", res)
		}
		if _, err := s.Message(ctx, "g:twice", 2); !errors.Is(err, record.ErrNotFound) {
			t.Fatalf("Message(g:twice, 2): got %v, want ErrNotFound", err)
		}
	})
}

// testRetrySameContent: appending rows that are stored already with the
// same content succeeds, alone or followed by new rows; that is how the
// writer of an append with an unknown outcome finds out (record.AppendResult).
func testRetrySameContent(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "g:retry"
	mustAppend(t, s, o, Msgs(chat, 1, 3))
	if r := appendOne(t, s, o, Msgs(chat, 1, 3)); r.Err != nil || r.Stored != 3 {
		t.Fatalf("retry of stored rows: got %+v, want all 3 stored", r)
	}
	if r := appendOne(t, s, o, Msgs(chat, 2, 5)); r.Err != nil || r.Stored != 4 {
		t.Fatalf("retry of stored rows followed by new ones: got %+v, want all 4 stored", r)
	}
	wantLastSeq(t, s, chat, 5)
	got, err := s.Messages(ctx, chat, record.Page{Limit: 10})
	if err != nil || !slices.Equal(got, Msgs(chat, 1, 5)) {
		t.Fatalf("Messages: got %+v, %v, want seqs 1..5", got, err)
	}
	if m, err := s.LookupDedup(ctx, record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-4"}); err != nil || m != Msg(chat, 4) {
		t.Fatalf("LookupDedup(req-4): got %+v, %v, want %+v", m, err, Msg(chat, 4))
	}
}

func testDedup(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "dm:alice:bob"
	in := Msgs(chat, 1, 6)
	in[1].RequestID = "r-1"
	in[3].RequestID = "r-2"
	in[3].Sender, in[3].Device = "bob", "laptop"
	// Keys are scoped per device: alice's tablet numbers its requests
	// like her phone.
	in[5].RequestID, in[5].Device = "r-1", "tablet"
	mustAppend(t, s, o, in)

	tests := []struct {
		key  record.DedupKey
		want *record.Message
	}{
		{record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "r-1"}, &in[1]},
		{record.DedupKey{ChatID: chat, Sender: "alice", Device: "tablet", RequestID: "r-1"}, &in[5]},
		{record.DedupKey{ChatID: chat, Sender: "bob", Device: "laptop", RequestID: "r-2"}, &in[3]},
		{record.DedupKey{ChatID: chat, Sender: "alice", Device: "laptop", RequestID: "r-1"}, nil},
		{record.DedupKey{ChatID: chat, Sender: "alice", RequestID: "r-1"}, nil},
		{record.DedupKey{ChatID: chat, Sender: "alice", RequestID: "r-1", Unscoped: true}, nil},
		{record.DedupKey{ChatID: chat, Sender: "bob", Device: "phone-1", RequestID: "r-1"}, nil},
		{record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "r-2"}, nil},
		{record.DedupKey{ChatID: "g:other", Sender: "alice", Device: "phone-1", RequestID: "r-1"}, nil},
		{record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "r"}, nil},
		{record.DedupKey{ChatID: chat, Sender: "", RequestID: ""}, nil},
	}
	for _, tc := range tests {
		got, err := s.LookupDedup(ctx, tc.key)
		if tc.want == nil {
			wantErr(t, fmt.Sprintf("LookupDedup(%+v)", tc.key), err, record.ErrNotFound)
			continue
		}
		if err != nil {
			t.Fatalf("LookupDedup(%+v): %v", tc.key, err)
		}
		if got != *tc.want {
			t.Fatalf("LookupDedup(%+v): got %+v, want %+v", tc.key, got, *tc.want)
		}
	}
}

// testDedupKeys: a chat's request keys are listed, complete unless the
// limit cuts the list; a chat without keys has an empty, complete list.
func testDedupKeys(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "g:keys"
	mustAppend(t, s, o, Msgs(chat, 1, 6)) // request ids on even seqs
	mustAppend(t, s, o, Msgs("g:keys2", 1, 2))
	keys, complete, err := s.DedupKeys(ctx, chat, 100)
	if err != nil {
		t.Fatalf("DedupKeys: %v", err)
	}
	slices.SortFunc(keys, func(a, b record.DedupKey) int { return strings.Compare(a.RequestID, b.RequestID) })
	want := []record.DedupKey{{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-2"}, {ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-4"}, {ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-6"}}
	if !complete || !slices.Equal(keys, want) {
		t.Fatalf("DedupKeys: got %+v, complete=%v, want %+v, complete", keys, complete, want)
	}
	if keys, complete, err := s.DedupKeys(ctx, chat, 2); err != nil || complete || len(keys) > 2 {
		t.Fatalf("DedupKeys(limit 2): got %d keys, complete=%v, %v, want at most 2, incomplete", len(keys), complete, err)
	}
	if keys, complete, err := s.DedupKeys(ctx, "g:nokeys", 100); err != nil || !complete || len(keys) != 0 {
		t.Fatalf("DedupKeys(unknown chat): got %+v, complete=%v, %v, want none, complete", keys, complete, err)
	}
}

func testManyChats(t *testing.T, s Store, o Options) {
	var batch []record.Message
	for i := range 20 {
		chat := fmt.Sprintf("g:many%d", i)
		batch = append(batch, Msgs(chat, 1, uint64(i%3+1))...)
	}
	mustAppend(t, s, o, batch)
	for i := range 20 {
		chat := fmt.Sprintf("g:many%d", i)
		wantLastSeq(t, s, chat, uint64(i%3+1))
		got, err := s.Messages(t.Context(), chat, record.Page{Limit: 10})
		if err != nil {
			t.Fatalf("Messages(%q): %v", chat, err)
		}
		if want := Msgs(chat, 1, uint64(i%3+1)); !slices.Equal(got, want) {
			t.Fatalf("Messages(%q): got %+v, want %+v", chat, got, want)
		}
	}
}

func testConcurrentAppends(t *testing.T, s Store, o Options) {
	const goroutines, perChat = 16, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			chat := fmt.Sprintf("g:conc%d", g)
			for seq := uint64(1); seq <= perChat; seq += 2 {
				// Alternate one-message and two-message batches, each with
				// a message of a chat of its own to exercise cross-chat batches.
				batch := Msgs(chat, seq, seq+1)
				batch = append(batch, Msg(fmt.Sprintf("g:side%d", g), seq/2+1))
				if err := Append(context.Background(), s, o.Epoch, batch); err != nil {
					errs <- fmt.Errorf("chat %s seq %d: %w", chat, seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendMessages: %v", err)
	}
	for g := range goroutines {
		chat := fmt.Sprintf("g:conc%d", g)
		wantLastSeq(t, s, chat, perChat)
		wantLastSeq(t, s, fmt.Sprintf("g:side%d", g), perChat/2)
		got, err := s.Messages(t.Context(), chat, record.Page{Limit: perChat})
		if err != nil {
			t.Fatalf("Messages(%q): %v", chat, err)
		}
		if want := Msgs(chat, 1, perChat); !slices.Equal(got, want) {
			t.Fatalf("Messages(%q): got seqs %v, want %v", chat, seqs(got), seqs(want))
		}
	}
}

// testRacingAppends races appenders for the same (chat, seq): exactly one
// wins each seq, the others get ErrConflict, and the stored row is the
// winner's.
func testRacingAppends(t *testing.T, s Store, o Options) {
	const racers, rounds = 8, 5
	const chat = "g:race"
	for seq := uint64(1); seq <= rounds; seq++ {
		var wg sync.WaitGroup
		results := make(chan error, racers)
		for r := range racers {
			wg.Go(func() {
				m := Msg(chat, seq)
				m.Body = fmt.Sprintf("racer %d", r)
				m.RequestID = fmt.Sprintf("race-%d-%d", seq, r)
				results <- Append(context.Background(), s, o.Epoch, []record.Message{m})
			})
		}
		wg.Wait()
		close(results)
		wins := 0
		for err := range results {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, record.ErrConflict):
				t.Fatalf("AppendMessages(seq %d): got %v, want nil or ErrConflict", seq, err)
			}
		}
		if wins != 1 {
			t.Fatalf("racing appends of seq %d: got %d winners, want 1", seq, wins)
		}
		stored, err := s.Message(t.Context(), chat, seq)
		if err != nil {
			t.Fatalf("Message(%d): %v", seq, err)
		}
		// The winner's dedup entry points at the stored row; the losers' do not exist.
		for r := range racers {
			key := record.DedupKey{ChatID: chat, Sender: stored.Sender, Device: stored.Device, RequestID: fmt.Sprintf("race-%d-%d", seq, r)}
			got, err := s.LookupDedup(t.Context(), key)
			if key.RequestID == stored.RequestID {
				if err != nil || got != stored {
					t.Fatalf("LookupDedup(winner): got %+v, %v, want %+v", got, err, stored)
				}
				continue
			}
			wantErr(t, "LookupDedup(loser)", err, record.ErrNotFound)
		}
	}
	wantLastSeq(t, s, chat, rounds)
}

func group(id, name string) record.Chat {
	return record.Chat{ID: id, Kind: record.KindGroup, Name: name, CreatedBy: "carol", CreatedAt: 1_700_000_000_123}
}

func wantMembers(t *testing.T, s Store, chatID string, want ...string) {
	t.Helper()
	got, err := s.Members(t.Context(), chatID)
	if err != nil {
		t.Fatalf("Members(%q): %v", chatID, err)
	}
	if want == nil {
		want = []string{}
	}
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Members(%q): got %q, want %q", chatID, got, want)
	}
}

func userChatIDs(t *testing.T, s Store, user string) []string {
	t.Helper()
	entries, err := s.UserChats(t.Context(), user)
	if err != nil {
		t.Fatalf("UserChats(%q): %v", user, err)
	}
	ids := []string{}
	for _, e := range entries {
		ids = append(ids, e.Chat.ID)
	}
	slices.Sort(ids)
	return ids
}

func testCreateChat(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	g := group("g:team", "Team \u2713")
	if err := s.CreateChat(ctx, g, []string{"carol", "alice", "bob"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	got, err := s.Chat(ctx, g.ID)
	if err != nil {
		t.Fatalf("Chat: %v", err)
	}
	if got != g {
		t.Fatalf("Chat: got %+v, want %+v", got, g)
	}
	wantMembers(t, s, g.ID, "alice", "bob", "carol")

	dup := group("g:team", "Other")
	err = s.CreateChat(ctx, dup, []string{"mallory"})
	wantErr(t, "CreateChat of existing chat", err, record.ErrConflict)
	if got, _ := s.Chat(ctx, g.ID); got != g {
		t.Fatalf("Chat after refused CreateChat: got %+v, want %+v", got, g)
	}
	wantMembers(t, s, g.ID, "alice", "bob", "carol")
	if ids := userChatIDs(t, s, "mallory"); len(ids) != 0 {
		t.Fatalf("UserChats(mallory) after refused CreateChat: got %q, want none", ids)
	}

	dm := record.Chat{ID: record.DirectChatID("bob", "alice"), Kind: record.KindDirect, CreatedBy: "bob", CreatedAt: 42}
	if err := s.CreateChat(ctx, dm, []string{"bob", "alice"}); err != nil {
		t.Fatalf("CreateChat(direct): %v", err)
	}
	wantMembers(t, s, dm.ID, "alice", "bob")
	if got, want := userChatIDs(t, s, "alice"), []string{dm.ID, g.ID}; !slices.Equal(got, want) {
		t.Fatalf("UserChats(alice): got %q, want %q", got, want)
	}
	// Creating a direct chat again (another node, a retry) either succeeds
	// or conflicts; its id, kind and members stay (created_by and
	// created_at may take the second call's values).
	again := dm
	again.CreatedBy, again.CreatedAt = "alice", 43
	if err := s.CreateChat(ctx, again, []string{"alice", "bob"}); err != nil && !errors.Is(err, record.ErrConflict) {
		t.Fatalf("CreateChat(direct) again: %v, want nil or ErrConflict", err)
	}
	if got, err := s.Chat(ctx, dm.ID); err != nil || got.ID != dm.ID || got.Kind != record.KindDirect {
		t.Fatalf("Chat(direct) after a second create: %+v, %v", got, err)
	}
	wantMembers(t, s, dm.ID, "alice", "bob")
	if got, want := userChatIDs(t, s, "bob"), []string{dm.ID, g.ID}; !slices.Equal(got, want) {
		t.Fatalf("UserChats(bob): got %q, want %q", got, want)
	}

	_, err = s.Chat(ctx, "g:nochat")
	wantErr(t, "Chat of unknown chat", err, record.ErrNotFound)
	_, err = s.Members(ctx, "g:nochat")
	wantErr(t, "Members of unknown chat", err, record.ErrNotFound)
	// A prefix of an existing id is a different chat.
	_, err = s.Chat(ctx, "g:tea")
	wantErr(t, "Chat of id prefix", err, record.ErrNotFound)
}

func testMembership(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	g := group("g:club", "Club")
	if err := s.CreateChat(ctx, g, []string{"carol"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	// A neighbour chat whose id extends this one must not leak into Members.
	if err := s.CreateChat(ctx, group("g:club2", "Club 2"), []string{"zed", "alice"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	for range 2 {
		if err := s.AddMember(ctx, g.ID, member("dave")); err != nil {
			t.Fatalf("AddMember: %v", err)
		}
	}
	if err := s.AddMember(ctx, g.ID, member("alice")); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	wantMembers(t, s, g.ID, "alice", "carol", "dave")
	if got, want := userChatIDs(t, s, "dave"), []string{g.ID}; !slices.Equal(got, want) {
		t.Fatalf("UserChats(dave): got %q, want %q", got, want)
	}

	for range 2 {
		if err := s.RemoveMember(ctx, g.ID, "dave"); err != nil {
			t.Fatalf("RemoveMember: %v", err)
		}
	}
	if err := s.RemoveMember(ctx, g.ID, "nobody"); err != nil {
		t.Fatalf("RemoveMember of non-member: %v", err)
	}
	wantMembers(t, s, g.ID, "alice", "carol")
	if got := userChatIDs(t, s, "dave"); len(got) != 0 {
		t.Fatalf("UserChats(dave) after removal: got %q, want none", got)
	}
	if got, want := userChatIDs(t, s, "alice"), []string{"g:club", "g:club2"}; !slices.Equal(got, want) {
		t.Fatalf("UserChats(alice): got %q, want %q", got, want)
	}
	// Removing everyone leaves an existing chat with no members.
	for _, u := range []string{"alice", "carol"} {
		if err := s.RemoveMember(ctx, g.ID, u); err != nil {
			t.Fatalf("RemoveMember: %v", err)
		}
	}
	wantMembers(t, s, g.ID)

	wantErr(t, "AddMember to unknown chat", s.AddMember(ctx, "g:nochat", member("dave")), record.ErrNotFound)
	wantErr(t, "RemoveMember from unknown chat", s.RemoveMember(ctx, "g:nochat", "dave"), record.ErrNotFound)
	if got := userChatIDs(t, s, "dave"); len(got) != 0 {
		t.Fatalf("UserChats(dave) after AddMember to unknown chat: got %q, want none", got)
	}
}

func testUserChats(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	a, b := group("g:ua", "A"), group("g:ub", "B")
	for _, c := range []record.Chat{a, b} {
		if err := s.CreateChat(ctx, c, []string{"alice", "bob"}); err != nil {
			t.Fatalf("CreateChat: %v", err)
		}
	}
	if err := s.CreateChat(ctx, group("g:uc", "C"), []string{"bob"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	mustAppend(t, s, o, Msgs(a.ID, 1, 3))
	if err := setRead(ctx, s, "alice", a.ID, 2); err != nil {
		t.Fatalf("SaveMarks(read): %v", err)
	}
	if err := setRead(ctx, s, "bob", b.ID, 0); err != nil {
		t.Fatalf("SaveMarks(read): %v", err)
	}

	entries, err := s.UserChats(ctx, "alice")
	if err != nil {
		t.Fatalf("UserChats: %v", err)
	}
	slices.SortFunc(entries, func(x, y record.ChatEntry) int {
		if x.Chat.ID < y.Chat.ID {
			return -1
		}
		return 1
	})
	want := []record.ChatEntry{
		{Chat: a, LastSeq: 3, ReadSeq: 2},
		{Chat: b, LastSeq: 0, ReadSeq: 0},
	}
	if !slices.Equal(entries, want) {
		t.Fatalf("UserChats(alice): got %+v, want %+v", entries, want)
	}
	if entries[0].Unread() != 1 {
		t.Fatalf("Unread: got %d, want 1", entries[0].Unread())
	}

	none, err := s.UserChats(ctx, "nobody")
	if err != nil {
		t.Fatalf("UserChats(nobody): %v", err)
	}
	if len(none) != 0 {
		t.Fatalf("UserChats(nobody): got %+v, want none", none)
	}
	// A user id that is a prefix of another sees only its own chats.
	if err := s.AddMember(ctx, a.ID, member("ali")); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if got, want := userChatIDs(t, s, "ali"), []string{a.ID}; !slices.Equal(got, want) {
		t.Fatalf("UserChats(ali): got %q, want %q", got, want)
	}
}

func testMonotonicMarkers(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "g:mono"
	if err := s.CreateChat(ctx, group(chat, "Mono"), []string{"alice"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	mustAppend(t, s, o, Msgs(chat, 1, 9))

	readSeq := func() uint64 {
		t.Helper()
		entries, err := s.UserChats(ctx, "alice")
		if err != nil || len(entries) != 1 {
			t.Fatalf("UserChats(alice): got %+v, %v, want one entry", entries, err)
		}
		return entries[0].ReadSeq
	}
	cursor := func(device string) uint64 {
		t.Helper()
		got, err := s.DeviceCursor(ctx, "alice", device, chat)
		if err != nil {
			t.Fatalf("DeviceCursor: %v", err)
		}
		return got
	}
	if got := cursor("phone"); got != 0 {
		t.Fatalf("DeviceCursor before any set: got %d, want 0", got)
	}

	steps := []struct{ set, want uint64 }{{5, 5}, {3, 5}, {5, 5}, {7, 7}, {0, 7}, {9, 9}}
	for _, st := range steps {
		if err := setRead(ctx, s, "alice", chat, st.set); err != nil {
			t.Fatalf("SaveMarks(read %d): %v", st.set, err)
		}
		if got := readSeq(); got != st.want {
			t.Fatalf("ReadSeq after a read mark of %d: got %d, want %d", st.set, got, st.want)
		}
		if err := setCursor(ctx, s, "alice", "phone", chat, st.set); err != nil {
			t.Fatalf("SaveMarks(cursor %d): %v", st.set, err)
		}
		if got := cursor("phone"); got != st.want {
			t.Fatalf("DeviceCursor after a cursor mark of %d: got %d, want %d", st.set, got, st.want)
		}
	}
	// Cursors are per device, per user and per chat.
	if err := setCursor(ctx, s, "alice", "laptop", chat, 2); err != nil {
		t.Fatalf("SaveMarks(cursor): %v", err)
	}
	if got := cursor("laptop"); got != 2 {
		t.Fatalf("DeviceCursor(laptop): got %d, want 2", got)
	}
	if got := cursor("phon"); got != 0 {
		t.Fatalf("DeviceCursor(phon): got %d, want 0", got)
	}
	if got, err := s.DeviceCursor(ctx, "bob", "phone", chat); err != nil || got != 0 {
		t.Fatalf("DeviceCursor(bob): got %d, %v, want 0", got, err)
	}
	if got, err := s.DeviceCursor(ctx, "alice", "phone", "g:other"); err != nil || got != 0 {
		t.Fatalf("DeviceCursor(other chat): got %d, %v, want 0", got, err)
	}
	// One call raises several marks; the highest of one key wins, in any
	// order.
	if err := s.SaveMarks(ctx, []record.Mark{
		{Kind: record.MarkCursor, User: "alice", Device: "tablet", ChatID: chat, Seq: 6},
		{Kind: record.MarkCursor, User: "alice", Device: "tablet", ChatID: chat, Seq: 4},
		{Kind: record.MarkRead, User: "bob", ChatID: chat, Seq: 3},
	}); err != nil {
		t.Fatalf("SaveMarks: %v", err)
	}
	if got := cursor("tablet"); got != 6 {
		t.Fatalf("DeviceCursor(tablet) after one call with 6 and 4: got %d, want 6", got)
	}
	if err := s.SaveMarks(ctx, []record.Mark{{Kind: record.MarkCursor, User: "alice", Device: "tablet", ChatID: chat, Seq: 5}}); err != nil {
		t.Fatalf("SaveMarks: %v", err)
	}
	if got := cursor("tablet"); got != 6 {
		t.Fatalf("DeviceCursor(tablet) after a lower raise: got %d, want 6", got)
	}
	if err := s.SaveMarks(ctx, []record.Mark{{Kind: 9, User: "alice", ChatID: chat, Seq: 5}}); err == nil {
		t.Fatalf("SaveMarks of an unknown kind: got nil, want an error")
	}
	// ChatCursors lists every device's cursor of the chat, and only those.
	if err := setCursor(ctx, s, "alice", "phone", "g:other", 1); err != nil {
		t.Fatalf("SaveMarks(cursor): %v", err)
	}
	all, err := s.ChatCursors(ctx, chat)
	if err != nil {
		t.Fatalf("ChatCursors: %v", err)
	}
	slices.SortFunc(all, func(a, b record.DeviceCursor) int { return strings.Compare(a.Device, b.Device) })
	want := []record.DeviceCursor{{User: "alice", Device: "laptop", Seq: 2}, {User: "alice", Device: "phone", Seq: 9}, {User: "alice", Device: "tablet", Seq: 6}}
	if !slices.Equal(all, want) {
		t.Fatalf("ChatCursors: got %+v, want %+v", all, want)
	}
	if none, err := s.ChatCursors(ctx, "g:nobody"); err != nil || len(none) != 0 {
		t.Fatalf("ChatCursors(unknown chat): got %+v, %v, want empty", none, err)
	}
	// One call with many keys, interleaved (a backend may cut it into
	// several writes): every one lands.
	var many []record.Mark
	for i := range 37 {
		c := fmt.Sprintf("g:many%02d", i%13)
		many = append(many,
			record.Mark{Kind: record.MarkCursor, User: fmt.Sprintf("u%02d", i), Device: "d", ChatID: c, Seq: uint64(i + 1)},
			record.Mark{Kind: record.MarkRead, User: fmt.Sprintf("u%02d", i%7), ChatID: c, Seq: uint64(i + 1)})
	}
	if err := s.SaveMarks(ctx, many); err != nil {
		t.Fatalf("SaveMarks(%d marks): %v", len(many), err)
	}
	for _, m := range many {
		if m.Kind != record.MarkCursor {
			continue
		}
		if got, err := s.DeviceCursor(ctx, m.User, m.Device, m.ChatID); err != nil || got != m.Seq {
			t.Fatalf("DeviceCursor(%s, %s) after one call of %d marks: got %d, %v, want %d", m.User, m.ChatID, len(many), got, err, m.Seq)
		}
	}
	// A large chat's cursors (a busy 100-member group over an interval)
	// beside small ones: a backend that batches must not exceed its
	// database's batch size limit.
	var big []record.Mark
	for i := range 2000 {
		big = append(big, record.Mark{Kind: record.MarkCursor, User: fmt.Sprintf("member-with-a-long-user-id-%04d", i%100),
			Device: fmt.Sprintf("device-with-a-long-id-%02d", i/100), ChatID: "g:big", Seq: uint64(i + 1)})
	}
	for i := range 10 {
		big = append(big, record.Mark{Kind: record.MarkRead, User: fmt.Sprintf("r%02d", i), ChatID: "g:big", Seq: 1})
	}
	if err := s.SaveMarks(ctx, big); err != nil {
		t.Fatalf("SaveMarks(%d marks, 2000 in one chat): %v", len(big), err)
	}
	if got, err := s.DeviceCursor(ctx, "member-with-a-long-user-id-0099", "device-with-a-long-id-19", "g:big"); err != nil || got != 2000 {
		t.Fatalf("DeviceCursor in the large chat: got %d, %v, want 2000", got, err)
	}
}

func testClosed(t *testing.T, s Store, o Options) {
	ctx := t.Context()
	const chat = "g:closed"
	if err := s.CreateChat(ctx, group(chat, "C"), []string{"alice"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	mustAppend(t, s, o, Msgs(chat, 1, 2))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
	calls := []struct {
		name string
		fn   func() error
	}{
		{"AppendMessages", func() error { return Append(ctx, s, o.Epoch, Msgs(chat, 3, 3)) }},
		{"LastSeq", func() error { _, err := s.LastSeq(ctx, chat); return err }},
		{"DedupKeys", func() error { _, _, err := s.DedupKeys(ctx, chat, 10); return err }},
		{"LookupDedup", func() error {
			_, err := s.LookupDedup(ctx, record.DedupKey{ChatID: chat, Sender: "alice", Device: "phone-1", RequestID: "req-2"})
			return err
		}},
		{"Message", func() error { _, err := s.Message(ctx, chat, 1); return err }},
		{"Messages", func() error { _, err := s.Messages(ctx, chat, record.Page{Limit: 5}); return err }},
		{"CreateChat", func() error { return s.CreateChat(ctx, group("g:new", "N"), []string{"alice"}) }},
		{"Chat", func() error { _, err := s.Chat(ctx, chat); return err }},
		{"Members", func() error { _, err := s.Members(ctx, chat); return err }},
		{"AddMember", func() error { return s.AddMember(ctx, chat, member("bob")) }},
		{"GroupMembers", func() error { _, err := s.GroupMembers(ctx, chat); return err }},
		{"SetRole", func() error { return s.SetRole(ctx, chat, "alice", record.RoleAdmin) }},
		{"RemoveMember", func() error { return s.RemoveMember(ctx, chat, "alice") }},
		{"UserChats", func() error { _, err := s.UserChats(ctx, "alice"); return err }},
		{"SaveMarks", func() error { return setRead(ctx, s, "alice", chat, 1) }},
		{"DeviceCursor", func() error { _, err := s.DeviceCursor(ctx, "alice", "d", chat); return err }},
		{"PutPushSubscription", func() error { return s.PutPushSubscription(ctx, PushSub("alice", "d")) }},
		{"PushSubscriptions", func() error { _, err := s.PushSubscriptions(ctx, "alice"); return err }},
		{"DeletePushSubscription", func() error { return s.DeletePushSubscription(ctx, "alice", "d") }},
		{"MarkPushed", func() error { _, err := s.MarkPushed(ctx, "k", time.Minute); return err }},
	}
	for _, c := range calls {
		wantErr(t, c.name+" after Close", c.fn(), record.ErrClosed)
	}
}

// CheckUnscopedKey asserts how a store answers for m, stored under a bare
// request-id key written before keys were scoped per device (a backend
// test plants it, since no Store method writes one): LookupDedup finds it
// from m's device and from no other, and DedupKeys lists it as unscoped.
func CheckUnscopedKey(t *testing.T, s Store, m record.Message) {
	t.Helper()
	ctx := t.Context()
	got, err := s.LookupDedup(ctx, record.MessageDedupKey(&m))
	if err != nil || got != m {
		t.Fatalf("LookupDedup of an unscoped key from its device: got %+v, %v, want %+v", got, err, m)
	}
	other := record.MessageDedupKey(&m)
	other.Device += "-other"
	if got, err := s.LookupDedup(ctx, other); !errors.Is(err, record.ErrNotFound) {
		t.Fatalf("LookupDedup of an unscoped key from another device: got %+v, %v, want ErrNotFound", got, err)
	}
	keys, complete, err := s.DedupKeys(ctx, m.ChatID, 100)
	want := []record.DedupKey{{ChatID: m.ChatID, Sender: m.Sender, RequestID: m.RequestID, Unscoped: true}}
	if err != nil || !complete || !slices.Equal(keys, want) {
		t.Fatalf("DedupKeys: got %+v, complete=%v, %v, want %+v, complete", keys, complete, err, want)
	}
}

// member is a member row with the member role, joined 0.
func member(user string) record.Member {
	return record.Member{User: user, Role: record.RoleMember}
}

func wantGroupMembers(t *testing.T, s Store, chat string, want ...record.Member) {
	t.Helper()
	got, err := s.GroupMembers(t.Context(), chat)
	if err != nil {
		t.Fatalf("GroupMembers(%q): %v", chat, err)
	}
	if want == nil {
		want = []record.Member{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("GroupMembers(%q): got %+v, want %+v", chat, got, want)
	}
}

func testRoles(t *testing.T, s Store, _ Options) {
	ctx := t.Context()
	g := group("g:roles", "Roles")
	g.CreatedBy = "alice"
	if err := s.CreateChat(ctx, g, []string{"alice", "bob"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	// A neighbour chat whose id extends this one must not leak in.
	if err := s.CreateChat(ctx, group("g:roles2", "R2"), []string{"alice", "zed"}); err != nil {
		t.Fatalf("CreateChat: %v", err)
	}
	wantGroupMembers(t, s, g.ID,
		record.Member{User: "alice", Role: record.RoleCreator},
		record.Member{User: "bob", Role: record.RoleMember})
	if err := s.AddMember(ctx, g.ID, record.Member{User: "carol", Role: record.RoleMember, Joined: 7}); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if err := s.SetRole(ctx, g.ID, "carol", record.RoleAdmin); err != nil {
		t.Fatalf("SetRole: %v", err)
	}
	wantGroupMembers(t, s, g.ID,
		record.Member{User: "alice", Role: record.RoleCreator},
		record.Member{User: "bob", Role: record.RoleMember},
		record.Member{User: "carol", Role: record.RoleAdmin, Joined: 7})
	wantErr(t, "SetRole of a non-member", s.SetRole(ctx, g.ID, "dave", record.RoleAdmin), record.ErrNotFound)
	wantErr(t, "SetRole in an unknown chat", s.SetRole(ctx, "g:nochat", "alice", record.RoleAdmin), record.ErrNotFound)
	wantMembers(t, s, g.ID, "alice", "bob", "carol") // SetRole of a non-member added no one
	_, err := s.GroupMembers(ctx, "g:nochat")
	wantErr(t, "GroupMembers of unknown chat", err, record.ErrNotFound)
	// Removed and added again: a new row, the old role gone.
	if err := s.RemoveMember(ctx, g.ID, "carol"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if err := s.AddMember(ctx, g.ID, record.Member{User: "carol", Role: record.RoleMember, Joined: 9}); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	wantGroupMembers(t, s, g.ID,
		record.Member{User: "alice", Role: record.RoleCreator},
		record.Member{User: "bob", Role: record.RoleMember},
		record.Member{User: "carol", Role: record.RoleMember, Joined: 9})
	// A direct chat's members are members.
	dm := record.Chat{ID: record.DirectChatID("alice", "bob"), Kind: record.KindDirect, CreatedBy: "alice", CreatedAt: 1}
	if err := s.CreateChat(ctx, dm, []string{"alice", "bob"}); err != nil {
		t.Fatalf("CreateChat(direct): %v", err)
	}
	wantGroupMembers(t, s, dm.ID, member("alice"), member("bob"))
}
