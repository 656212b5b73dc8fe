package logic

import "testing"

// TestAnsweredRequestsNeedAnID: a request that gets an answer is refused
// without an id (its answer could not be matched, and carried "id":"");
// ack, read and ping may omit it.
func TestAnsweredRequestsNeedAnID(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for _, f := range []string{
		`{"type":"send","to":"bob","body":"x"}`,
		`{"type":"history","chat":"dm:alice:bob"}`,
		`{"type":"chats"}`,
		`{"type":"members","chat":"dm:alice:bob"}`,
		`{"type":"presence","users":["bob"]}`,
		`{"type":"sync"}`,
		`{"type":"group_create","name":"g"}`,
		`{"type":"group_add","chat":"g:x","user":"bob"}`,
		`{"type":"group_remove","chat":"g:x","user":"bob"}`,
		`{"type":"group_leave","chat":"g:x"}`,
	} {
		n.send(1, f)
		if m := n.nextType(1, "error"); m["code"] != "bad_request" || m["id"] != nil {
			t.Errorf("%s: got %v, want bad_request without an id", f, m)
		}
	}
	n.send(1, `{"type":"ping"}`)
	n.nextType(1, "pong")
}
