package record

import (
	"errors"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"alice", true},
		{"Alice-01_x.y@example.com", true},
		{"0", true},
		{strings.Repeat("a", MaxIDLen), true},
		{"", false},
		{strings.Repeat("a", MaxIDLen+1), false},
		{"a b", false},
		{"a:b", false},
		{"a/b", false},
		{"a\x00", false},
		{"a\n", false},
		{"é", false},
		{"a+b", false},
		{"\xff", false},
	}
	for _, tc := range tests {
		if got := ValidID(tc.id); got != tc.want {
			t.Errorf("ValidID(%q): got %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestDirectChatID(t *testing.T) {
	tests := []struct {
		a, b, want string
	}{
		{"alice", "bob", "dm:alice:bob"},
		{"bob", "alice", "dm:alice:bob"},
		{"B", "a", "dm:B:a"}, // byte order: upper case sorts first
		{"a", "a.b", "dm:a:a.b"},
		{"a.b", "a", "dm:a:a.b"},
	}
	for _, tc := range tests {
		got := DirectChatID(tc.a, tc.b)
		if got != tc.want {
			t.Errorf("DirectChatID(%q, %q): got %q, want %q", tc.a, tc.b, got, tc.want)
		}
		if rev := DirectChatID(tc.b, tc.a); rev != got {
			t.Errorf("DirectChatID(%q, %q): got %q, want %q (order-independent)", tc.b, tc.a, rev, got)
		}
		a, b, ok := DirectMembers(got)
		if !ok || a != min(tc.a, tc.b) || b != max(tc.a, tc.b) {
			t.Errorf("DirectMembers(%q): got %q, %q, %v; want %q, %q, true", got, a, b, ok, min(tc.a, tc.b), max(tc.a, tc.b))
		}
	}
}

func TestDirectMembers(t *testing.T) {
	long := strings.Repeat("z", MaxIDLen)
	tests := []struct {
		id     string
		a, b   string
		wantOK bool
	}{
		{"dm:alice:bob", "alice", "bob", true},
		{"dm:a:" + long, "a", long, true},
		{"dm:bob:alice", "", "", false}, // unsorted
		{"dm:alice:alice", "", "", false},
		{"dm:alice", "", "", false},
		{"dm:alice:", "", "", false},
		{"dm::bob", "", "", false},
		{"dm:a:b:c", "", "", false}, // ':' is not an id character
		{"dm:a b:c", "", "", false},
		{"dm:a:" + long + "z", "", "", false},
		{"alice:bob", "", "", false},
		{"DM:alice:bob", "", "", false},
		{"g:alice:bob", "", "", false},
		{"", "", "", false},
		{"dm:", "", "", false},
	}
	for _, tc := range tests {
		a, b, ok := DirectMembers(tc.id)
		if a != tc.a || b != tc.b || ok != tc.wantOK {
			t.Errorf("DirectMembers(%q): got %q, %q, %v; want %q, %q, %v", tc.id, a, b, ok, tc.a, tc.b, tc.wantOK)
		}
	}
}

func TestGroupChatID(t *testing.T) {
	if got, want := GroupChatID("0af3"), "g:0af3"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if kind, ok := ParseChatID(GroupChatID("0af3")); kind != KindGroup || !ok {
		t.Errorf("got %v, %v; want group, true", kind, ok)
	}
}

func TestParseChatID(t *testing.T) {
	tests := []struct {
		id     string
		want   ChatKind
		wantOK bool
	}{
		{"dm:alice:bob", KindDirect, true},
		{"g:abc123", KindGroup, true},
		{"g:a.b-c_d@e", KindGroup, true},
		{"g:" + strings.Repeat("f", MaxIDLen), KindGroup, true},
		{"g:" + strings.Repeat("f", MaxIDLen+1), 0, false},
		{"g:", 0, false},
		{"g:a:b", 0, false},
		{"g:a b", 0, false},
		{"dm:bob:alice", 0, false},
		{"dm:alice", 0, false},
		{"x:abc", 0, false},
		{"abc", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseChatID(tc.id)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ParseChatID(%q): got %v, %v; want %v, %v", tc.id, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestChatEntryUnread(t *testing.T) {
	tests := []struct {
		last, read, want uint64
	}{
		{0, 0, 0},
		{5, 0, 5},
		{5, 3, 2},
		{5, 5, 0},
		{3, 5, 0}, // read marker ahead of the chat (racy update): never underflows
		{^uint64(0), 0, ^uint64(0)},
	}
	for _, tc := range tests {
		e := ChatEntry{LastSeq: tc.last, ReadSeq: tc.read}
		if got := e.Unread(); got != tc.want {
			t.Errorf("Unread(last %d, read %d): got %d, want %d", tc.last, tc.read, got, tc.want)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{KindDirect.String(), "direct"},
		{KindGroup.String(), "group"},
		{ChatKind(0).String(), "kind(0)"},
		{ChatKind(9).String(), "kind(9)"},
		{MsgText.String(), "text"},
		{MsgSystem.String(), "system"},
		{MsgKind(0).String(), "msgkind(0)"},
		{MsgKind(255).String(), "msgkind(255)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSentinelErrors(t *testing.T) {
	errs := []error{ErrNotFound, ErrConflict, ErrClosed}
	for i, a := range errs {
		for j, b := range errs {
			if got := errors.Is(a, b); got != (i == j) {
				t.Errorf("errors.Is(%v, %v): got %v, want %v", a, b, got, i == j)
			}
		}
		if !strings.HasPrefix(a.Error(), "record: ") {
			t.Errorf("got %q, want the package prefix", a)
		}
	}
}
