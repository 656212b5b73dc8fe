package logic

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestIdempotencyPerDevice: request ids are scoped per device. Two devices
// of one user sending id "1" send two messages (before, the second got the
// first's "sent" and was never stored); the same id with another body from
// one device is refused with id_reused, from memory and, after a restart,
// from the store; a true retry gets the original seq.
func TestIdempotencyPerDevice(t *testing.T) {
	st := newMemStore()
	stop := make(chan struct{})
	svc := startServiceStoppable(t, st, stop)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "a1")
	n.open(2, "alice", "a2")
	n.open(3, "bob", "b1")
	sent := func(n *fakeNode, s uint64, frame string, want float64) {
		t.Helper()
		if m := n.answer(s, frame); m["type"] != "sent" || m["seq"] != want || m["id"] != "1" {
			t.Fatalf("%s: got %v, want sent seq %v", frame, m, want)
		}
	}
	reused := func(n *fakeNode, s uint64, frame string) {
		t.Helper()
		if m := n.answer(s, frame); m["type"] != "error" || m["code"] != "id_reused" || m["id"] != "1" {
			t.Fatalf("%s: got %v, want id_reused for id 1", frame, m)
		}
	}
	sent(n, 1, `{"type":"send","id":"1","to":"bob","body":"from a1"}`, 1)
	sent(n, 2, `{"type":"send","id":"1","to":"bob","body":"from a2"}`, 2)
	for _, want := range []string{"from a1", "from a2"} {
		if m := n.nextType(3, "msg"); m["body"] != want {
			t.Fatalf("bob got %v, want %q", m, want)
		}
	}
	reused(n, 1, `{"type":"send","id":"1","to":"bob","body":"changed"}`)
	sent(n, 1, `{"type":"send","id":"1","to":"bob","body":"from a1"}`, 1)

	close(stop)
	svc = startService(t, st)
	n = dialNode(t, svc.LinkAddr())
	for s, dev := range map[uint64]string{1: "a1", 2: "a2"} {
		n.openSync(s, "alice", dev, "")
		for n.next(s)["type"] != "synced" { // the chat's messages come first
		}
	}
	reused(n, 2, `{"type":"send","id":"1","to":"bob","body":"from a1"}`)
	sent(n, 2, `{"type":"send","id":"1","to":"bob","body":"from a2"}`, 2)
	sent(n, 1, `{"type":"send","id":"1","to":"bob","body":"from a1"}`, 1)
}

// TestRESTRetryOfWebSocketSend: a send that timed out on the WebSocket and
// is retried over REST with the same id and the session's device
// (?device=) is one message; without a device REST is the device "http".
func TestRESTRetryOfWebSocketSend(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "default")
	n.open(2, "alice", "tab")
	for _, s := range []uint64{1, 2} {
		n.send(s, `{"type":"send","id":"r1","to":"bob","body":"hi"}`)
		for n.next(s)["type"] != "sent" {
		}
	}
	post := func(query string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+svc.HTTPAddr()+"/v1/chats/dm:alice:bob/messages"+query,
			strings.NewReader(`{"id":"r1","body":"hi"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken(t, "alice", ""))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for query, want := range map[string]float64{"?device=default": 1, "?device=tab": 2, "": 3} {
		if code, m := post(query); code != http.StatusOK || m["seq"] != want {
			t.Fatalf("REST retry%s: got %d %v, want sent seq %v", query, code, m, want)
		}
	}
	if code, _ := post("?device=a/b"); code != http.StatusBadRequest {
		t.Fatalf("invalid device: got %d, want 400", code)
	}
}
