package logic

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// presenceOf asks session s for users' presence and returns the answers
// by user.
func presenceOf(t *testing.T, n *fakeNode, s uint64, users ...string) map[string]map[string]any {
	t.Helper()
	q := `{"type":"presence","id":"p","users":[`
	for i, u := range users {
		if i > 0 {
			q += ","
		}
		q += fmt.Sprintf("%q", u)
	}
	n.send(s, q+`]}`)
	for {
		m := n.next(s)
		if m["type"] != "presence" || m["id"] != "p" {
			continue // pushes, receipts
		}
		out := map[string]map[string]any{}
		for _, x := range m["users"].([]any) {
			u := x.(map[string]any)
			out[u["user"].(string)] = u
		}
		return out
	}
}

// pushedPresence waits for a presence push on session s about user.
func pushedPresence(t *testing.T, n *fakeNode, s uint64, user string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m := n.next(s)
		if m["type"] != "presence" || m["id"] != nil {
			continue
		}
		for _, x := range m["users"].([]any) {
			if u := x.(map[string]any); u["user"] == user {
				return u
			}
		}
	}
	t.Fatalf("session %d: no presence push about %s", s, user)
	return nil
}

// TestPresenceByRelationship: presence is visible within groups and
// between the two sides of a 1-on-1 chat once both have sent; a stranger
// gets the same answer for an existing, online user as for an id no one
// uses; a reply that makes a chat mutual pushes each side the other's
// presence.
func TestPresenceByRelationship(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	n.open(3, "mallory", "d")
	n.open(4, "carol", "d")

	stranger := func(t *testing.T, s uint64, asker, user string) {
		t.Helper()
		got := presenceOf(t, n, s, user, "nobody-at-all")
		a, b := got[user], got["nobody-at-all"]
		if a["online"] != b["online"] || a["last_seen"] != b["last_seen"] || a["online"] != false {
			t.Fatalf("%s asking: %s is %v, a user no one uses %v; want the same offline answer", asker, user, a, b)
		}
	}
	stranger(t, 3, "mallory", "alice")

	// A first "hi" is a request, not a relationship.
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"hi bob"}`)
	n.nextType(1, "sent")
	n.nextType(2, "msg")
	stranger(t, 2, "bob", "alice")
	stranger(t, 1, "alice", "bob")
	n.send(1, `{"type":"send","id":"r2","to":"bob","body":"hello?"}`) // the same side again
	n.nextType(1, "sent")
	n.nextType(2, "msg") // before bob's next answers: its delivery and alice's "sent" race
	stranger(t, 2, "bob", "alice")

	// Bob replies: both are pushed the other's presence.
	n.send(2, `{"type":"send","id":"b1","to":"alice","body":"hi alice"}`)
	n.nextType(2, "sent")
	if p := pushedPresence(t, n, 1, "bob"); p["online"] != true {
		t.Fatalf("alice got %v about bob, want online", p)
	}
	if p := pushedPresence(t, n, 2, "alice"); p["online"] != true {
		t.Fatalf("bob got %v about alice, want online", p)
	}
	if got := presenceOf(t, n, 2, "alice"); got["alice"]["online"] != true {
		t.Fatalf("bob asking: got %v, want alice online", got)
	}
	stranger(t, 3, "mallory", "alice")

	// Being added to a group is not consent: a group made to reach alice
	// shows nothing until she speaks in it.
	n.send(3, `{"type":"group_create","id":"g0","name":"bait","members":["alice"]}`)
	n.nextType(3, "msg") // the system message, then ok
	g0 := n.nextType(3, "ok")["chat"].(string)
	stranger(t, 3, "mallory", "alice")
	n.send(4, `{"type":"group_create","id":"g","name":"trip","members":["alice"]}`)
	n.nextType(4, "msg")
	g := n.nextType(4, "ok")["chat"].(string)
	stranger(t, 4, "carol", "alice")
	n.send(1, `{"type":"send","id":"ga","chat":"`+g+`","body":"hi all"}`)
	for m := n.next(1); m["type"] != "sent"; m = n.next(1) { // past the groups' system messages
	}
	// The shard notes alice as a sender just after it answers "sent": ask
	// again (round trips, no sleep) until that has happened.
	got := presenceOf(t, n, 4, "alice")
	for i := 0; i < 20 && got["alice"]["online"] != true; i++ {
		got = presenceOf(t, n, 4, "alice")
	}
	if got["alice"]["online"] != true {
		t.Fatalf("carol asking after alice spoke in their group: got %v, want alice online", got)
	}
	stranger(t, 3, "mallory", "alice") // she spoke in carol's group, not in mallory's
	_ = g0
	stranger(t, 3, "mallory", "carol")

	// Going offline is pushed to related users with last_seen.
	n.close(1)
	if p := pushedPresence(t, n, 2, "alice"); p["online"] != false || p["last_seen"] == float64(0) {
		t.Fatalf("bob got %v about alice, want offline with last_seen", p)
	}
	stranger(t, 3, "mallory", "alice")
}

// slowMessages blocks Messages until release is closed.
type slowMessages struct {
	*memStore
	entered chan struct{}
	release chan struct{}
}

func (s slowMessages) Messages(ctx context.Context, chat string, p record.Page) ([]record.Message, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return s.memStore.Messages(ctx, chat, p)
}

// TestSpokenReadDoesNotHideANotedSender: a sender the shard notes while a
// read of the chat is in flight is still known when the read ends (a read
// merges into what is known, it never overwrites it).
func TestSpokenReadDoesNotHideANotedSender(t *testing.T) {
	st := slowMessages{memStore: newMemStore(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := newRelations(st, time.Now)
	chat := record.DirectChatID("alice", "bob")
	r.noteSender(chat, "alice")
	done := make(chan bool)
	go func() {
		ok, err := r.hasSpoken(context.Background(), chat, 0, "alice", "bob")
		if err != nil {
			t.Error(err)
		}
		done <- ok
	}()
	<-st.entered
	if r.noteSender(chat, "bob") != formed {
		t.Fatal("bob's first message did not make the chat mutual")
	}
	close(st.release)
	<-done
	if ok, _ := r.hasSpoken(context.Background(), chat, 0, "alice", "bob"); !ok {
		t.Fatal("the read that began before bob spoke hid him afterwards")
	}
}

// TestRelationFormedAfterRestart: a node that never saw the first side
// speak (a restart, a lease move) still pushes presence when the reply
// makes the chat mutual.
func TestRelationFormedAfterRestart(t *testing.T) {
	st := newMemStore()
	first := startService(t, st)
	n1 := dialNode(t, first.LinkAddr())
	n1.open(1, "alice", "d")
	n1.send(1, `{"type":"send","id":"a1","to":"bob","body":"hi bob"}`)
	n1.nextType(1, "sent")

	second := startService(t, st) // the same store, no memory of alice's message
	n2 := dialNode(t, second.LinkAddr())
	n2.openSync(1, "alice", "d2", "")
	for m := n2.next(1); m["type"] != "synced"; m = n2.next(1) { // past her own message, caught up
	}
	n2.openSync(2, "bob", "d", "")
	for m := n2.next(2); m["type"] != "synced"; m = n2.next(2) {
	}
	n2.send(2, `{"type":"send","id":"b1","to":"alice","body":"hi alice"}`)
	n2.nextType(2, "sent")
	if p := pushedPresence(t, n2, 1, "bob"); p["online"] != true {
		t.Fatalf("alice got %v about bob, want online", p)
	}
	if p := pushedPresence(t, n2, 2, "alice"); p["online"] != true {
		t.Fatalf("bob got %v about alice, want online", p)
	}
}
