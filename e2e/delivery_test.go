package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/internal/record"
)

// drainN reads n messages from c and checks they are seqs from..from+n-1 of
// chat, in order.
func drainN(t *testing.T, c *client.Client, chat string, from uint64, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		m := recv(t, c)
		if m.Chat != chat || m.Seq != from+uint64(i) {
			t.Fatalf("message %d: got %s #%d, want %s #%d", i, m.Chat, m.Seq, chat, from+uint64(i))
		}
	}
}

func TestOfflineRecipientAndNewDeviceSync(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice := sys.dial("alice", "phone")
	const n = 1200 // more than two delivery windows
	var chat string
	for i := 0; i < n; i++ {
		s, err := alice.SendTo(ctx, "bob", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		chat = s.Chat
	}
	_ = alice.Close() // alice goes offline before bob reads anything

	// bob logs in on his phone: everything arrives, in order, once.
	bob := sys.dial("bob", "phone")
	drainN(t, bob, chat, 1, n)
	if err := bob.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	chats, err := bob.Chats(ctx)
	if err != nil || len(chats) != 1 || chats[0].LastSeq != n {
		t.Fatalf("got chats %+v, %v", chats, err)
	}

	// A brand-new device of bob syncs the full history too.
	tablet := sys.dial("bob", "tablet")
	drainN(t, tablet, chat, 1, n)
	if err := tablet.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-tablet.Messages():
		t.Fatalf("got an extra message %s #%d", m.Chat, m.Seq)
	case <-time.After(300 * time.Millisecond):
	}

	// alice comes back: the receipts of both of bob's devices reach her.
	time.Sleep(200 * time.Millisecond) // let the last acks reach the store
	alice2 := sys.dial("alice", "phone")
	want := map[string]bool{"phone": false, "tablet": false}
	deadline := time.After(10 * time.Second)
	for !want["phone"] || !want["tablet"] {
		select {
		case r := <-alice2.Receipts():
			if r.User == "bob" && r.Chat == chat && r.Seq == n {
				want[r.Device] = true
			}
		case <-deadline:
			t.Fatalf("receipts seen for bob's devices: %v, want both at seq %d", want, n)
		}
	}
}

func TestResumeWithPositions(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice := sys.dial("alice", "d")
	bob := sys.dial("bob", "d")
	chat := record.DirectChatID("alice", "bob")
	for i := 0; i < 10; i++ {
		if _, err := alice.SendTo(ctx, "bob", fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	drainN(t, bob, chat, 1, 10)
	pos := bob.Positions()
	_ = bob.Close()
	for i := 10; i < 15; i++ {
		if _, err := alice.SendTo(ctx, "bob", fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A restarted app with its saved positions gets exactly the 5 it lacks.
	cfg := client.Default()
	cfg.URL, cfg.Token, cfg.Device, cfg.Resume = sys.wsURL, sys.token("bob", "d", time.Hour), "d", pos
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg.Observe = observeContract
	bob2, err := client.Dial(dctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bob2.Close()
	drainN(t, bob2, chat, 11, 5)
	if err := bob2.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if st := bob2.Stats(); st.Duplicates != 0 {
		t.Fatalf("got %d duplicates on the wire, want none (positions were given)", st.Duplicates)
	}
}
