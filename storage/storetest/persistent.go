package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// RunPersistent checks that a store keeps everything across Close and a
// reopen on the same directory. open must open (creating if needed) the store
// that lives in dir; RunPersistent closes every store it opens.
func RunPersistent(t *testing.T, open func(t *testing.T, dir string) Store, o Options) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()

	g := group("g:keep", "Keep")
	dm := record.Chat{ID: record.DirectChatID("alice", "bob"), Kind: record.KindDirect, CreatedBy: "alice", CreatedAt: 7}
	msgs := append(Msgs(g.ID, 1, 6), Msgs(dm.ID, 1, 3)...)

	s := open(t, dir)
	for _, c := range []struct {
		chat    record.Chat
		members []string
	}{{g, []string{"carol", "alice"}}, {dm, []string{"alice", "bob"}}} {
		if err := s.CreateChat(ctx, c.chat, c.members); err != nil {
			t.Fatalf("CreateChat(%q): %v", c.chat.ID, err)
		}
	}
	if err := s.AddMember(ctx, g.ID, record.Member{User: "dave", Role: record.RoleAdmin, Joined: 3}); err != nil {
		t.Fatalf("AddMember: %v", err)
	}
	if err := s.RemoveMember(ctx, g.ID, "carol"); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	mustAppend(t, s, o, msgs[:4])
	mustAppend(t, s, o, msgs[4:])
	if err := setRead(ctx, s, "alice", g.ID, 4); err != nil {
		t.Fatalf("SaveMarks(read): %v", err)
	}
	if err := setCursor(ctx, s, "alice", "phone", g.ID, 5); err != nil {
		t.Fatalf("SaveMarks(cursor): %v", err)
	}
	sub := PushSub("alice", "phone")
	if err := s.PutPushSubscription(ctx, sub); err != nil {
		t.Fatalf("PutPushSubscription: %v", err)
	}
	if err := s.PutUserSettings(ctx, "alice", record.UserSettings{HideLastSeen: true}); err != nil {
		t.Fatalf("PutUserSettings: %v", err)
	}
	if first, err := s.MarkPushed(ctx, "g:keep/1/alice/phone", time.Hour); err != nil || !first {
		t.Fatalf("MarkPushed: got first=%v, %v, want true", first, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	lastG := uint64(6)
	for round := range 2 {
		s = open(t, dir)
		for _, c := range []record.Chat{g, dm} {
			got, err := s.Chat(ctx, c.ID)
			if err != nil || got != c {
				t.Fatalf("round %d: Chat(%q): got %+v, %v, want %+v", round, c.ID, got, err, c)
			}
		}
		wantMembers(t, s, g.ID, "alice", "dave")
		wantGroupMembers(t, s, g.ID, member("alice"), record.Member{User: "dave", Role: record.RoleAdmin, Joined: 3})
		wantMembers(t, s, dm.ID, "alice", "bob")
		if got, want := userChatIDs(t, s, "carol"), []string{}; !slices.Equal(got, want) {
			t.Fatalf("round %d: UserChats(carol): got %q, want %q", round, got, want)
		}
		if got, want := userChatIDs(t, s, "alice"), []string{dm.ID, g.ID}; !slices.Equal(got, want) {
			t.Fatalf("round %d: UserChats(alice): got %q, want %q", round, got, want)
		}
		wantLastSeq(t, s, g.ID, lastG)
		wantLastSeq(t, s, dm.ID, 3)
		for _, want := range msgs {
			got, err := s.Message(ctx, want.ChatID, want.Seq)
			if err != nil || got != want {
				t.Fatalf("round %d: Message(%q, %d): got %+v, %v, want %+v", round, want.ChatID, want.Seq, got, err, want)
			}
		}
		key := record.DedupKey{ChatID: g.ID, Sender: "alice", Device: "phone-1", RequestID: "req-4"}
		if got, err := s.LookupDedup(ctx, key); err != nil || got != msgs[3] {
			t.Fatalf("round %d: LookupDedup: got %+v, %v, want %+v", round, got, err, msgs[3])
		}
		entries, err := s.UserChats(ctx, "alice")
		if err != nil {
			t.Fatalf("round %d: UserChats: %v", round, err)
		}
		for _, e := range entries {
			if e.Chat.ID == g.ID && (e.ReadSeq != 4 || e.LastSeq != lastG) {
				t.Fatalf("round %d: UserChats entry: got %+v, want ReadSeq 4, LastSeq %d", round, e, lastG)
			}
		}
		if got, err := s.DeviceCursor(ctx, "alice", "phone", g.ID); err != nil || got != 5 {
			t.Fatalf("round %d: DeviceCursor: got %d, %v, want 5", round, got, err)
		}
		wantSubs(t, s, "alice", sub)
		if got, err := s.UserSettings(ctx, "alice"); err != nil || !got.HideLastSeen {
			t.Fatalf("round %d: UserSettings after reopen: got %+v, %v, want hidden last-seen", round, got, err)
		}
		if first, err := s.MarkPushed(ctx, "g:keep/1/alice/phone", time.Hour); err != nil || first {
			t.Fatalf("round %d: MarkPushed after reopen: got first=%v, %v, want false", round, first, err)
		}
		// The reopened store still refuses taken seqs and takes new ones.
		if !o.NoConflicts {
			taken := Msg(g.ID, lastG)
			taken.Body = "another writer"
			wantErr(t, "AppendMessages of a taken seq after reopen", Append(ctx, s, o.Epoch, []record.Message{taken}), record.ErrConflict)
		}
		wantErr(t, "CreateChat of an existing chat after reopen", s.CreateChat(ctx, g, nil), record.ErrConflict)
		if round == 0 {
			mustAppend(t, s, o, Msgs(g.ID, 7, 7))
			msgs = append(msgs, Msg(g.ID, 7))
			lastG = 7
		}
		if err := s.Close(); err != nil {
			t.Fatalf("round %d: Close: %v", round, err)
		}
	}
}
