package proto

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// decodeCase is a client frame and what Decode must make of it.
type decodeCase struct {
	name     string
	in       string
	want     Inbound // compared when wantCode is ""
	wantCode string  // error code; "" for success
	wantID   string  // id returned with an error
}

func ptr(s string) *string { return &s }

func decodeCases() []decodeCase {
	long := strings.Repeat("i", 65)
	return []decodeCase{
		// Every client frame type.
		{name: "send_chat", in: `{"type":"send","id":"r1","chat":"dm:a:b","body":"hi"}`,
			want: Inbound{Type: TypeSend, ID: "r1", Chat: "dm:a:b", Body: ptr("hi")}},
		{name: "send_to", in: `{"type":"send","id":"r2","to":"bob","body":""}`,
			want: Inbound{Type: TypeSend, ID: "r2", To: "bob", Body: ptr("")}},
		{name: "ack", in: `{"type":"ack","chat":"g:x","seq":7}`, want: Inbound{Type: TypeAck, Chat: "g:x", Seq: 7}},
		{name: "read", in: `{"type":"read","chat":"g:x","seq":18446744073709551615}`,
			want: Inbound{Type: TypeRead, Chat: "g:x", Seq: 18446744073709551615}},
		{name: "history", in: `{"type":"history","id":"h","chat":"g:x","before":10,"after":2,"limit":50}`,
			want: Inbound{Type: TypeHistory, ID: "h", Chat: "g:x", Before: 10, After: 2, Limit: 50}},
		{name: "chats", in: `{"type":"chats","id":"c"}`, want: Inbound{Type: TypeChats, ID: "c"}},
		{name: "group_create", in: `{"type":"group_create","id":"g","name":"team","members":["a","b"]}`,
			want: Inbound{Type: TypeGroupCreate, ID: "g", Name: "team", Members: []string{"a", "b"}}},
		{name: "group_add", in: `{"type":"group_add","id":"g","chat":"g:x","user":"c"}`,
			want: Inbound{Type: TypeGroupAdd, ID: "g", Chat: "g:x", User: "c"}},
		{name: "group_remove", in: `{"type":"group_remove","id":"g","chat":"g:x","user":"c"}`,
			want: Inbound{Type: TypeGroupRemove, ID: "g", Chat: "g:x", User: "c"}},
		{name: "group_leave", in: `{"type":"group_leave","id":"g","chat":"g:x"}`,
			want: Inbound{Type: TypeGroupLeave, ID: "g", Chat: "g:x"}},
		{name: "members", in: `{"type":"members","id":"m","chat":"g:x"}`, want: Inbound{Type: TypeMembers, ID: "m", Chat: "g:x"}},
		{name: "presence", in: `{"type":"presence","id":"p","users":["a"]}`,
			want: Inbound{Type: TypePresence, ID: "p", Users: []string{"a"}}},
		{name: "ping", in: `{"type":"ping"}`, want: Inbound{Type: TypePing}},
		{name: "whitespace_around", in: " \t\r\n{\"type\":\"ping\",\"id\":\"x\"}\n ", want: Inbound{Type: TypePing, ID: "x"}},
		{name: "id_64", in: `{"type":"ping","id":"` + long[:64] + `"}`, want: Inbound{Type: TypePing, ID: long[:64]}},

		// Failures.
		{name: "empty", in: ``, wantCode: CodeBadRequest},
		{name: "spaces", in: " \n\t ", wantCode: CodeBadRequest},
		{name: "unknown_field", in: `{"type":"send","id":"r1","bogus":1}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "unknown_type", in: `{"type":"dance","id":"r1"}`, wantCode: CodeUnknownType, wantID: "r1"},
		{name: "unknown_type_long", in: `{"type":"` + strings.Repeat("t", 100) + `","id":"r1"}`, wantCode: CodeUnknownType, wantID: "r1"},
		{name: "server_type", in: `{"type":"msg","id":"r1"}`, wantCode: CodeUnknownType, wantID: "r1"},
		{name: "missing_type", in: `{"id":"r1","chat":"g:x"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "empty_type", in: `{"type":"","id":"r1"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "null", in: `null`, wantCode: CodeBadRequest},
		{name: "empty_object", in: `{}`, wantCode: CodeBadRequest},
		{name: "trailing_garbage", in: `{"type":"ping","id":"r1"} x`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "trailing_object", in: `{"type":"ping","id":"r1"}{}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "trailing_brace", in: `{"type":"ping","id":"r1"}}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "trailing_bracket", in: `{"type":"ping","id":"r1"}]`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "trailing_nul", in: "{\"type\":\"ping\"}\x00", wantCode: CodeBadRequest},
		{name: "id_65", in: `{"type":"ping","id":"` + long + `"}`, wantCode: CodeBadRequest},
		{name: "id_65_trailing", in: `{"type":"ping","id":"` + long + `"}]`, wantCode: CodeBadRequest},
		{name: "id_65_unknown_field", in: `{"type":"ping","x":1,"id":"` + long + `"}`, wantCode: CodeBadRequest},
		{name: "wrong_field_type_salvages_id", in: `{"type":"ack","id":"r1","seq":"7"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "negative_seq_salvages_id", in: `{"type":"ack","id":"r1","seq":-1}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "truncated_json", in: `{"type":"send","id":"r1",`, wantCode: CodeBadRequest},
		{name: "not_json", in: `hello`, wantCode: CodeBadRequest},
		{name: "array", in: `[{"type":"ping"}]`, wantCode: CodeBadRequest},
		{name: "string", in: `"ping"`, wantCode: CodeBadRequest},
		{name: "number_id", in: `{"type":"ping","id":5}`, wantCode: CodeBadRequest},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.in))
			if tc.wantCode == "" {
				if err != nil {
					t.Fatalf("got error %v, want nil", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("got error %v (%T), want *Error", err, err)
			}
			if pe.Code != tc.wantCode {
				t.Errorf("got code %q (%s), want %q", pe.Code, pe.Message, tc.wantCode)
			}
			if got.ID != tc.wantID {
				t.Errorf("got id %q, want %q", got.ID, tc.wantID)
			}
			if len(pe.Message) > 200 {
				t.Errorf("got message of %d bytes, want at most 200", len(pe.Message))
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		code string
		want bool
	}{
		{CodeBadRequest, false},
		{CodeUnknownType, false},
		{CodeNotMember, false},
		{CodeChatNotFound, false},
		{CodeGroupFull, false},
		{CodeTooLarge, false},
		{CodeForbidden, false},
		{CodeRateLimited, true},
		{CodeOverloaded, true},
		{CodeUnavailable, true},
		{CodeInternal, true},
		{"", false},
		{"something_else", false},
	}
	for _, tc := range tests {
		if got := Retryable(tc.code); got != tc.want {
			t.Errorf("Retryable(%q): got %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestErrorf(t *testing.T) {
	e := Errorf(CodeTooLarge, "body of %d bytes, limit %d", 5000, 4096)
	if e.Code != CodeTooLarge || e.Message != "body of 5000 bytes, limit 4096" || e.RetryAfterMS != 0 {
		t.Errorf("got %+v", e)
	}
	if got, want := e.Error(), "too_large: body of 5000 bytes, limit 4096"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
