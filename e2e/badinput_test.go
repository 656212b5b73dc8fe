package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// brConn reads through the dialer's buffer: frames the server sent right
// after the handshake response may already sit there.
type brConn struct {
	net.Conn
	r io.Reader
}

func (c brConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// rawWS dials a WebSocket without any client logic.
func rawWS(ctx context.Context, url string) (net.Conn, error) {
	c, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	if br != nil {
		return brConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// rawConn is a bare WebSocket client for sending what the SDK never would.
type rawConn struct {
	t testing.TB
	c net.Conn
}

func (s *system) rawDial(user string) *rawConn {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rawWS(ctx, s.wsURL+"?token="+s.token(user, "raw", time.Hour))
	if err != nil {
		s.t.Fatalf("raw dial: %v", err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	r := &rawConn{t: s.t, c: c}
	if f := r.next(); f["type"] != "hello" {
		s.t.Fatalf("got %v, want hello", f)
	}
	return r
}

func (r *rawConn) send(text string) {
	r.t.Helper()
	if err := wsutil.WriteClientText(r.c, []byte(text)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next reads the next server text frame as JSON.
func (r *rawConn) next() map[string]any {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		b, op, err := wsutil.ReadServerData(r.c)
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if op != ws.OpText {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			r.t.Fatalf("server sent invalid JSON %q", b)
		}
		if m["type"] == "presence" {
			continue
		}
		return m
	}
}

// closeCode reads frames until the server's close frame and returns its
// code (without answering it: the server may have gone already).
func (r *rawConn) closeCode() ws.StatusCode {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		h, err := ws.ReadHeader(r.c)
		if err != nil || h.Length > 1<<20 {
			r.t.Fatalf("got %v (length %d), want a close frame", err, h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r.c, payload); err != nil {
			r.t.Fatalf("got %v, want a close frame", err)
		}
		if h.OpCode == ws.OpClose {
			code, _ := ws.ParseCloseFrameData(payload)
			return code
		}
	}
}

func TestMalformedJSONKeepsConnection(t *testing.T) {
	sys := startSystem(t, nil)
	r := sys.rawDial("alice")
	tests := []struct{ frame, code string }{
		{`{"type":"send","id":"x",`, "bad_request"},
		{`[1,2,3]`, "bad_request"},
		{`{"type":"send","id":"x","to":"bob","body":"hi","extra":1}`, "bad_request"},
		{`{"type":"teleport","id":"t1"}`, "unknown_type"},
		{`{"type":"send","id":"x","to":"bob","body":""}`, "bad_request"},
		{`{"type":"history","id":"h","chat":"dm:bob:carol"}`, "not_member"},
		{`{"type":"send","id":"x","chat":"g:missing","body":"hi"}`, "chat_not_found"},
	}
	for _, tt := range tests {
		r.send(tt.frame)
		m := r.next()
		if m["type"] != "error" || m["code"] != tt.code {
			t.Errorf("frame %s: got %v, want error %s", tt.frame, m, tt.code)
		}
	}
	r.send(`{"type":"send","id":"ok1","to":"bob","body":"still here"}`)
	if m := r.next(); m["type"] != "sent" || m["seq"] != float64(1) {
		t.Fatalf("got %v, want sent seq 1 after the bad frames", m)
	}
}

func TestOversizedFrameClosed(t *testing.T) {
	sys := startSystem(t, nil)
	r := sys.rawDial("alice")
	big := `{"type":"send","id":"x","to":"bob","body":"` + strings.Repeat("a", 70<<10) + `"}`
	// The frame may be refused before it is fully written: ignore write errors.
	_ = wsutil.WriteClientText(r.c, []byte(big))
	if code := r.closeCode(); code != ws.StatusMessageTooBig {
		t.Fatalf("got close %d, want 1009", code)
	}
	// Others are unaffected.
	ok := sys.rawDial("bob")
	ok.send(`{"type":"ping","id":"p"}`)
	if m := ok.next(); m["type"] != "pong" {
		t.Fatalf("got %v, want pong", m)
	}
}

func TestInvalidUTF8Closed(t *testing.T) {
	sys := startSystem(t, nil)
	r := sys.rawDial("alice")
	if err := wsutil.WriteClientText(r.c, []byte("{\"type\":\"ping\",\"id\":\"\xff\"}")); err != nil {
		t.Fatal(err)
	}
	if code := r.closeCode(); code != ws.StatusInvalidFramePayloadData {
		t.Fatalf("got close %d, want 1007", code)
	}
}

func TestBadTokensRefused(t *testing.T) {
	sys := startSystem(t, nil)
	other := sys.authCfg
	other.Secret = "another-secret-0123456789abcdef0123456789"
	tests := []struct {
		name, token string
	}{
		{"missing", ""},
		{"garbage", "not.a.jwt"},
		{"expired", sys.token("alice", "d", -time.Minute)},
		{"wrong secret", func() string {
			tok, _ := issueWith(other, "alice")
			return tok
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			url := sys.wsURL
			if tt.token != "" {
				url += "?token=" + tt.token
			}
			_, _, _, err := ws.Dialer{}.Dial(ctx, url)
			var se ws.StatusError
			if !errors.As(err, &se) || int(se) != http.StatusUnauthorized {
				t.Fatalf("got %v, want HTTP 401", err)
			}
		})
	}
}

func TestHTTPHistory(t *testing.T) {
	sys := startSystem(t, nil)
	ctx := ctxT(t)
	alice := sys.dial("alice", "d")
	var chat string
	for i := 0; i < 30; i++ {
		s, err := alice.SendTo(ctx, "bob", "m")
		if err != nil {
			t.Fatal(err)
		}
		chat = s.Chat
	}
	get := func(user, path string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sys.httpURL+path, nil)
		if user != "" {
			req.Header.Set("Authorization", "Bearer "+sys.token(user, "web", time.Hour))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: invalid JSON %q", path, body)
		}
		return resp.StatusCode, m
	}
	status, page := get("bob", "/v1/chats/"+chat+"/messages?before=21&limit=10")
	msgs, _ := page["messages"].([]any)
	if status != 200 || len(msgs) != 10 || msgs[0].(map[string]any)["seq"] != float64(11) || page["more"] != true {
		t.Fatalf("got %d %v, want seqs 11..20 with more", status, page)
	}
	status, page = get("bob", "/v1/chats/"+chat+"/messages?after=25")
	if msgs, _ := page["messages"].([]any); status != 200 || len(msgs) != 5 || page["more"] != false {
		t.Fatalf("got %d %v, want seqs 26..30 without more", status, page)
	}
	if status, _ := get("carol", "/v1/chats/"+chat+"/messages"); status != http.StatusForbidden {
		t.Fatalf("non-member: got %d, want 403", status)
	}
	if status, _ := get("", "/v1/chats/"+chat+"/messages"); status != http.StatusUnauthorized {
		t.Fatalf("no token: got %d, want 401", status)
	}
	if status, _ := get("bob", "/v1/chats/"+chat+"/messages?limit=500"); status != http.StatusBadRequest {
		t.Fatalf("limit 500: got %d, want 400", status)
	}
}
