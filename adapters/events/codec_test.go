package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

var codecCases = []struct {
	name  string
	value string
	want  record.PushEvent
	err   bool
}{
	{name: "full", value: `{"recipient":"u1","chat":"dm:u1:u2","seq":42,"sender":"u2","preview":"hi","ts":1700000000000}`,
		want: record.PushEvent{Recipient: "u1", ChatID: "dm:u1:u2", Seq: 42, Sender: "u2", Preview: "hi", TS: 1700000000000}},
	{name: "minimal", value: `{"recipient":"u1","chat":"c","seq":1}`,
		want: record.PushEvent{Recipient: "u1", ChatID: "c", Seq: 1}},
	{name: "unknown field ignored", value: `{"recipient":"u1","chat":"c","seq":1,"future":true}`,
		want: record.PushEvent{Recipient: "u1", ChatID: "c", Seq: 1}},
	{name: "unicode preview", value: `{"recipient":"u1","chat":"c","seq":7,"preview":"h\u00e9 \ud83d\ude00"}`,
		want: record.PushEvent{Recipient: "u1", ChatID: "c", Seq: 7, Preview: "hé 😀"}},
	{name: "no recipient", value: `{"chat":"c","seq":1}`, err: true},
	{name: "no chat", value: `{"recipient":"u1","seq":1}`, err: true},
	{name: "seq zero", value: `{"recipient":"u1","chat":"c","seq":0}`, err: true},
	{name: "negative seq", value: `{"recipient":"u1","chat":"c","seq":-1}`, err: true},
	{name: "wrong type", value: `{"recipient":1,"chat":"c","seq":1}`, err: true},
	{name: "not json", value: `hello`, err: true},
	{name: "empty", value: ``, err: true},
	{name: "null", value: `null`, err: true},
	{name: "array", value: `[]`, err: true},
	{name: "too long", value: `{"recipient":"u1","chat":"c","seq":1,"preview":"` + strings.Repeat("x", maxValueLen) + `"}`, err: true},
}

func TestDecode(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decode([]byte(tc.value))
			if tc.err {
				if !errors.Is(err, errInvalid) {
					t.Fatalf("decode: got err %v, want errInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, ev := range []record.PushEvent{
		{Recipient: "u1", ChatID: "c", Seq: 1},
		{Recipient: "alice", ChatID: "dm:alice:bob", Seq: 1<<64 - 1, Sender: "bob", Preview: `quote " and \ and <tag> é`, TS: -5},
		{Recipient: "u\x00", ChatID: "c\n", Seq: 9, Preview: "\u2028"},
	} {
		b, err := encode(ev)
		if err != nil {
			t.Fatalf("encode %+v: %v", ev, err)
		}
		got, err := decode(b)
		if err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if got != ev {
			t.Fatalf("round trip: got %+v, want %+v", got, ev)
		}
	}
	b, _ := encode(record.PushEvent{Recipient: "u1", ChatID: "c", Seq: 2, Sender: "s", Preview: "p", TS: 3})
	if want := `{"recipient":"u1","chat":"c","seq":2,"sender":"s","preview":"p","ts":3}`; string(b) != want {
		t.Fatalf("encode: got %s, want %s", b, want)
	}
}

// FuzzDecode: decode never panics, and whatever it accepts survives an
// encode/decode round trip unchanged.
func FuzzDecode(f *testing.F) {
	for _, tc := range codecCases {
		if len(tc.value) < 1024 {
			f.Add([]byte(tc.value))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decode(b)
		if err != nil {
			if !errors.Is(err, errInvalid) {
				t.Fatalf("decode error %v is not errInvalid", err)
			}
			return
		}
		if ev.Recipient == "" || ev.ChatID == "" || ev.Seq == 0 {
			t.Fatalf("decode accepted an incomplete event %+v", ev)
		}
		enc, err := encode(ev)
		if err != nil {
			t.Fatalf("encode %+v: %v", ev, err)
		}
		again, err := decode(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", enc, err)
		}
		if again != ev {
			t.Fatalf("round trip: got %+v, want %+v", again, ev)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	ev := record.PushEvent{Recipient: "user-000123", ChatID: "dm:user-000123:user-000456", Seq: 123456,
		Sender: "user-000456", Preview: strings.Repeat("p", 100), TS: 1700000000000}
	v, _ := encode(ev)
	b.SetBytes(int64(len(v)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encode(ev); err != nil {
			b.Fatal(err)
		}
	}
}
