package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/record"
)

func TestDirectChatBothWays(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice, bob := sys.dial("alice", "phone"), sys.dial("bob", "laptop")
	alice2 := sys.dial("alice", "laptop")

	sent, err := alice.SendTo(ctx, "bob", "hi bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := record.DirectChatID("alice", "bob"); sent.Chat != want || sent.Seq != 1 {
		t.Fatalf("got sent %+v, want chat %s seq 1", sent, want)
	}
	for _, c := range []*client.Client{bob, alice2} {
		m := recv(t, c)
		if m.Body != "hi bob" || m.From != "alice" || m.Seq != 1 {
			t.Fatalf("got %+v, want alice's message seq 1", m)
		}
	}
	reply, err := bob.Send(ctx, sent.Chat, "hi alice")
	if err != nil {
		t.Fatal(err)
	}
	if reply.Seq != 2 {
		t.Fatalf("got seq %d, want 2", reply.Seq)
	}
	if m := recv(t, alice); m.Body != "hi alice" || m.Seq != 2 {
		t.Fatalf("got %+v", m)
	}
	// bob's SDK acked seq 1: alice gets a delivered receipt.
	select {
	case r := <-alice.Receipts():
		if r.User != "bob" || r.Seq < 1 || r.Chat != sent.Chat {
			t.Fatalf("got receipt %+v, want bob's for seq 1", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivered receipt within 10s")
	}
	chats, err := alice.Chats(ctx)
	if err != nil || len(chats) != 1 || chats[0].LastSeq != 2 || chats[0].Unread != 1 {
		t.Fatalf("got chats %+v, %v; want one chat with last_seq 2 and 1 unread (bob's)", chats, err)
	}
	if err := alice.MarkRead(ctx, sent.Chat, 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		chats, err = alice.Chats(ctx)
		if err == nil && len(chats) == 1 && chats[0].Unread == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after read: got %+v, %v; want 0 unread", chats, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGroupFanoutAndOrder(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice := sys.dial("alice", "d1")
	members := []*client.Client{sys.dial("bob", "d1"), sys.dial("bob", "d2"), sys.dial("carol", "d1"), sys.dial("alice", "d2")}
	chat, err := alice.CreateGroup(ctx, "trip", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := alice.Send(ctx, chat, fmt.Sprintf("m%d", i)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for _, c := range members {
		var last uint64
		for i := 0; i < n; i++ {
			m := recv(t, c)
			if m.Body != fmt.Sprintf("m%d", i) || m.Seq <= last || (last != 0 && m.Seq != last+1) {
				t.Fatalf("device %s: message %d got %q seq %d after %d", c.Hello().Device, i, m.Body, m.Seq, last)
			}
			last = m.Seq
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	msgs, more, err := alice.History(ctx, chat, client.HistoryQuery{Limit: 200})
	if err != nil || len(msgs) != 200 || !more || msgs[199].Seq != n+1 {
		t.Fatalf("got %d messages (more %v, err %v), want the newest 200 ending at %d", len(msgs), more, err, n+1)
	}
}

func TestGroupMembership(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice, bob, carol, dave := sys.dial("alice", "d"), sys.dial("bob", "d"), sys.dial("carol", "d"), sys.dial("dave", "d")
	chat, err := alice.CreateGroup(ctx, "g", []string{"bob", "carol"})
	if err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := dave.Send(ctx, chat, "let me in"); !errors.As(err, &ce) || ce.Code != client.CodeNotMember {
		t.Fatalf("got %v, want not_member for a non-member", err)
	}
	if _, err := alice.AddMember(ctx, chat, "dave"); err != nil {
		t.Fatal(err)
	}
	if _, err := dave.Send(ctx, chat, "thanks"); err != nil {
		t.Fatalf("dave after being added: %v", err)
	}
	for _, c := range []*client.Client{bob, carol} {
		if m := recv(t, c); m.Body != "thanks" {
			t.Fatalf("got %+v", m)
		}
	}
	if _, err := bob.RemoveMember(ctx, chat, "carol"); !errors.As(err, &ce) || ce.Code != client.CodeForbidden {
		t.Fatalf("got %v, want forbidden (only admins remove)", err)
	}
	if _, err := carol.Leave(ctx, chat); err != nil {
		t.Fatal(err)
	}
	got, err := alice.Members(ctx, chat)
	if err != nil || fmt.Sprint(got) != "[alice bob dave]" {
		t.Fatalf("got members %v, %v", got, err)
	}
	// Roles: alice (the creator) makes bob admin; bob may then remove;
	// alice leaving leaves bob; bob, the last admin, leaving makes dave
	// (the oldest member left) admin.
	if _, err := alice.SetRole(ctx, chat, "bob", client.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if g, err := dave.GroupMembers(ctx, chat); err != nil || fmt.Sprint(g.Admins) != "[alice bob]" || g.Creator != "alice" {
		t.Fatalf("got %+v, %v, want admins alice and bob, creator alice", g, err)
	}
	if _, err := bob.RemoveMember(ctx, chat, "alice"); !errors.As(err, &ce) || ce.Code != client.CodeForbidden {
		t.Fatalf("got %v, want forbidden (the creator cannot be removed)", err)
	}
	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Leave(ctx, chat); err != nil {
			t.Fatal(err)
		}
	}
	if g, err := dave.GroupMembers(ctx, chat); err != nil || fmt.Sprint(g.Admins) != "[dave]" || g.Creator != "" {
		t.Fatalf("got %+v, %v, want dave the admin", g, err)
	}
	if _, _, err := carol.History(ctx, chat, client.HistoryQuery{}); !errors.As(err, &ce) || ce.Code != client.CodeNotMember {
		t.Fatalf("got %v, want not_member after leaving", err)
	}
}

func TestIdempotentResend(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice, bob := sys.dial("alice", "d"), sys.dial("bob", "d")
	first, err := alice.SendWithID(ctx, "req-1", "bob", "once")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, err := alice.SendWithID(ctx, "req-1", "bob", "once")
		if err != nil || again.Seq != first.Seq || !again.Time.Equal(first.Time) {
			t.Fatalf("resend %d: got %+v, %v; want the original %+v", i, again, err, first)
		}
	}
	// A fresh connection (as after a reconnect) gets the same answer.
	alice2 := sys.dial("alice", "d")
	again, err := alice2.SendWithID(ctx, "req-1", first.Chat, "once")
	if err != nil || again.Seq != first.Seq {
		t.Fatalf("resend on a new connection: got %+v, %v", again, err)
	}
	if m := recv(t, bob); m.Seq != 1 {
		t.Fatalf("got %+v", m)
	}
	if last, _ := sys.store.LastSeq(ctx, first.Chat); last != 1 {
		t.Fatalf("store holds %d messages, want 1", last)
	}
	select {
	case m := <-bob.Messages():
		t.Fatalf("bob got a second copy %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPresencePush(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice := sys.dial("alice", "d")
	bob := sys.dial("bob", "d")
	if _, err := alice.SendTo(ctx, "bob", "hi"); err != nil {
		t.Fatal(err)
	}
	recv(t, bob)
	// A first message is a request: bob's presence stays hidden from alice
	// (answered like an id no one uses) until he answers.
	p, err := alice.Presence(ctx, "bob", "nobody")
	if err != nil || p[0].Online || p[1].Online || !p[0].LastSeen.IsZero() {
		t.Fatalf("before bob answered: got %+v, %v; want both offline and never seen", p, err)
	}
	if _, err := bob.SendTo(ctx, "alice", "hi back"); err != nil {
		t.Fatal(err)
	}
	recv(t, alice)
	p, err = alice.Presence(ctx, "bob", "nobody")
	if err != nil || !p[0].Online || p[1].Online {
		t.Fatalf("got %+v, %v; want bob online, nobody offline", p, err)
	}
	_ = bob.Close()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-alice.PresenceEvents():
			if ev.User == "bob" && !ev.Online {
				if ev.LastSeen.IsZero() {
					t.Fatal("offline event without last_seen")
				}
				return
			}
		case <-deadline:
			t.Fatal("no offline presence push for bob")
		}
	}
}
