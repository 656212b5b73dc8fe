package pebble

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

var codecMessages = []record.Message{
	{ChatID: "g:a", Seq: 1, Kind: record.MsgText},
	{ChatID: "g:a", Seq: 2, Sender: "alice", Device: "phone", RequestID: "r1", TS: 1_700_000_000_000, Kind: record.MsgText, Body: "hello"},
	{ChatID: "dm:a:b", Seq: math.MaxUint64, TS: -1, Kind: record.MsgSystem, Body: `{"event":"join"}`},
	{ChatID: "g:b", Seq: 3, Sender: "s", TS: math.MinInt64, Kind: 0xff, Body: "\x00\x01\xff binary \u00e9"},
	{ChatID: "g:b", Seq: 4, Sender: string(bytes.Repeat([]byte("x"), 300)), TS: math.MaxInt64, Body: string(bytes.Repeat([]byte("y"), 5000))},
}

func TestMessageRoundTrip(t *testing.T) {
	for _, want := range codecMessages {
		v := appendMessage(nil, &want)
		got, err := decodeMessage(want.ChatID, want.Seq, v)
		if err != nil {
			t.Fatalf("decodeMessage(%+v): %v", want, err)
		}
		if got != want {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
	}
}

func TestDecodeMessageCorrupt(t *testing.T) {
	good := appendMessage(nil, &codecMessages[1])
	tests := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"version only", []byte{msgVersion}},
		{"unknown version", append([]byte{9}, good[1:]...)},
		{"truncated ts", []byte{msgVersion, 1, 0x80}},
		{"varint too long", append([]byte{msgVersion, 1}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"varint overflows", []byte{msgVersion, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}},
		{"string overruns", []byte{msgVersion, 1, 0, 5, 'a'}},
		{"huge string length", binary.AppendUvarint([]byte{msgVersion, 1, 0}, math.MaxUint64)},
		{"missing request id", good[:len(good)-len("hello")-len("r1")-1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeMessage("g:a", 1, tc.v)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("decodeMessage(%x): got %v, want errCorrupt", tc.v, err)
			}
		})
	}
}

func TestChatRoundTrip(t *testing.T) {
	for _, want := range []record.Chat{
		{ID: "g:a"},
		{ID: "g:team", Kind: record.KindGroup, Name: "Team \u2713", CreatedBy: "carol", CreatedAt: 1_700_000_000_000},
		{ID: "dm:a:b", Kind: record.KindDirect, CreatedBy: "a", CreatedAt: -5},
	} {
		got, err := decodeChat(want.ID, appendChat(nil, &want))
		if err != nil || got != want {
			t.Fatalf("chat round trip: got %+v, %v, want %+v", got, err, want)
		}
	}
	for _, v := range [][]byte{nil, {chatVersion}, {2, 1, 0, 0}, {chatVersion, 1, 0, 3, 'a'}} {
		if _, err := decodeChat("g:a", v); !errors.Is(err, errCorrupt) {
			t.Fatalf("decodeChat(%x): got %v, want errCorrupt", v, err)
		}
	}
}

func TestDecodeSeq(t *testing.T) {
	if got, err := decodeSeq(appendSeq(nil, 42)); err != nil || got != 42 {
		t.Fatalf("decodeSeq: got %d, %v, want 42", got, err)
	}
	if _, err := decodeSeq([]byte{1, 2, 3}); !errors.Is(err, errCorrupt) {
		t.Fatalf("decodeSeq(3 bytes): got %v, want errCorrupt", err)
	}
}

func TestKeysUnambiguous(t *testing.T) {
	// A chat's message range never covers another chat's messages.
	a := msgPrefix(nil, "g:a")
	end := prefixEnd(a)
	for _, other := range []string{"g:", "g:a2", "g:a:", "g:b", "g:A"} {
		k := msgKey(nil, other, 1)
		if bytes.Compare(k, a) >= 0 && bytes.Compare(k, end) < 0 {
			t.Errorf("message key of %q falls in the range of g:a", other)
		}
	}
	if !bytes.Equal(msgKey(nil, "g:a", 1), []byte("mg:a\x00\x00\x00\x00\x00\x00\x00\x00\x01")) {
		t.Errorf("msgKey: got %q", msgKey(nil, "g:a", 1))
	}
	if bytes.Equal(dedupKey(nil, "c", "ab", "c"), dedupKey(nil, "c", "a", "bc")) {
		t.Errorf("dedup keys of different senders collide")
	}
}

