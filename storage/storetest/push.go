package storetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// PushSub returns a test push subscription of (user, device) with every
// field set.
func PushSub(user, device string) record.PushSubscription {
	return record.PushSubscription{
		User:      user,
		Device:    device,
		Endpoint:  "https://push.example.com/send/" + user + "-" + device,
		P256dh:    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
		Auth:      "BTBZMqHH6r4Tts7J_aSIgg",
		CreatedAt: 1_700_000_000_000,
	}
}

func wantSubs(t *testing.T, s Store, user string, want ...record.PushSubscription) {
	t.Helper()
	got, err := s.PushSubscriptions(t.Context(), user)
	if err != nil {
		t.Fatalf("PushSubscriptions(%q): %v", user, err)
	}
	if got == nil {
		t.Fatalf("PushSubscriptions(%q): got nil slice, want empty", user)
	}
	slices.SortFunc(got, func(a, b record.PushSubscription) int { return strings.Compare(a.Device, b.Device) })
	if want == nil {
		want = []record.PushSubscription{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("PushSubscriptions(%q): got %+v, want %+v", user, got, want)
	}
}

func testPushSubscriptions(t *testing.T, s Store, _ Options) {
	ctx := t.Context()
	wantSubs(t, s, "alice")
	a1, a2, b1 := PushSub("alice", "d1"), PushSub("alice", "d2"), PushSub("bob", "d1")
	a2.Endpoint = "http://127.0.0.1:9/x?y=\u00e9"
	a2.CreatedAt = -5
	// Neighbours whose ids share a prefix must not leak into the list.
	pre := PushSub("ali", "ce")
	for _, sub := range []record.PushSubscription{a1, a2, b1, pre} {
		if err := s.PutPushSubscription(ctx, sub); err != nil {
			t.Fatalf("PutPushSubscription(%s/%s): %v", sub.User, sub.Device, err)
		}
	}
	wantSubs(t, s, "alice", a1, a2)
	wantSubs(t, s, "bob", b1)
	wantSubs(t, s, "ali", pre)

	// One per (user, device): a new subscription replaces the old.
	a1.Endpoint, a1.P256dh, a1.Auth, a1.CreatedAt = "https://other.example/x", "BBBB", "AAAA", 9
	if err := s.PutPushSubscription(ctx, a1); err != nil {
		t.Fatalf("PutPushSubscription (replace): %v", err)
	}
	wantSubs(t, s, "alice", a1, a2)

	tests := []struct {
		user, device string
		want         []record.PushSubscription
	}{
		{"alice", "d1", []record.PushSubscription{a2}},
		{"alice", "d1", []record.PushSubscription{a2}}, // absent: not an error
		{"alice", "nope", []record.PushSubscription{a2}},
		{"alice", "d2", nil},
		{"nobody", "d1", nil},
	}
	for _, tc := range tests {
		if err := s.DeletePushSubscription(ctx, tc.user, tc.device); err != nil {
			t.Fatalf("DeletePushSubscription(%s, %s): %v", tc.user, tc.device, err)
		}
		wantSubs(t, s, "alice", tc.want...)
	}
	wantSubs(t, s, "bob", b1)
	wantSubs(t, s, "ali", pre)
}

func markPushed(t *testing.T, s Store, key string, ttl time.Duration) bool {
	t.Helper()
	first, err := s.MarkPushed(t.Context(), key, ttl)
	if err != nil {
		t.Fatalf("MarkPushed(%q, %v): %v", key, ttl, err)
	}
	return first
}

func testMarkPushed(t *testing.T, s Store, _ Options) {
	const long = time.Hour
	tests := []struct {
		key  string
		want bool
	}{
		{"g:a/1/alice/phone", true},
		{"g:a/1/alice/phone", false},
		{"g:a/1/alice/laptop", true},
		{"g:a/1/alice/phone", false},
		{"g:a/1/alice/phon", true},
		{"g:a/2/alice/phone", true},
		{"g:a/1/alice/phone/done", true},
		{"g:a/1/alice/phone/done", false},
	}
	for _, tc := range tests {
		if got := markPushed(t, s, tc.key, long); got != tc.want {
			t.Fatalf("MarkPushed(%q): got first=%v, want %v", tc.key, got, tc.want)
		}
	}
	if _, err := s.MarkPushed(t.Context(), "", long); err == nil {
		t.Fatalf("MarkPushed(empty key): got nil error, want one")
	}
	if _, err := s.MarkPushed(t.Context(), "g:a/3/x/y", 0); err == nil {
		t.Fatalf("MarkPushed(ttl 0): got nil error, want one")
	}

	// An expired record counts as absent. TTLs are whole seconds in CQL,
	// so wait well past one.
	const short = "g:a/9/alice/phone"
	if !markPushed(t, s, short, time.Second) {
		t.Fatalf("MarkPushed(%q) first call: got first=false", short)
	}
	time.Sleep(2500 * time.Millisecond)
	if !markPushed(t, s, short, long) {
		t.Fatalf("MarkPushed(%q) after expiry: got first=false, want true", short)
	}
	if markPushed(t, s, short, long) {
		t.Fatalf("MarkPushed(%q) after re-mark: got first=true, want false", short)
	}
}

// testMarkPushedConcurrent: of concurrent callers of one key exactly one is
// first.
func testMarkPushedConcurrent(t *testing.T, s Store, _ Options) {
	const keys, callers = 4, 8
	var firsts [keys]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, keys*callers)
	for k := range keys {
		for range callers {
			wg.Go(func() {
				first, err := s.MarkPushed(t.Context(), fmt.Sprintf("g:race/%d/u/d", k), time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if first {
					firsts[k].Add(1)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("MarkPushed: %v", err)
	}
	for k := range keys {
		if n := firsts[k].Load(); n != 1 {
			t.Fatalf("key %d: got %d first callers, want 1", k, n)
		}
	}
}

func testUserSettings(t *testing.T, s Store, _ Options) {
	ctx := t.Context()
	want := func(user string, w record.UserSettings) {
		t.Helper()
		got, err := s.UserSettings(ctx, user)
		if err != nil || got != w {
			t.Fatalf("UserSettings(%q): got %+v, %v, want %+v", user, got, err, w)
		}
	}
	want("alice", record.UserSettings{})
	hidden := record.UserSettings{HideLastSeen: true}
	if err := s.PutUserSettings(ctx, "alice", hidden); err != nil {
		t.Fatalf("PutUserSettings: %v", err)
	}
	want("alice", hidden)
	want("alic", record.UserSettings{}) // a prefix is another user
	want("alice2", record.UserSettings{})
	if err := s.PutUserSettings(ctx, "alice", record.UserSettings{}); err != nil {
		t.Fatalf("PutUserSettings(zero): %v", err)
	}
	want("alice", record.UserSettings{})
	if err := s.PutUserSettings(ctx, "", hidden); err == nil {
		t.Fatal("PutUserSettings with an empty user id: got nil, want an error")
	}
}
