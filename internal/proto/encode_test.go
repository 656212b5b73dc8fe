package proto

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

// sameJSON fails the test unless got is valid JSON equal to want (compared
// as decoded values, numbers kept exact).
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	if !json.Valid(got) {
		t.Fatalf("got invalid JSON %s", got)
	}
	g, w := decodeAny(t, got), decodeAny(t, []byte(want))
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got %s, want %s", got, want)
	}
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("cannot decode %s: %v", b, err)
	}
	return v
}

var testMsg = record.Message{
	ChatID:    "dm:alice:bob",
	Seq:       18446744073709551615,
	Sender:    "alice",
	Device:    "phone",
	RequestID: "r1",
	TS:        1700000000123,
	Kind:      record.MsgText,
	Body:      "hi \"bob\" <3 & \\ \n\u2028",
}

const testMsgFields = `"chat":"dm:alice:bob","seq":18446744073709551615,"from":"alice","device":"phone",` +
	`"id":"r1","ts":1700000000123,"kind":"text","body":"hi \"bob\" <3 & \\ \n\u2028"`

func TestAppendEncoders(t *testing.T) {
	sys := record.Message{ChatID: "g:team", Seq: 1, TS: -5, Kind: record.MsgSystem, Body: `{"event":"join"}`}
	const sysFields = `"chat":"g:team","seq":1,"from":"","device":"","ts":-5,"kind":"system","body":"{\"event\":\"join\"}"`
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"sent", AppendSent(nil, "r1", "dm:a:b", 42, 1700000000000),
			`{"type":"sent","id":"r1","chat":"dm:a:b","seq":42,"ts":1700000000000}`},
		{"msg", AppendMsg(nil, &testMsg), `{"type":"msg",` + testMsgFields + `}`},
		{"msg_system", AppendMsg(nil, &sys), `{"type":"msg",` + sysFields + `}`},
		{"message_object", AppendMessageObject(nil, &testMsg), `{` + testMsgFields + `}`},
		{"receipt", AppendReceipt(nil, "g:x", "bob", "laptop", 9),
			`{"type":"receipt","chat":"g:x","user":"bob","device":"laptop","seq":9,"status":"delivered"}`},
		{"error", AppendError(nil, "r1", Errorf(CodeNotMember, "not a member of %q", "g:x")),
			`{"type":"error","id":"r1","code":"not_member","message":"not a member of \"g:x\"","retryable":false}`},
		{"error_no_id_retry_after", AppendError(nil, "", &Error{Code: CodeRateLimited, Message: "slow down", RetryAfterMS: 250}),
			`{"type":"error","code":"rate_limited","message":"slow down","retryable":true,"retry_after_ms":250}`},
		{"error_null_id", AppendError(nil, "", &Error{Code: CodeBadRequest, Message: "bad id", NullID: true}),
			`{"type":"error","id":null,"code":"bad_request","message":"bad id","retryable":false}`},
		{"error_null_id_wins", AppendError(nil, "r1", &Error{Code: CodeBadRequest, Message: "bad id", NullID: true}),
			`{"type":"error","id":null,"code":"bad_request","message":"bad id","retryable":false}`},
		{"hello", AppendHello(nil, "alice", "phone", 0xabc, 25000),
			`{"type":"hello","protocol":1,"user":"alice","device":"phone","session":"abc","heartbeat_ms":25000}`},
		{"ok", AppendOK(nil, "r1", "", 0), `{"type":"ok","id":"r1"}`},
		{"ok_chat_seq", AppendOK(nil, "r1", "g:x", 3), `{"type":"ok","id":"r1","chat":"g:x","seq":3}`},
		{"pong", AppendPong(nil, "", 5), `{"type":"pong","ts":5}`},
		{"pong_id", AppendPong(nil, "p1", 5), `{"type":"pong","id":"p1","ts":5}`},
		{"history_empty", AppendHistory(nil, "h", "g:x", nil, false),
			`{"type":"history","id":"h","chat":"g:x","messages":[],"more":false}`},
		{"history_two", AppendHistory(nil, "h", "g:x", []record.Message{testMsg, sys}, true),
			`{"type":"history","id":"h","chat":"g:x","messages":[{` + testMsgFields + `},{` + sysFields + `}],"more":true}`},
		// Appending must keep what dst already holds.
		{"append_to_prefix", AppendPong([]byte(`[`), "", 1), `[{"type":"pong","ts":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "append_to_prefix" {
				// Not valid JSON on its own; check the bytes.
				if got := string(tc.got); got != tc.want {
					t.Errorf("got %s, want %s", got, tc.want)
				}
				return
			}
			sameJSON(t, tc.got, tc.want)
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // exact output; "" to check only validity and round trip
	}{
		{"empty", "", `""`},
		{"plain", "hello world", `"hello world"`},
		{"quotes_backslash", `a"b\c`, `"a\"b\\c"`},
		{"newline_cr_tab", "a\nb\rc\td", `"a\nb\rc\td"`},
		{"control_chars", "\x00\x01\x08\x0c\x1f", `"\u0000\u0001\u0008\u000c\u001f"`},
		{"del_kept", "\x7f", "\"\x7f\""},
		{"html", "<a href='x'>&</a>", `"\u003ca href='x'\u003e\u0026\u003c/a\u003e"`},
		{"line_separators", "a\u2028b\u2029c", `"a\u2028b\u2029c"`},
		{"non_ascii_kept", "héllo €😀", `"héllo €😀"`},
		{"invalid_byte", "a\xffb", `"a\ufffdb"`},
		{"invalid_each_byte", "\xff\xfe", `"\ufffd\ufffd"`},
		{"truncated_rune", "€"[:2] + "x", `"\ufffd\ufffdx"`},
		{"truncated_rune_at_end", "x" + "😀"[:3], `"x\ufffd\ufffd\ufffd"`},
		{"surrogate_half", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"overlong_slash", "\xc0\xaf", `"\ufffd\ufffd"`},
		{"encoded_replacement_char", "\uFFFD", "\"\uFFFD\""},
		{"mixed", "\"\x00<\u2028\xff", `"\"\u0000\u003c\u2028\ufffd"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendString(nil, tc.in)
			checkAppendString(t, tc.in, got)
			if tc.want != "" && string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// checkAppendString checks the properties every AppendString output has.
func checkAppendString(t *testing.T, in string, got []byte) {
	t.Helper()
	if !json.Valid(got) {
		t.Fatalf("got invalid JSON %q for %q", got, in)
	}
	var back string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("cannot unmarshal %q: %v", got, err)
	}
	// Each invalid byte becomes one U+FFFD, as string([]rune(in)) does.
	if want := string([]rune(in)); back != want {
		t.Errorf("got %q back, want %q", back, want)
	}
	if bytes.ContainsAny(got[1:len(got)-1], "<>&\u2028\u2029") {
		t.Errorf("got unescaped HTML or line separator in %q", got)
	}
}

func TestAppendStringNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	s := "some text with \"quotes\" and <html> and \xff"
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendString(buf[:0], s) }); allocs != 0 {
		t.Errorf("got %v allocs, want 0", allocs)
	}
}

func TestMarshal(t *testing.T) {
	chats := ChatsAnswer{Chats: []ChatInfo{
		{Chat: "dm:a:b", Kind: "direct", Members: []string{"a", "b"}, LastSeq: 5, ReadSeq: 3, Unread: 2},
		{Chat: "g:x", Kind: "group", Name: "team <3"},
	}}
	tests := []struct {
		name string
		typ  string
		id   string
		v    any
		want string
	}{
		{"chats_with_id", TypeChats, "r1", chats,
			`{"type":"chats","id":"r1","chats":[` +
				`{"chat":"dm:a:b","kind":"direct","members":["a","b"],"last_seq":5,"read_seq":3,"unread":2},` +
				`{"chat":"g:x","kind":"group","name":"team <3","last_seq":0,"read_seq":0,"unread":0}]}`},
		{"members_no_id", TypeMembers, "", MembersAnswer{Chat: "g:x", Members: []string{"a"}},
			`{"type":"members","chat":"g:x","members":["a"]}`},
		{"presence_pointer", TypePresence, "p", &PresenceAnswer{Users: []PresenceInfo{{User: "a", Online: true}, {User: "b", LastSeen: 7}}},
			`{"type":"presence","id":"p","users":[{"user":"a","online":true},{"user":"b","online":false,"last_seen":7}]}`},
		{"empty_object", TypeOK, "r1", struct{}{}, `{"type":"ok","id":"r1"}`},
		{"empty_object_no_id", TypeOK, "", map[string]int{}, `{"type":"ok"}`},
		{"id_escaped", TypeOK, "a\"b", struct{}{}, `{"type":"ok","id":"a\"b"}`},
		{"type_escaped", `we"ird`, "", struct{}{}, `{"type":"we\"ird"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.typ, tc.id, tc.v)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			sameJSON(t, got, tc.want)
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	tests := []struct {
		name string
		v    any
	}{
		{"nil_pointer", (*ChatsAnswer)(nil)},
		{"nil", nil},
		{"slice", []int{1}},
		{"string", "x"},
		{"number", 5},
		{"unsupported", make(chan int)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(TypeChats, "r1", tc.v)
			if err == nil {
				t.Errorf("got %s, nil; want an error", got)
			}
			if err != nil && !strings.Contains(err.Error(), "cannot marshal chats answer") {
				t.Errorf("got error %q, want it to name the answer", err)
			}
		})
	}
}
