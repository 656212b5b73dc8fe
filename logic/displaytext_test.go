package logic

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/parley-chat/parley/internal/proto"
)

func TestCheckDisplayText(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // "" for accepted, else the error message
	}{
		{"empty", "", ""},
		{"ascii", "trip to Lyon", ""},
		{"accents_emoji", "Café ☕ 旅行 🚀", ""},
		{"arabic_hebrew_text", "رحلة שלום", ""}, // right-to-left letters are fine; only the controls are not
		{"zwj_emoji", "👩\u200d💻", ""},
		{"replacement_char", "a\ufffdb", ""},
		{"nul", "ab\x00", "name: control or bidi-override character U+0000 at byte 2"},
		{"newline", "a\nb", "name: control or bidi-override character U+000A at byte 1"},
		{"tab", "\tx", "name: control or bidi-override character U+0009 at byte 0"},
		{"esc", "x\x1b[31m", "name: control or bidi-override character U+001B at byte 1"},
		{"del", "x\x7f", "name: control or bidi-override character U+007F at byte 1"},
		{"c1_csi", "ab\u009b", "name: control or bidi-override character U+009B at byte 2"},
		{"c1_nel", "\u0085", "name: control or bidi-override character U+0085 at byte 0"},
		{"rlo", "abc\u202etxt.exe", "name: control or bidi-override character U+202E at byte 3"},
		{"lre", "\u202ax", "name: control or bidi-override character U+202A at byte 0"},
		{"pdf", "x\u202c", "name: control or bidi-override character U+202C at byte 1"},
		{"lri", "é\u2066", "name: control or bidi-override character U+2066 at byte 2"},
		{"pdi", "\u2069", "name: control or bidi-override character U+2069 at byte 0"},
		{"lrm", "a\u200e", "name: control or bidi-override character U+200E at byte 1"},
		{"rlm", "a\u200f", "name: control or bidi-override character U+200F at byte 1"},
		{"alm", "a\u061c", "name: control or bidi-override character U+061C at byte 1"},
		{"invalid_utf8", "ab\xff", "name: invalid UTF-8 at byte 2"},
		{"truncated_utf8", "ab\xe2\x80", "name: invalid UTF-8 at byte 2"},
		{"first_of_several", "\u202e\x00", "name: control or bidi-override character U+202E at byte 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkDisplayText("name", tc.in)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			pe, ok := err.(*proto.Error)
			if !ok || pe.Code != proto.CodeBadRequest || pe.Message != tc.want {
				t.Fatalf("got %#v, want bad_request %q", err, tc.want)
			}
		})
	}
}

// refusedRef is the reference for displayUnsafe: Unicode's Cc category and
// Bidi_Control property, and invalid UTF-8.
func refusedRef(s string) (int, bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return i, false
		}
		i += n
	}
	return 0, true
}

// FuzzDisplayUnsafe checks displayUnsafe against the Unicode tables.
func FuzzDisplayUnsafe(f *testing.F) {
	for _, s := range []string{"", "trip", "abc\u202etxt", "\x00", "\u0085", "\u2066x\u2069", "a\u200f", "\u061c", "\xff", "\xe2\x80", "Café 🚀", strings.Repeat("é", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, _, ok := displayUnsafe(s)
		wantAt, wantOK := refusedRef(s)
		if ok != wantOK || at != wantAt {
			t.Fatalf("displayUnsafe(%q): got at=%d ok=%v, want at=%d ok=%v", s, at, ok, wantAt, wantOK)
		}
	})
}

// TestGroupNameRefusesBidiOverride: a group_create whose name carries a
// control or bidi-override character is refused with bad_request naming
// the field, and no group is created.
func TestGroupNameRefusesBidiOverride(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	tests := []struct {
		name, frame, want string
	}{
		{"rlo_escaped", `{"type":"group_create","id":"g1","name":"abc\u202etxt.exe","members":["bob"]}`, "name: control or bidi-override character U+202E at byte 3"},
		{"rlo_raw", "{\"type\":\"group_create\",\"id\":\"g2\",\"name\":\"ab\u202etxt\",\"members\":[\"bob\"]}", "name: control or bidi-override character U+202E at byte 2"},
		{"isolate", `{"type":"group_create","id":"g3","name":"\u2067x","members":["bob"]}`, "name: control or bidi-override character U+2067 at byte 0"},
		{"newline", `{"type":"group_create","id":"g4","name":"a\nb","members":["bob"]}`, "name: control or bidi-override character U+000A at byte 1"},
		{"c1", `{"type":"group_create","id":"g5","name":"a\u009bb","members":["bob"]}`, "name: control or bidi-override character U+009B at byte 1"},
	}
	for _, tc := range tests { // one session for all: no t.Run, n.t is t
		n.send(1, tc.frame)
		m := n.nextType(1, "error")
		if m["code"] != proto.CodeBadRequest || m["message"] != tc.want {
			t.Fatalf("%s: got %v, want bad_request %q", tc.name, m, tc.want)
		}
	}
	// A clean name still works, and bob's first frame is its system
	// message (none of the refused groups reached him).
	n.send(1, `{"type":"group_create","id":"ok","name":"trip ☕","members":["bob"]}`)
	n.nextType(1, "msg")
	n.nextType(1, "ok")
	if m := n.nextType(2, "msg"); m["kind"] != "system" || !strings.Contains(m["body"].(string), "trip ☕") {
		t.Fatalf("bob: got %v, want the system message of the group \"trip ☕\"", m)
	}
}
