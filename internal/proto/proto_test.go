package proto

import (
	"encoding/json"
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
	// wantNullID: the id was present but invalid, the error frame carries
	// "id":null.
	wantNullID bool
}

func ptr(s string) *string  { return &s }
func ptrU(n uint64) *uint64 { return &n }
func ptrB(b bool) *bool     { return &b }

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
			want: Inbound{Type: TypeHistory, ID: "h", Chat: "g:x", Before: 10, After: ptrU(2), Limit: 50}},
		{name: "history from the start", in: `{"type":"history","id":"h","chat":"g:x","after":0}`,
			want: Inbound{Type: TypeHistory, ID: "h", Chat: "g:x", After: ptrU(0)}},
		{name: "chats", in: `{"type":"chats","id":"c"}`, want: Inbound{Type: TypeChats, ID: "c"}},
		{name: "group_create", in: `{"type":"group_create","id":"g","name":"team","members":["a","b"]}`,
			want: Inbound{Type: TypeGroupCreate, ID: "g", Name: "team", Members: []string{"a", "b"}}},
		{name: "group_add", in: `{"type":"group_add","id":"g","chat":"g:x","user":"c"}`,
			want: Inbound{Type: TypeGroupAdd, ID: "g", Chat: "g:x", User: "c"}},
		{name: "group_remove", in: `{"type":"group_remove","id":"g","chat":"g:x","user":"c"}`,
			want: Inbound{Type: TypeGroupRemove, ID: "g", Chat: "g:x", User: "c"}},
		{name: "group_role", in: `{"type":"group_role","id":"g","chat":"g:x","user":"c","role":"admin"}`,
			want: Inbound{Type: TypeGroupRole, ID: "g", Chat: "g:x", User: "c", Role: "admin"}},
		{name: "group_leave", in: `{"type":"group_leave","id":"g","chat":"g:x"}`,
			want: Inbound{Type: TypeGroupLeave, ID: "g", Chat: "g:x"}},
		{name: "members", in: `{"type":"members","id":"m","chat":"g:x"}`, want: Inbound{Type: TypeMembers, ID: "m", Chat: "g:x"}},
		{name: "presence", in: `{"type":"presence","id":"p","users":["a"]}`,
			want: Inbound{Type: TypePresence, ID: "p", Users: []string{"a"}}},
		{name: "settings read", in: `{"type":"settings","id":"s"}`, want: Inbound{Type: TypeSettings, ID: "s"}},
		{name: "settings change", in: `{"type":"settings","id":"s","hide_last_seen":true}`,
			want: Inbound{Type: TypeSettings, ID: "s", HideLastSeen: ptrB(true)}},
		{name: "settings change off", in: `{"type":"settings","id":"s","hide_last_seen":false}`,
			want: Inbound{Type: TypeSettings, ID: "s", HideLastSeen: ptrB(false)}},
		{name: "settings not a bool", in: `{"type":"settings","id":"s","hide_last_seen":1}`, wantCode: CodeBadRequest, wantID: "s"},
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
		{name: "id_65", in: `{"type":"ping","id":"` + long + `"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_65_trailing", in: `{"type":"ping","id":"` + long + `"}]`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_65_unknown_field", in: `{"type":"ping","x":1,"id":"` + long + `"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "wrong_field_type_salvages_id", in: `{"type":"ack","id":"r1","seq":"7"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "negative_seq_salvages_id", in: `{"type":"ack","id":"r1","seq":-1}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "truncated_json", in: `{"type":"send","id":"r1",`, wantCode: CodeBadRequest},
		{name: "not_json", in: `hello`, wantCode: CodeBadRequest},
		{name: "array", in: `[{"type":"ping"}]`, wantCode: CodeBadRequest},
		{name: "string", in: `"ping"`, wantCode: CodeBadRequest},
		{name: "number_id", in: `{"type":"ping","id":5}`, wantCode: CodeBadRequest, wantNullID: true},
	}
}

