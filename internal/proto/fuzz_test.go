package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"
)

var knownTypes = map[string]bool{
	TypeSend: true, TypeAck: true, TypeRead: true, TypeHistory: true, TypeChats: true,
	TypeGroupCreate: true, TypeGroupAdd: true, TypeGroupRemove: true, TypeGroupLeave: true,
	TypeMembers: true, TypePresence: true, TypePing: true,
}

func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add([]byte(tc.in), uint16(len(tc.in)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		check := func(b []byte) {
			in, err := Decode(b)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("got error %v (%T), want *Error", err, err)
				}
				if pe.Code != CodeBadRequest && pe.Code != CodeUnknownType {
					t.Fatalf("got code %q, want bad_request or unknown_type", pe.Code)
				}
			} else if !knownTypes[in.Type] {
				t.Fatalf("got type %q with no error", in.Type)
			}
			if len(in.ID) > 64 || !utf8.ValidString(in.ID) {
				t.Fatalf("got id %q (%d bytes), want valid UTF-8 of at most 64 bytes", in.ID, len(in.ID))
			}
		}
		check(b)
		// Either half of a frame is a frame of its own to Decode.
		s := int(split) % (len(b) + 1)
		check(b[:s])
		check(b[s:])
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `a"b\c`, "\x00\x1f\x7f", "<>&", "\u2028\u2029", "é€😀", "\xff", "€"[:2], "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkAppendString(t, s, AppendString(nil, s))
		if utf8.ValidString(s) && string([]rune(s)) != s {
			t.Fatalf("test oracle broken for %q", s)
		}
	})
}

// FuzzDecodeFast checks that whatever the fast path accepts, encoding/json
// decodes to the same frame.
func FuzzDecodeFast(f *testing.F) {
	for _, tc := range decodeCases() {
		f.Add([]byte(tc.in))
	}
	for _, s := range []string{
		`{"type":"send","id":"r1","to":"bob","body":"héllo"}`,
		` { "type" : "ack" , "chat" : "dm:a:b" , "seq" : 18446744073709551615 } `,
		`{"type":"ack","seq":18446744073709551616}`, `{"type":"ack","seq":01}`, `{"type":"ack","seq":1.0}`,
		`{"type":"send","body":"a\"b"}`, `{"type":"send","body":null}`, `{"Type":"send"}`,
		`{"type":"send","type":"ack"}`, `{"type":"send"}x`, `{"type":"send",}`, `{}`, "{\"type\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeFast(b)
		if !ok {
			return
		}
		var slow Inbound
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json: %v", b, err)
		}
		if !jsonSpace(b[dec.InputOffset():]) {
			t.Fatalf("fast path accepted %q with trailing data", b)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path got %+v, encoding/json %+v", b, fast, slow)
		}
	})
}
