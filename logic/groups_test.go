package logic

import (
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// TestGroupCreateRetry: a retried group_create answers with the original
// "created" seq; the same id with other members or another name is
// id_reused; a create whose event was never stored (the node died between
// the group row and the event) is completed by the retry. (Before, a retry
// answered ok without a seq, other members silently got the first group,
// and a lost event stayed lost.)
func TestGroupCreateRetry(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	create := func(id, name, members string) map[string]any {
		t.Helper()
		return n.answer(1, `{"type":"group_create","id":"`+id+`","name":"`+name+`","members":`+members+`}`)
	}
	if m := create("g1", "team", `["bob","carol"]`); m["type"] != "ok" || m["seq"] != float64(1) {
		t.Fatalf("create: got %v, want ok seq 1", m)
	}
	if m := create("g1", "team", `["carol","bob","bob"]`); m["type"] != "ok" || m["seq"] != float64(1) {
		t.Fatalf("retry: got %v, want ok seq 1", m)
	}
	for _, tc := range []struct{ name, members string }{{"team", `["bob"]`}, {"other", `["bob","carol"]`}} {
		if m := create("g1", tc.name, tc.members); m["type"] != "error" || m["code"] != "id_reused" || m["id"] != "g1" {
			t.Fatalf("same id, %s %s: got %v, want id_reused", tc.name, tc.members, m)
		}
	}

	fs.dropAppends.Store(true)
	if m := create("g2", "lost", `["bob"]`); m["type"] != "error" {
		t.Fatalf("create with the event refused: got %v, want an error", m)
	}
	fs.dropAppends.Store(false)
	m := create("g2", "lost", `["bob"]`)
	if m["type"] != "ok" || m["seq"] != float64(1) {
		t.Fatalf("retry of a create without its event: got %v, want ok seq 1", m)
	}
	n.send(1, `{"type":"history","id":"h","chat":"`+m["chat"].(string)+`"}`)
	h := n.nextType(1, "history")
	if msgs := h["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["kind"] != "system" {
		t.Fatalf("history after the completed create: %v, want the created event", h)
	}
}

// TestRemovedMemberGetsNoReceipts: a member removed from a group gets no
// receipts for the messages it sent before (nothing of the chat after its
// removal).
func TestRemovedMemberGetsNoReceipts(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	n.open(3, "carol", "d")
	n.send(1, `{"type":"group_create","id":"g","name":"g","members":["bob","carol"]}`)
	var chat string
	for chat == "" {
		if m := n.next(1); m["type"] == "ok" {
			chat = m["chat"].(string)
		}
	}
	n.send(3, `{"type":"send","id":"c1","chat":"`+chat+`","body":"hi"}`)
	for n.next(3)["type"] != "sent" { // after the "created" event
	}
	n.send(1, `{"type":"group_remove","id":"rm","chat":"`+chat+`","user":"carol"}`)
	// bob acks everything: the "created" event, carol's message, the removal.
	var last float64
	for last < 3 {
		if m := n.next(2); m["type"] == "msg" {
			last = m["seq"].(float64)
		}
	}
	n.send(2, `{"type":"ack","chat":"`+chat+`","seq":3}`)
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case m := <-n.ch(3):
			if m["type"] == "receipt" {
				t.Fatalf("carol, removed, got %v", m)
			}
		case <-deadline:
			return
		}
	}
}