// strictCases are the rules of finding 8 of issue 13 (docs/protocol.md,
// "Client → server frames"): exact-case keys, no repeated key, ids of
// record.ValidID on every frame type, an invalid id never echoed.
// "fast" frames have only the keys decodeFast handles; the others reach
// decodeJSON alone.
func strictCases() []decodeCase {
	long := strings.Repeat("i", 65)
	limit := strings.Repeat("Az09-_.@", 8) // 64 bytes, every class of the alphabet
	return []decodeCase{
		// Keys are case-sensitive: a key that differs only in case is an
		// unknown key (bad_request), never taken as the known one.
		{name: "upper_keys", in: `{"TYPE":"ping","ID":"x"}`, wantCode: CodeBadRequest},
		{name: "upper_type_key", in: `{"TYPE":"ping","id":"x"}`, wantCode: CodeBadRequest, wantID: "x"},
		{name: "upper_id_key_not_echoed", in: `{"type":"ping","ID":"x"}`, wantCode: CodeBadRequest},
		{name: "mixed_case_key_fast", in: `{"type":"send","id":"r1","Chat":"g:x","body":"hi"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "mixed_case_key_fallback", in: `{"type":"history","id":"h","chat":"g:x","Limit":5}`, wantCode: CodeBadRequest, wantID: "h"},
		{name: "mixed_case_id_key", in: `{"type":"ping","Id":"x"}`, wantCode: CodeBadRequest},
		{name: "case_variant_beside_key", in: `{"type":"ping","id":"a","ID":"b"}`, wantCode: CodeBadRequest, wantID: "a"},
		{name: "escaped_key_is_exact", in: `{"\u0074ype":"ping","id":"x"}`, want: Inbound{Type: TypePing, ID: "x"}},

		// A repeated key is refused, whether the values agree or not.
		{name: "dup_type_same_fast", in: `{"type":"ack","type":"ack","chat":"g:x","seq":1}`, wantCode: CodeBadRequest},
		{name: "dup_type_diff_fast", in: `{"type":"send","type":"ack","chat":"g:x","seq":1}`, wantCode: CodeBadRequest},
		{name: "dup_body_fast", in: `{"type":"send","id":"r1","chat":"g:x","body":"a","body":"b"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "dup_seq_same_fast", in: `{"type":"ack","id":"r1","chat":"g:x","seq":2,"seq":2}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "dup_limit_same_fallback", in: `{"type":"history","id":"h","chat":"g:x","limit":5,"limit":5}`, wantCode: CodeBadRequest, wantID: "h"},
		{name: "dup_name_diff_fallback", in: `{"type":"group_create","id":"g","name":"a","name":"b"}`, wantCode: CodeBadRequest, wantID: "g"},
		{name: "dup_members_fallback", in: `{"type":"group_create","id":"g","name":"t","members":["a"],"members":["b"]}`, wantCode: CodeBadRequest, wantID: "g"},
		{name: "dup_null_then_value", in: `{"type":"send","id":"r1","chat":"g:x","body":null,"body":"b"}`, wantCode: CodeBadRequest, wantID: "r1"},
		{name: "dup_chat_in_chats", in: `{"type":"sync","id":"s","chats":{"g:x":1,"g:x":2}}`, wantCode: CodeBadRequest, wantID: "s"},
		{name: "dup_escaped_chat_in_chats", in: `{"type":"sync","id":"s","chats":{"g:x":1,"g\u003ax":1}}`, wantCode: CodeBadRequest, wantID: "s"},
		// A repeated id is an invalid id: neither value is echoed.
		{name: "dup_id_same_fast", in: `{"type":"ping","id":"x","id":"x"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "dup_id_diff_fast", in: `{"type":"send","id":"a","chat":"g:x","body":"hi","id":"b"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "dup_id_escaped_fallback", in: `{"type":"chats","id":"x","\u0069d":"y"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "dup_id_null_first", in: `{"type":"ping","id":null,"id":"x"}`, wantCode: CodeBadRequest, wantNullID: true},

		// The id is 1-64 bytes of [A-Za-z0-9-_.@] on every frame type; an
		// invalid one is answered with "id":null.
		{name: "id_newline", in: `{"type":"ping","id":"a\nb"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_nul", in: `{"type":"ack","id":"a\u0000","chat":"g:x","seq":1}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_esc_sequence", in: `{"type":"chats","id":"\u001b[2J"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_del_fast", in: "{\"type\":\"read\",\"id\":\"a\x7f\",\"chat\":\"g:x\",\"seq\":1}", wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_c1_fast", in: "{\"type\":\"ping\",\"id\":\"a\u0085\"}", wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_space_fast", in: `{"type":"send","id":"r 1","chat":"g:x","body":"hi"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_space_fallback", in: `{"type":"members","id":"m 1","chat":"g:x"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_quote", in: `{"type":"ping","id":"a\"b"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_colon", in: `{"type":"ping","id":"a:b"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_non_ascii", in: `{"type":"ping","id":"é"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_65_fallback", in: `{"type":"history","id":"` + long + `","chat":"g:x"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_empty_fast", in: `{"type":"send","id":"","chat":"g:x","body":"hi"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_empty_ping", in: `{"type":"ping","id":""}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_object", in: `{"type":"ping","id":{"a":1}}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_bad_and_unknown_field", in: `{"type":"ping","x":1,"id":"a b"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_bad_and_unknown_type", in: `{"type":"dance","id":"a b"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_bad_and_wrong_field_type", in: `{"type":"ack","id":"a\u0000","seq":"7"}`, wantCode: CodeBadRequest, wantNullID: true},
		{name: "id_bad_and_trailing", in: `{"type":"ping","id":"a\tb"} x`, wantCode: CodeBadRequest, wantNullID: true},
		// Not JSON: the id cannot be read, the error has none.
		{name: "id_bad_truncated", in: `{"type":"ping","id":"a b"`, wantCode: CodeBadRequest},

		// Valid ids, up to the limit (these pass on the old decoder too).
		{name: "id_null_is_absent", in: `{"type":"ping","id":null}`, want: Inbound{Type: TypePing}},
		{name: "id_1", in: `{"type":"ping","id":"a"}`, want: Inbound{Type: TypePing, ID: "a"}},
		{name: "id_64_alphabet_fast", in: `{"type":"send","id":"` + limit + `","chat":"g:x","body":"hi"}`,
			want: Inbound{Type: TypeSend, ID: limit, Chat: "g:x", Body: ptr("hi")}},
		{name: "id_64_alphabet_fallback", in: `{"type":"history","id":"` + limit + `","chat":"g:x","limit":5}`,
			want: Inbound{Type: TypeHistory, ID: limit, Chat: "g:x", Limit: 5}},
		{name: "id_64_escaped_fallback", in: `{"type":"ping","id":"\u0041` + limit[1:] + `"}`, want: Inbound{Type: TypePing, ID: "A" + limit[1:]}},
		{name: "sync_chats", in: `{"type":"sync","id":"s","chats":{"g:x":1,"dm:a:b":2}}`,
			want: Inbound{Type: TypeSync, ID: "s", Chats: map[string]uint64{"g:x": 1, "dm:a:b": 2}}},
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range append(decodeCases(), strictCases()...) {
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
			if pe.NullID != tc.wantNullID {
				t.Errorf("got NullID %v, want %v", pe.NullID, tc.wantNullID)
			}
			if len(pe.Message) > 200 {
				t.Errorf("got message of %d bytes, want at most 200", len(pe.Message))
			}
			// The error frame logic sends (replyErr): the id as decoded, or
			// null, never the invalid id.
			var frame map[string]any
			if err := json.Unmarshal(AppendError(nil, got.ID, pe), &frame); err != nil {
				t.Fatalf("cannot decode error frame: %v", err)
			}
			id, ok := frame["id"]
			switch {
			case tc.wantNullID && (!ok || id != nil):
				t.Errorf("got error frame id %#v (present %v), want null", id, ok)
			case !tc.wantNullID && tc.wantID != "" && id != tc.wantID:
				t.Errorf("got error frame id %#v, want %q", id, tc.wantID)
			case !tc.wantNullID && tc.wantID == "" && ok:
				t.Errorf("got error frame id %#v, want none", id)
			}
		})
	}
}

// TestInboundFields checks that the keys Decode knows (keyBit) are exactly
// Inbound's json tags, each with a bit of its own, and that a key
// differing only in case, or by a byte, is unknown.
func TestInboundFields(t *testing.T) {
	typ := reflect.TypeFor[Inbound]()
	var all uint32
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		bit := keyBit(name)
		if bit == 0 || bit&(bit-1) != 0 || all&bit != 0 {
			t.Errorf("key %q: got bit %#x, want a single bit of its own (taken %#x)", name, bit, all)
		}
		all |= bit
		for _, k := range []string{strings.ToUpper(name), strings.ToUpper(name[:1]) + name[1:], name + " ", "\ufeff" + name, name[1:]} {
			if bit := keyBit(k); bit != 0 {
				t.Errorf("key %q: got bit %#x, want unknown", k, bit)
			}
		}
	}
	if want := uint32(1)<<typ.NumField() - 1; all != want || keyHideLastSeen<<1 != want+1 {
		t.Errorf("got key bits %#x (last %#x), want %#x: one per field of Inbound", all, keyHideLastSeen, want)
	}
}

// TestInvalidIDErrorFrame checks the example of docs/protocol.md ("Frame
// rules"): the error frame for an invalid id, as logic builds it.
func TestInvalidIDErrorFrame(t *testing.T) {
	in, err := Decode([]byte(`{"type":"ping","id":"a b"}`))
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want *Error", err, err)
	}
	got := string(AppendError(nil, in.ID, pe))
	if want := `{"type":"error","id":null,"code":"bad_request","message":"id must be 1-64 bytes of [A-Za-z0-9-_.@]","retryable":false}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestDecodeErrorsInOurWords: a value of the wrong type is refused in the
// protocol's terms, naming the field, never Go's types or struct fields.
func TestDecodeErrorsInOurWords(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"type":"history","id":"h","chat":"g:x","before":-1}`, `"before" must be a non-negative integer, not number -1`},
		{`{"type":"history","id":"h","chat":"g:x","after":"x"}`, `"after" must be a non-negative integer, not string`},
		{`{"type":"history","id":"h","chat":"g:x","limit":1.5}`, `"limit" must be an integer in range, not number 1.5`},
		{`{"type":"send","id":"h","chat":"g:x","body":5}`, `"body" must be a string, not number`},
		{`{"type":"sync","id":"h","chats":{"g:x":-1}}`, `"chats" must be an object of chat ids to non-negative integers`},
		{`{"type":"presence","id":"h","users":"a"}`, `"users" must be an array of strings`},
		{`{"type":"presence","id":"h","users":[1]}`, `"users" must be an array of strings`},
		{`{"type":"group_create","id":"h","members":{}}`, `"members" must be an array of strings`},
	} {
		_, err := Decode([]byte(tc.in))
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeBadRequest || pe.Message != tc.want {
			t.Errorf("Decode(%s): got %v, want bad_request %q", tc.in, err, tc.want)
		}
		for _, bad := range []string{"Go ", "struct", "Inbound", "uint64", "json:"} {
			if err != nil && strings.Contains(err.Error(), bad) {
				t.Errorf("Decode(%s): %q mentions %q", tc.in, err, bad)
			}
		}
	}
}
