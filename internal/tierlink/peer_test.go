package tierlink

import (
	"reflect"
	"strings"
	"testing"
)

func TestPeerFramesRoundTrip(t *testing.T) {
	users := []PeerUser{{User: "alice"}, {User: "bob", Flags: FlagPush}}
	msgs := []Message{
		{Chat: "dm:alice:bob", Seq: 7, TS: 1700000000123, Kind: 0, Sender: "alice", Device: "phone", RequestID: "r-1", Body: "hello ✓"},
		{Chat: "g:" + strings.Repeat("x", 300), Seq: 1 << 40, TS: -1, Kind: 1, Body: `{"event":"created"}`},
		{Chat: "g:e", Seq: 1},
	}
	for i, m := range msgs {
		b := AppendFanout(nil, users, &m)
		f, n, err := Parse(b, MaxFrame)
		if err != nil || n != len(b) || f.Type != TypeFanout {
			t.Fatalf("%d: Parse = %v %d %v, want fanout of %d bytes", i, f.Type, n, err, len(b))
		}
		gotUsers, got, err := ParseFanout(f.Payload, nil)
		if err != nil {
			t.Fatalf("%d: ParseFanout: %v", i, err)
		}
		if !reflect.DeepEqual(gotUsers, users) || got != m {
			t.Fatalf("%d: got %+v %+v, want %+v %+v", i, gotUsers, got, users, m)
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

func TestPeerFramesRejectMalformed(t *testing.T) {
	good := AppendFanout(nil, []PeerUser{{User: "a"}}, &Message{Chat: "g:x", Seq: 1, Sender: "a"})[HeaderSize:]
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
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := ParseFanout(tc.p, nil); err == nil {
				t.Fatal("got nil error, want one")
			}
		})
	}
	if _, _, _, err := ParseForward([]byte{5, 'a'}); err == nil {
		t.Fatal("forward with a short user: got nil error")
	}
	if _, _, err := ParseReply([]byte{1, 2}); err == nil {
		t.Fatal("short reply: got nil error")
	}
}

func FuzzParsePeer(f *testing.F) {
	f.Add(AppendFanout(nil, []PeerUser{{User: "a", Flags: FlagPush}}, &Message{Chat: "dm:a:b", Seq: 3, Sender: "a", Body: "hi"})[HeaderSize:])
	f.Add(AppendUsers(nil, []PeerUser{{User: "a"}, {User: "b"}}, []byte("{}"))[HeaderSize:])
	f.Add(AppendForward(nil, 1, "u", "d", []byte("{}"))[HeaderSize:])
	f.Fuzz(func(t *testing.T, p []byte) {
		if users, m, err := ParseFanout(p, nil); err == nil {
			// What parses re-encodes to the same bytes.
			b := AppendFanout(nil, users, &m)[HeaderSize:]
			if string(b) != string(p) {
				t.Fatalf("fanout re-encoding differs:\n got %x\nwant %x", b, p)
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