// TestGroupChangeReusedID: a group change whose id names another message
// of the device is no way past the checks (before, any hit completed the
// "change" with no event: a member removed someone without being the
// creator); the creator gets id_reused; a retried leave answers ok with its
// event's seq though the user is gone.
func TestGroupChangeReusedID(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	n.open(3, "carol", "d")
	chat := n.answer(1, `{"type":"group_create","id":"g","name":"g","members":["bob","carol"]}`)["chat"].(string)
	if m := n.answer(2, `{"type":"send","id":"y","chat":"`+chat+`","body":"hi"}`); m["type"] != "sent" {
		t.Fatal(m)
	}
	if m := n.answer(2, `{"type":"group_remove","id":"y","chat":"`+chat+`","user":"carol"}`); m["type"] != "error" || m["code"] != "forbidden" {
		t.Fatalf("bob removing carol under his message's id: got %v, want forbidden", m)
	}
	if m := n.answer(1, `{"type":"send","id":"z","chat":"`+chat+`","body":"hey"}`); m["type"] != "sent" {
		t.Fatal(m)
	}
	if m := n.answer(1, `{"type":"group_remove","id":"z","chat":"`+chat+`","user":"carol"}`); m["type"] != "error" || m["code"] != "id_reused" {
		t.Fatalf("alice removing carol under her message's id: got %v, want id_reused", m)
	}
	if m := n.answer(1, `{"type":"members","id":"m","chat":"`+chat+`"}`); len(m["members"].([]any)) != 3 {
		t.Fatalf("members after the refused changes: %v, want all three", m)
	}
	left := n.answer(3, `{"type":"group_leave","id":"L","chat":"`+chat+`"}`)
	if left["type"] != "ok" || left["seq"] == nil {
		t.Fatalf("leave: got %v, want ok with a seq", left)
	}
	if m := n.answer(3, `{"type":"group_leave","id":"L","chat":"`+chat+`"}`); m["type"] != "ok" || m["seq"] != left["seq"] {
		t.Fatalf("retried leave: got %v, want ok seq %v", m, left["seq"])
	}
}

// TestGroupChangeLateRetry: a group change retried after a later change of
// the same user answers its own seq and does not undo the later change
// (before, a late retry of "add dave" after "remove dave" put dave back
// with no event).
func TestGroupChangeLateRetry(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	chat := n.answer(1, `{"type":"group_create","id":"g","name":"g","members":["bob"]}`)["chat"].(string)
	added := n.answer(1, `{"type":"group_add","id":"a","chat":"`+chat+`","user":"dave"}`)
	n.answer(1, `{"type":"group_remove","id":"b","chat":"`+chat+`","user":"dave"}`)
	if m := n.answer(1, `{"type":"group_add","id":"a","chat":"`+chat+`","user":"dave"}`); m["type"] != "ok" || m["seq"] != added["seq"] {
		t.Fatalf("late retry of the add: got %v, want ok seq %v", m, added["seq"])
	}
	m := n.answer(1, `{"type":"members","id":"m","chat":"`+chat+`"}`)
	for _, u := range m["members"].([]any) {
		if u == "dave" {
			t.Fatalf("members after a late retry of an undone add: %v, want no dave", m)
		}
	}
}

// TestGroupWithoutCreatedEvent: a group whose created event was never
// stored gets it before anything else, so seq 1 is always the created
// event, even when a member posts before the creator retries.
func TestGroupWithoutCreatedEvent(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	fs.dropAppends.Store(true)
	n.send(1, `{"type":"group_create","id":"g","name":"g","members":["bob"]}`)
	n.nextType(1, "error")
	fs.dropAppends.Store(false)
	chat := groupIDFor("alice", "g")
	n.send(2, `{"type":"send","id":"b1","chat":"`+chat+`","body":"first?"}`)
	var sent map[string]any
	for sent == nil {
		if m := n.next(2); m["type"] == "sent" {
			sent = m
		} else if m["type"] == "error" {
			t.Fatalf("bob's send: %v", m)
		}
	}
	if sent["seq"] != float64(2) {
		t.Fatalf("bob's send: got %v, want seq 2 (after the created event)", sent)
	}
	msgs, err := fs.Messages(t.Context(), chat, record.Page{Limit: 10})
	if err != nil || len(msgs) != 2 || msgs[0].Kind != record.MsgSystem || !strings.Contains(msgs[0].Body, `"created"`) {
		t.Fatalf("history: %+v, %v; want the created event at seq 1", msgs, err)
	}
	n.send(1, `{"type":"group_create","id":"g","name":"g","members":["bob"]}`)
	for {
		if m := n.next(1); m["type"] == "ok" {
			if m["seq"] != float64(1) {
				t.Fatalf("creator's retry: got %v, want ok seq 1", m)
			}
			break
		}
	}
}
