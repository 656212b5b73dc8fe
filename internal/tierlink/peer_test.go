package tierlink

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/record"
)

// versions are the link versions whose Fanout layout differs.
var versions = []uint8{VersionMessageFields - 1, VersionMessageFields}

func TestPeerFramesRoundTrip(t *testing.T) {
	users := []PeerUser{{User: "alice"}, {User: "bob", Flags: FlagPush}}
	msgs := []record.Message{
		{ChatID: "dm:alice:bob", Seq: 7, TS: 1700000000123, Kind: 0, Sender: "alice", Device: "phone", RequestID: "r-1", Body: "hello ✓"},
		{ChatID: "g:" + strings.Repeat("x", 300), Seq: 1 << 40, TS: -1, Kind: 1, Body: `{"event":"created"}`},
		{ChatID: "g:e", Seq: 1},
		{ChatID: "g:big", Seq: 2, Body: strings.Repeat("b", 70000)},
	}
	for _, v := range versions {
		for i, m := range msgs {
			b := AppendFanout(nil, v, users, &m)
			f, n, err := Parse(b, MaxFrame)
			if err != nil || n != len(b) || f.Type != TypeFanout {
				t.Fatalf("v%d %d: Parse = %v %d %v, want fanout of %d bytes", v, i, f.Type, n, err, len(b))
			}
			gotUsers, got, err := ParseFanout(f.Payload, v, nil)
			if err != nil {
				t.Fatalf("v%d %d: ParseFanout: %v", v, i, err)
			}
			if !reflect.DeepEqual(gotUsers, users) || got != m {
				t.Fatalf("v%d %d: got %+v %+v, want %+v %+v", v, i, gotUsers, got, users, m)
			}
		}
	}

	b := AppendForward(nil, 42, "alice", "web", []byte(`{"type":"send"}`))
	f, _, err := Parse(b, MaxFrame)
	if err != nil || f.Type != TypeForward || f.Session != 42 {
		t.Fatalf("forward: got %v %d %v", f.Type, f.Session, err)
	}
	u, d, frame, err := ParseForward(f.Payload)
	if err != nil || u != "alice" || d != "web" || string(frame) != `{"type":"send"}` {
		t.Fatalf("forward: got %q %q %q %v", u, d, frame, err)
	}

	b = AppendReply(nil, 42, 9, []byte(`{"type":"sent"}`))
	f, _, _ = Parse(b, MaxFrame)
	seq, frame, err := ParseReply(f.Payload)
	if err != nil || f.Type != TypeReply || seq != 9 || string(frame) != `{"type":"sent"}` {
		t.Fatalf("reply: got %v %d %q %v", f.Type, seq, frame, err)
	}

	b = AppendUsers(nil, users, []byte(`{"type":"receipt"}`))
	f, _, _ = Parse(b, MaxFrame)
	gotUsers, frame, err := ParseUsers(f.Payload, nil)
	if err != nil || !reflect.DeepEqual(gotUsers, users) || string(frame) != `{"type":"receipt"}` {
		t.Fatalf("users: got %+v %q %v", gotUsers, frame, err)
	}
}

// TestMessageFieldsSkipped: a reader skips the fields it does not know
// (what a newer sender adds), and refuses a field cut short.
func TestMessageFieldsSkipped(t *testing.T) {
	m := record.Message{ChatID: "dm:a:b", Seq: 9, TS: 5, Sender: "a", Device: "d", RequestID: "r", Body: "hi"}
	b := AppendMessage(nil, &m)
	withFields := append(append([]byte{}, b...), 7, 0, 3, 'x', 'y', 'z', 9, 0, 0)
	got, err := ParseMessage(withFields)
	if err != nil || got != m {
		t.Fatalf("with unknown fields: got %+v, %v; want %+v", got, err, m)
	}
	for _, bad := range [][]byte{
		append(append([]byte{}, b...), 7, 0),         // field header cut
		append(append([]byte{}, b...), 7, 0, 4, 'x'), // field value cut
	} {
		if _, err := ParseMessage(bad); err == nil {
			t.Errorf("%x: got nil error, want one", bad[len(b):])
		}
	}
	// A body length beyond the payload.
	long := append([]byte{}, b...)
	binary.BigEndian.PutUint32(long[len(long)-len(m.Body)-4:], 1<<31)
	if _, err := ParseMessage(long); err == nil {
		t.Error("body length beyond the payload: got nil error")
	}
}

func TestPeerFramesRejectMalformed(t *testing.T) {
	for _, v := range versions {
		good := AppendFanout(nil, v, []PeerUser{{User: "a"}}, &record.Message{ChatID: "g:x", Seq: 1, Sender: "a"})[HeaderSize:]
		tests := []struct {
			name string
			p    []byte
		}{
			{"empty", nil},
			{"zero users", []byte{0, 0}},
			{"too many users", []byte{0xff, 0xff}},
			{"empty user", []byte{0, 1, 0, 0}},
			{"truncated user", []byte{0, 1, 0, 5, 'a'}},
			{"truncated message", good[:len(good)-8]},
			{"zero chat", append(append([]byte{}, good[:5+17]...), 0, 0)},
		}
		for _, tc := range tests {
			if _, _, err := ParseFanout(tc.p, v, nil); err == nil {
				t.Errorf("v%d %s: got nil error, want one", v, tc.name)
			}
		}
	}
	if _, _, _, err := ParseForward([]byte{5, 'a'}); err == nil {
		t.Fatal("forward with a short user: got nil error")
	}
	if _, _, err := ParseReply([]byte{1, 2}); err == nil {
		t.Fatal("short reply: got nil error")
	}
}

func FuzzParsePeer(f *testing.F) {
	for _, v := range versions {
		f.Add(AppendFanout(nil, v, []PeerUser{{User: "a", Flags: FlagPush}}, &record.Message{ChatID: "dm:a:b", Seq: 3, Sender: "a", Body: "hi"})[HeaderSize:])
	}
	f.Add(AppendUsers(nil, []PeerUser{{User: "a"}, {User: "b"}}, []byte("{}"))[HeaderSize:])
	f.Add(AppendForward(nil, 1, "u", "d", []byte("{}"))[HeaderSize:])
	f.Fuzz(func(t *testing.T, p []byte) {
		if users, m, err := ParseFanout(p, VersionMessageFields-1, nil); err == nil {
			// What parses re-encodes to the same bytes.
			b := AppendFanout(nil, VersionMessageFields-1, users, &m)[HeaderSize:]
			if string(b) != string(p) {
				t.Fatalf("v2 fanout re-encoding differs:\n got %x\nwant %x", b, p)
			}
		}
		if users, m, err := ParseFanout(p, VersionMessageFields, nil); err == nil {
			// What parses re-encodes to what parses the same (fields a
			// reader does not know are dropped).
			b := AppendFanout(nil, VersionMessageFields, users, &m)[HeaderSize:]
			users2, m2, err := ParseFanout(b, VersionMessageFields, nil)
			if err != nil || m2 != m || !reflect.DeepEqual(users2, users) {
				t.Fatalf("fanout round trip: got %+v %+v %v, want %+v %+v", users2, m2, err, users, m)
			}
		}
		if users, frame, err := ParseUsers(p, nil); err == nil {
			if len(users) == 0 || len(users) > MaxPeerUsers {
				t.Fatalf("got %d users", len(users))
			}
			_ = frame
		}
		_, _, _, _ = ParseForward(p)
		_, _, _ = ParseReply(p)
	})
}
