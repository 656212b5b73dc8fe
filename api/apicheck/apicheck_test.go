package apicheck

import (
	"testing"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// TestFrames: frames the server's encoders produce pass, and frames that
// break the contract fail, so the check can fail.
func TestFrames(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	m := record.Message{ChatID: "dm:alice:bob", Seq: 3, Sender: "alice", Device: "d1", RequestID: "r1", TS: 1, Kind: record.MsgText, Body: "hi"}
	good := [][]byte{
		proto.AppendSent(nil, "r1", "dm:alice:bob", 3, 1),
		proto.AppendMsg(nil, &m),
		proto.AppendReceipt(nil, "g:x", "bob", "d", 3),
		proto.AppendError(nil, "r1", &proto.Error{Code: proto.CodeRateLimited, Message: "slow", RetryAfterMS: 50}),
		proto.AppendError(nil, "", &proto.Error{Code: proto.CodeBadRequest, Message: "bad", NullID: true}),
		proto.AppendHello(nil, "alice", "d1", 42, 30000),
		proto.AppendOK(nil, "g1", "g:abc", 1),
		proto.AppendPong(nil, "", 5),
		proto.AppendHistory(nil, "h", "g:x", []record.Message{m}, true),
		proto.AppendSynced(nil, ""),
		proto.AppendGoaway(nil, 500, ""),
	}
	for _, f := range good {
		if err := c.ServerFrame(f); err != nil {
			t.Errorf("%v", err)
		}
	}
	bad := []string{
		`{"type":"sent","id":"r1","chat":"dm:alice:bob","seq":0,"ts":1}`, // seq 0
		`{"type":"sent","id":"r1","chat":"dm:alice:bob","seq":1}`,        // no ts
		`{"type":"msg","chat":"bogus","seq":1,"from":"a","device":"d","ts":1,"kind":"text","body":"x"}`,
		`{"type":"receipt","chat":"g:x","user":"b","device":"d","seq":1,"status":"read"}`, // unknown status
		`{"type":"ok","id":"x","extra":1}`,                                                // unknown field
		`{"type":"error","code":"nope","message":"x","retryable":false}`,                  // unknown code
		`{"type":"whatever"}`,
		`[]`,
	}
	for _, f := range bad {
		if err := c.ServerFrame([]byte(f)); err == nil {
			t.Errorf("server frame %s passed", f)
		}
	}
	goodClient := []string{
		`{"type":"send","id":"r1","to":"bob","body":"hi"}`,
		`{"type":"send","id":"r1","chat":"g:x","body":"hi"}`,
		`{"type":"ack","chat":"g:x","seq":3}`,
		`{"type":"history","id":"h","chat":"g:x","after":0,"limit":2}`,
		`{"type":"sync","id":"s","chats":{"dm:a:b":3}}`,
		`{"type":"ping"}`,
	}
	for _, f := range goodClient {
		if err := c.ClientFrame([]byte(f)); err != nil {
			t.Errorf("%v", err)
		}
	}
	badClient := []string{
		`{"type":"send","id":"r1","to":"bob","chat":"g:x","body":"hi"}`, // both chat and to
		`{"type":"send","id":"r 1","to":"bob","body":"hi"}`,             // bad id
		`{"type":"history","id":"h","chat":"g:x","before":3,"after":1}`,
		`{"type":"ack","chat":"g:x"}`,
		`{"TYPE":"ping"}`,
	}
	for _, f := range badClient {
		if err := c.ClientFrame([]byte(f)); err == nil {
			t.Errorf("client frame %s passed", f)
		}
	}
	if n := c.ServerFrames.Load() + c.ClientFrames.Load(); n != int64(len(good)+len(goodClient)) {
		t.Errorf("counted %d valid frames, want %d", n, len(good)+len(goodClient))
	}
}

// TestHTTP: routes, statuses and bodies are checked against openapi.json.
func TestHTTP(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
		ok           bool
	}{
		{"GET", "/v1/chats", 200, `{"chats":[{"chat":"dm:a:b","kind":"direct","members":["a","b"],"last_seq":2,"read_seq":1,"unread":1}]}`, true},
		{"GET", "/v1/chats", 200, `{"chats":[{"chat":"dm:a:b"}]}`, false},
		{"GET", "/v1/chats/dm:a:b/messages", 200, `{"chat":"dm:a:b","messages":[],"more":false}`, true},
		{"POST", "/v1/chats/dm:a:b/messages", 409, `{"error":{"code":"id_reused","message":"x","retryable":false,"id":"r1"}}`, true},
		{"POST", "/v1/chats/dm:a:b/messages", 409, `{"type":"error","code":"id_reused","message":"x","retryable":false}`, false},
		{"GET", "/v1/chats/dm:a:b/messages", 418, `{}`, false},
		{"GET", "/v1/nope", 200, `{}`, false},
		{"GET", "/v1/nope", 404, `{"error":{"code":"not_found","message":"no such endpoint","retryable":false}}`, true},
		{"DELETE", "/v1/chats", 200, `{}`, false},
		{"DELETE", "/v1/chats", 404, `{"detail":"nope"}`, false},
	} {
		err := c.HTTPResponse(tc.method, tc.path, tc.status, "application/json", []byte(tc.body))
		if (err == nil) != tc.ok {
			t.Errorf("%s %s %d %s: got %v, want ok=%v", tc.method, tc.path, tc.status, tc.body, err, tc.ok)
		}
	}
	if err := c.HTTPResponse("GET", "/healthz", 200, "text/plain", []byte("ok\n")); err != nil {
		t.Error(err)
	}
}
