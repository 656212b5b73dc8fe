package logic

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
)

// recvMsgs reads n msg frames from session s and checks their seqs are
// from..from+n-1 in order.
func recvMsgs(t *testing.T, n *fakeNode, s uint64, chat string, from, count int) {
	t.Helper()
	for i := 0; i < count; i++ {
		m := n.nextType(s, "msg")
		if m["chat"] != chat || m["seq"] != float64(from+i) {
			t.Fatalf("session %d message %d: got %v, want %s seq %d", s, i, m, chat, from+i)
		}
	}
}

func TestOfflineRecipientGetsMessagesOnLogin(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for i := 0; i < 3; i++ {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"bob","body":"m%d"}`, i, i))
		n.nextType(1, "sent")
	}
	chat := record.DirectChatID("alice", "bob")
	n.openSync(2, "bob", "phone", "")
	recvMsgs(t, n, 2, chat, 1, 3)
	n.nextType(2, "synced")
	// Unread counts them.
	n.send(2, `{"type":"chats","id":"c"}`)
	c := n.nextType(2, "chats")["chats"].([]any)[0].(map[string]any)
	if c["unread"] != float64(3) {
		t.Fatalf("got %v, want 3 unread", c)
	}
}

func TestSyncPositionsSkipWhatTheDeviceHas(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for i := 0; i < 5; i++ {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"bob","body":"m%d"}`, i, i))
		n.nextType(1, "sent")
	}
	chat := record.DirectChatID("alice", "bob")
	n.openSync(2, "bob", "phone", `{"`+chat+`":3}`)
	recvMsgs(t, n, 2, chat, 4, 2)
	n.nextType(2, "synced")
}

func TestRetransmitUnacked(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) { c.RetransmitTimeout = 200 * time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	n.send(1, `{"type":"send","id":"r","to":"bob","body":"hello"}`)
	n.nextType(1, "sent")
	chat := record.DirectChatID("alice", "bob")
	recvMsgs(t, n, 2, chat, 1, 1)
	recvMsgs(t, n, 2, chat, 1, 1) // not acked: pushed again
	n.send(2, `{"type":"ack","chat":"`+chat+`","seq":1}`)
	n.nextType(1, "receipt")
	select {
	case m := <-n.ch(2):
		if m["type"] == "msg" {
			t.Fatalf("got %v after the ack, want no more retransmits", m)
		}
	case <-time.After(500 * time.Millisecond):
	}
}

