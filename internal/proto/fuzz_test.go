package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/parley-chat/parley/internal/record"
)

var knownTypes = map[string]bool{
	TypeSend: true, TypeAck: true, TypeRead: true, TypeHistory: true, TypeChats: true,
	TypeGroupCreate: true, TypeGroupAdd: true, TypeGroupRemove: true, TypeGroupLeave: true, TypeGroupRole: true,
	TypeMembers: true, TypePresence: true, TypePing: true, TypeSync: true, TypeSettings: true,
}

func FuzzDecode(f *testing.F) {
	for _, tc := range append(decodeCases(), strictCases()...) {
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
				if pe.NullID && (in.ID != "" || pe.Code != CodeBadRequest) {
					t.Fatalf("got NullID with id %q and code %q, want no id and bad_request", in.ID, pe.Code)
				}
			} else if !knownTypes[in.Type] {
				t.Fatalf("got type %q with no error", in.Type)
			}
			if in.ID != "" && !record.ValidID(in.ID) {
				t.Fatalf("got id %q, want empty or 1-64 bytes of [A-Za-z0-9-_.@]", in.ID)
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

// fastSeeds are inputs at the edge of what decodeFast accepts.
var fastSeeds = []string{
	`{"type":"send","id":"r1","to":"bob","body":"héllo"}`,
	` { "type" : "ack" , "chat" : "dm:a:b" , "seq" : 18446744073709551615 } `,
	`{"type":"ack","seq":18446744073709551616}`, `{"type":"ack","seq":01}`, `{"type":"ack","seq":1.0}`,
	`{"type":"send","body":"a\"b"}`, `{"type":"send","body":null}`, `{"Type":"send"}`,
	`{"type":"send","type":"ack"}`, `{"type":"send"}x`, `{"type":"send",}`, `{}`, "{\"type\":\"\xff\"}",
	`{"type":"ping","id":""}`, `{"type":"ping","id":"a b"}`, `{"type":"ping","id":"a","ID":"b"}`,
	`{"type":"dance","id":"x"}`, `{"type":"","id":"x"}`, `{"id":"x","seq":1}`,
}

// FuzzDecodeAgree feeds every input (whole and split in two) to the fast
// path, to the fallback alone and to decodeReference, and compares the
// outcomes. decodeFast never refuses by itself: it accepts or leaves the
// input to decodeJSON. So whatever it accepts, decodeJSON must accept
// with an equal frame (or refuse it with the same type error); Decode as
// a whole must give exactly decodeJSON's answer; and decodeJSON must
// accept what decodeReference accepts, with an equal frame, and refuse
// what it refuses, with the same code, id and NullID.
func FuzzDecodeAgree(f *testing.F) {
	for _, tc := range append(decodeCases(), strictCases()...) {
		f.Add([]byte(tc.in), uint16(len(tc.in)/2))
	}
	for _, s := range fastSeeds {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		check := func(b []byte) {
			slow, slowErr := decodeJSON(b)
			if fast, ok := decodeFast(b); ok {
				fin, finErr := finish(fast)
				if !reflect.DeepEqual(fin, slow) || !reflect.DeepEqual(finErr, slowErr) {
					t.Fatalf("%q: fast path got %+v, %v; fallback %+v, %v", b, fin, finErr, slow, slowErr)
				}
			}
			if got, err := Decode(b); !reflect.DeepEqual(got, slow) || !reflect.DeepEqual(err, slowErr) {
				t.Fatalf("%q: Decode got %+v, %#v; fallback %+v, %#v", b, got, err, slow, slowErr)
			}
			ref, refErr := decodeReference(b)
			if (slowErr == nil) != (refErr == nil) {
				t.Fatalf("%q: fallback got %+v, %v; reference %+v, %v", b, slow, slowErr, ref, refErr)
			}
			if slowErr == nil {
				if !reflect.DeepEqual(slow, ref) {
					t.Fatalf("%q: fallback got %+v, reference %+v", b, slow, ref)
				}
				return
			}
			se, re := slowErr.(*Error), refErr.(*Error)
			if se.Code != re.Code || se.NullID != re.NullID || slow.ID != ref.ID {
				t.Fatalf("%q: fallback got id %q, %#v; reference id %q, %#v", b, slow.ID, se, ref.ID, re)
			}
		}
		check(b)
		s := int(split) % (len(b) + 1)
		check(b[:s])
		check(b[s:])
	})
}

// FuzzDecodeFast checks that whatever the fast path accepts, plain
// encoding/json (an oracle independent of decodeJSON) decodes to the same
// frame.
func FuzzDecodeFast(f *testing.F) {
	for _, tc := range append(decodeCases(), strictCases()...) {
		f.Add([]byte(tc.in))
	}
	for _, s := range fastSeeds {
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