// FuzzDecodeMessage checks that decoding never panics, that whatever decodes
// re-encodes to a value that decodes the same, and that a value split in two
// (a truncated read) never panics either.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range codecMessages {
		f.Add(appendMessage(nil, &m))
	}
	f.Add([]byte{msgVersion, 1, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		for i := 0; i <= len(v); i += max(1, len(v)/8) {
			_, _ = decodeMessage("g:f", 1, v[:i])
			_, _ = decodeMessage("g:f", 1, v[i:])
		}
		m, err := decodeMessage("g:f", 7, v)
		if err != nil {
			return
		}
		again, err := decodeMessage("g:f", 7, appendMessage(nil, &m))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if again != m {
			t.Fatalf("re-encoded message: got %+v, want %+v", again, m)
		}
	})
}

// FuzzDecodeChat is FuzzDecodeMessage for chat metadata.
func FuzzDecodeChat(f *testing.F) {
	f.Add(appendChat(nil, &record.Chat{ID: "g:a", Kind: record.KindGroup, Name: "n", CreatedBy: "u", CreatedAt: 5}))
	f.Add([]byte{chatVersion, 2, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		for i := 0; i <= len(v); i += max(1, len(v)/8) {
			_, _ = decodeChat("g:f", v[:i])
			_, _ = decodeChat("g:f", v[i:])
		}
		c, err := decodeChat("g:f", v)
		if err != nil {
			return
		}
		again, err := decodeChat("g:f", appendChat(nil, &c))
		if err != nil || again != c {
			t.Fatalf("re-encoded chat: got %+v, %v, want %+v", again, err, c)
		}
	})
}

// FuzzDecodePushSub is FuzzDecodeMessage for push subscriptions.
func FuzzDecodePushSub(f *testing.F) {
	f.Add(appendPushSub(nil, &record.PushSubscription{User: "u", Device: "d", Endpoint: "https://p.example/x", P256dh: "BCVx", Auth: "BTBZ", CreatedAt: -7}))
	f.Add([]byte{pushSubVersion, 0x80})
	f.Add([]byte{pushSubVersion, 2, 5, 'a'})
	f.Fuzz(func(t *testing.T, v []byte) {
		for i := 0; i <= len(v); i += max(1, len(v)/8) {
			_, _ = decodePushSub("u", "d", v[:i])
			_, _ = decodePushSub("u", "d", v[i:])
		}
		sub, err := decodePushSub("u", "d", v)
		if err != nil {
			return
		}
		again, err := decodePushSub("u", "d", appendPushSub(nil, &sub))
		if err != nil || again != sub {
			t.Fatalf("re-encoded push subscription: got %+v, %v, want %+v", again, err, sub)
		}
	})
}

// TestDecodeSettingsExhaustive decodes every value of up to two bytes (a
// settings value is two bytes, so this covers more than fuzzing would) and
// a longer one: no panic, and whatever decodes re-encodes to itself.
func TestDecodeSettingsExhaustive(t *testing.T) {
	check := func(v []byte) {
		st, err := decodeSettings("u", v)
		if err != nil {
			return
		}
		if again, err := decodeSettings("u", appendSettings(nil, st)); err != nil || again != st {
			t.Fatalf("%x: re-encoded settings: got %+v, %v, want %+v", v, again, err, st)
		}
	}
	check(nil)
	for a := range 256 {
		check([]byte{byte(a)})
		for b := range 256 {
			check([]byte{byte(a), byte(b)})
		}
	}
	check([]byte{settingsVersion, 1, 0xff, 0xff})
	for _, st := range []record.UserSettings{{}, {HideLastSeen: true}} {
		if got, err := decodeSettings("u", appendSettings(nil, st)); err != nil || got != st {
			t.Fatalf("round trip of %+v: got %+v, %v", st, got, err)
		}
	}
	if _, err := decodeSettings("u", []byte{settingsVersion + 1, 0}); err == nil {
		t.Fatal("unknown version: got nil error")
	}
}

// FuzzDecodeMember is FuzzDecodeMessage for member rows.
func FuzzDecodeMember(f *testing.F) {
	f.Add(appendMember(nil, record.Member{User: "u", Role: record.RoleAdmin, Joined: 300}))
	f.Add([]byte{})
	f.Add([]byte{memberVersion, byte(record.RoleCreator), 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		m, err := decodeMember("u", v)
		if err != nil {
			return
		}
		if len(v) == 0 {
			if m != (record.Member{User: "u"}) {
				t.Fatalf("empty row: got %+v", m)
			}
			return
		}
		again, err := decodeMember("u", appendMember(nil, m))
		if err != nil || again != m {
			t.Fatalf("re-encoded member: got %+v, %v, want %+v", again, err, m)
		}
	})
}