func TestWindowAndNewDeviceFullSync(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st, func(c *Config) { c.DeliveryWindow, c.MarksInterval = 100, 10*time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	const total = 450
	for i := 0; i < total; i++ {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"bob","body":"m%d"}`, i, i))
	}
	for i := 0; i < total; i++ {
		n.nextType(1, "sent")
	}
	chat := record.DirectChatID("alice", "bob")
	n.openSync(2, "bob", "new-phone", "")
	for from := 1; from <= total; from += 100 {
		count := min(100, total-from+1)
		recvMsgs(t, n, 2, chat, from, count)
		if from+count > total {
			n.nextType(2, "synced") // everything is out; the last ack is still due
		}
		select { // the window is full: nothing more until the ack
		case m := <-n.ch(2):
			if m["type"] == "msg" {
				t.Fatalf("got %v beyond the window", m)
			}
		case <-time.After(100 * time.Millisecond):
		}
		n.send(2, fmt.Sprintf(`{"type":"ack","chat":"%s","seq":%d}`, chat, from+count-1))
	}
	eventually(t, 5*time.Second, func() (bool, string) { // the marks writer stores the last ack
		got, err := st.DeviceCursor(t.Context(), "bob", "new-phone", chat)
		return got == total, fmt.Sprintf("stored cursor %d (%v), want %d", got, err, total)
	})
}

// ackedHi: alice (session 1) sends bob "hi" and goes offline; bob's phone
// (session 2) receives it and acks it. It returns the chat.
func ackedHi(t *testing.T, n *fakeNode) string {
	t.Helper()
	n.open(1, "alice", "d")
	n.send(1, `{"type":"send","id":"r","to":"bob","body":"hi"}`)
	n.nextType(1, "sent")
	n.close(1)
	chat := record.DirectChatID("alice", "bob")
	n.openSync(2, "bob", "phone", "")
	recvMsgs(t, n, 2, chat, 1, 1)
	n.send(2, `{"type":"ack","chat":"`+chat+`","seq":1}`)
	return chat
}

func TestReceiptsReachOfflineSender(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st)
	n := dialNode(t, svc.LinkAddr())
	chat := ackedHi(t, n)
	eventually(t, 5*time.Second, func() (bool, string) {
		// The ack is taken: its cursor waits in the marks writer or is
		// stored (the sync below reads both, the writer first).
		got := svc.marks.Get(record.MarkCursor, "bob", "phone", chat)
		if got == 0 {
			got, _ = st.DeviceCursor(t.Context(), "bob", "phone", chat)
		}
		return got == 1, fmt.Sprintf("bob/phone's cursor is %d, want 1", got)
	})
	n.openSync(3, "alice", "d", `{"`+chat+`":1}`)
	r := n.nextType(3, "receipt")
	if r["user"] != "bob" || r["device"] != "phone" || r["seq"] != float64(1) {
		t.Fatalf("got %v, want bob/phone's receipt for seq 1", r)
	}
}

type recordingNotifier struct {
	mu  sync.Mutex
	evs []PushEvent
}

func (r *recordingNotifier) Notify(_ context.Context, ev PushEvent) error {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	return nil
}

func TestPushEventForOfflineRecipient(t *testing.T) {
	rn := &recordingNotifier{}
	svc := startService(t, newMemStore(), func(*Config) {})
	svc.SetNotifier(rn)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.send(1, `{"type":"send","id":"r","to":"bob","body":"are you there?"}`)
	n.nextType(1, "sent")
	var evs []PushEvent
	eventually(t, 5*time.Second, func() (bool, string) {
		rn.mu.Lock()
		evs = append(evs[:0], rn.evs...)
		rn.mu.Unlock()
		return len(evs) > 0, "no push event"
	})
	if len(evs) > 1 {
		t.Fatalf("got %d push events, want 1: %+v", len(evs), evs)
	}
	if ev := evs[0]; ev.Recipient != "bob" || ev.Seq != 1 || ev.Preview != "are you there?" || ev.Sender != "alice" {
		t.Fatalf("got %+v", ev)
	}
}

// TestIdleSessionsLeaveTheDeliveryLoop checks that the delivery loop only
// keeps sessions with work: once every push is acked and every grace is
// over, it watches none (its cost follows traffic, not connections).
func TestIdleSessionsLeaveTheDeliveryLoop(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) {
		c.RetransmitTimeout = 200 * time.Millisecond
		c.SyncGrace = 100 * time.Millisecond
	})
	n := dialNode(t, svc.LinkAddr())
	// Session 1 never syncs: its delivery is started by the grace.
	n.write(tierlink.AppendOpen(nil, 1, tierlink.Open{User: "alice", Device: "d", Remote: "127.0.0.1:1"}))
	n.nextType(1, "hello")
	n.nextType(1, "synced") // after the grace, unasked
	n.openSync(2, "bob", "d", "")
	n.nextType(2, "synced")
	for i := uint64(3); i < 40; i++ {
		n.open(i, fmt.Sprintf("idle%d", i), "d")
	}
	n.send(1, `{"type":"send","id":"r","to":"bob","body":"hello"}`)
	n.nextType(1, "sent")
	chat := record.DirectChatID("alice", "bob")
	recvMsgs(t, n, 2, chat, 1, 1)
	watched := func() (grace, busy int) {
		svc.dwatch.mu.Lock()
		defer svc.dwatch.mu.Unlock()
		return len(svc.dwatch.grace), len(svc.dwatch.busy)
	}
	if _, busy := watched(); busy == 0 {
		t.Fatal("got no watched session with an unacked push")
	}
	n.send(2, `{"type":"ack","chat":"`+chat+`","seq":1}`)
	n.nextType(1, "receipt")
	eventually(t, 10*time.Second, func() (bool, string) {
		grace, busy := watched()
		return grace == 0 && busy == 0, fmt.Sprintf("after every ack and grace: %d sessions in grace, %d busy; want none", grace, busy)
	})
}

// TestRetransmitNeverBelowTheDeviceAck: two connections of one device; the
// device acks everything on one, the other never acks. The silent one must
// not be sent those messages again after the retransmit timeout (before,
// it re-sent from seq 1, going backwards on its connection).
func TestRetransmitNeverBelowTheDeviceAck(t *testing.T) {
	svc := startService(t, newMemStore(), func(c *Config) { c.RetransmitTimeout = 200 * time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "nd")
	n.open(3, "bob", "nd")
	const total = 16
	for i := range total {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"m%d","to":"bob","body":"m%d"}`, i, i))
		n.nextType(1, "sent")
	}
	var chat string
	for _, s := range []uint64{2, 3} {
		for seq := 1; seq <= total; seq++ {
			m := n.nextType(s, "msg")
			if m["seq"] != float64(seq) {
				t.Fatalf("session %d: got %v, want seq %d", s, m, seq)
			}
			chat = m["chat"].(string)
		}
	}
	n.send(2, fmt.Sprintf(`{"type":"ack","chat":%q,"seq":%d}`, chat, total))
	deadline := time.After(4 * svc.cfg.RetransmitTimeout)
	for {
		select {
		case m := <-n.ch(3):
			if m["type"] == "msg" {
				t.Fatalf("session 3 got %s #%v again after its device acked %d on session 2", m["chat"], m["seq"], total)
			}
		case <-deadline:
			return
		}
	}
}
