package pushtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/notifier/webpush"
)

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newSender(t *testing.T, s *Server) (*webpush.Sender, *webpush.VAPID) {
	t.Helper()
	v, err := webpush.GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	snd, err := webpush.NewSender(v, "mailto:ops@example.com", s.Client())
	if err != nil {
		t.Fatal(err)
	}
	return snd, v
}

// TestRoundTrip: the webpush sender's pushes arrive decrypted, with a
// verified VAPID token, over HTTP and HTTPS.
func TestRoundTrip(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) {
			s := NewServer()
			if tls {
				s = NewTLSServer()
			}
			defer s.Close()
			snd, v := newSender(t, s)
			s.SetVAPIDKey(v.PublicKey())
			subs := []string{"phone", "laptop"}
			for i, d := range subs {
				sub := s.Subscribe("alice", d)
				if !strings.HasPrefix(sub.Endpoint, s.URL()+"/push/") {
					t.Fatalf("endpoint %q is not on %s", sub.Endpoint, s.URL())
				}
				msg := webpush.Message{Payload: []byte(`{"n":` + string(rune('0'+i)) + `}`), TTL: time.Minute, Urgency: webpush.UrgencyHigh}
				if r := snd.Send(t.Context(), sub, msg); r.Outcome != webpush.Delivered || r.Status != 201 {
					t.Fatalf("Send: got %v %d %v, want delivered 201", r.Outcome, r.Status, r.Err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			got, err := s.WaitFor(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := range got {
				if want := `{"n":` + string(rune('0'+i)) + `}`; string(p.Plaintext) != want || p.Sub.Device != subs[i] {
					t.Fatalf("push %d: got %q for %s, want %q for %s", i, p.Plaintext, p.Sub.Device, want, subs[i])
				}
				if p.Claims.Aud != s.URL() || p.Claims.Sub != "mailto:ops@example.com" || p.Header.Get("Urgency") != "high" || p.Header.Get("TTL") != "60" {
					t.Fatalf("push %d: claims %+v, headers %v", i, p.Claims, p.Header)
				}
			}
			if r := s.Rejected(); len(r) != 0 {
				t.Fatalf("Rejected: got %+v, want none", r)
			}
		})
	}
}

// TestChecks: what the server refuses, and the failures it injects.
func TestChecks(t *testing.T) {
	s := NewServer()
	defer s.Close()
	snd, v := newSender(t, s)
	other, _ := newSender(t, s)
	msg := webpush.Message{Payload: []byte("x"), TTL: time.Minute}

	gone := s.Subscribe("bob", "old")
	s.Unsubscribe(gone.Endpoint)
	flaky := s.Subscribe("bob", "flaky")
	s.Fail(flaky.Endpoint, 500, 2)
	dead := s.Subscribe("bob", "dead")
	s.Fail(dead.Endpoint, 410, -1)
	busy := s.Subscribe("bob", "busy")
	s.Fail(busy.Endpoint, 429, 1)
	fine := s.Subscribe("bob", "fine")

	tests := []struct {
		name   string
		snd    *webpush.Sender
		sub    string
		want   webpush.Outcome
		status int
	}{
		{"unsubscribed", snd, gone.Endpoint, webpush.Gone, 404},
		{"flaky 1", snd, flaky.Endpoint, webpush.Retryable, 500},
		{"flaky 2", snd, flaky.Endpoint, webpush.Retryable, 500},
		{"flaky 3", snd, flaky.Endpoint, webpush.Delivered, 201},
		{"dead 1", snd, dead.Endpoint, webpush.Gone, 410},
		{"dead 2", snd, dead.Endpoint, webpush.Gone, 410},
		{"busy", snd, busy.Endpoint, webpush.Retryable, 429},
		{"busy then fine", snd, busy.Endpoint, webpush.Delivered, 201},
		{"any key before SetVAPIDKey", other, fine.Endpoint, webpush.Delivered, 201},
	}
	all := map[string]record.PushSubscription{gone.Endpoint: gone, flaky.Endpoint: flaky, dead.Endpoint: dead, busy.Endpoint: busy, fine.Endpoint: fine}
	for _, tc := range tests {
		r := tc.snd.Send(t.Context(), all[tc.sub], msg)
		if r.Outcome != tc.want || r.Status != tc.status {
			t.Fatalf("%s: got %v %d (%v), want %v %d", tc.name, r.Outcome, r.Status, r.Err, tc.want, tc.status)
		}
	}
	if n := len(s.Received()); n != 3 {
		t.Fatalf("Received: got %d, want 3", n)
	}

	// The expected key: another key is refused with 403.
	s.SetVAPIDKey(v.PublicKey())
	if r := other.Send(t.Context(), fine, msg); r.Outcome != webpush.Permanent || r.Status != 403 {
		t.Fatalf("wrong key: got %v %d, want permanent 403", r.Outcome, r.Status)
	}

	// Hand-made requests that fail the checks.
	body, _ := webpush.Encrypt([]byte("x"), mustB64(t, fine.P256dh), mustB64(t, fine.Auth))
	tok := func(aud string, exp time.Duration) string {
		tk, err := v.Token(webpush.Claims{Aud: aud, Exp: time.Now().Add(exp).Unix(), Sub: "mailto:a@b.c"})
		if err != nil {
			t.Fatal(err)
		}
		return v.Authorization(tk)
	}
	raw := []struct {
		name   string
		authz  string
		ttl    string
		ce     string
		body   []byte
		status int
	}{
		{"no authorization", "", "60", "aes128gcm", body, 401},
		{"wrong audience", tok("https://push.example", time.Hour), "60", "aes128gcm", body, 401},
		{"expired", tok(s.URL(), -time.Minute), "60", "aes128gcm", body, 401},
		{"exp too far", tok(s.URL(), 25*time.Hour), "60", "aes128gcm", body, 401},
		{"no TTL", tok(s.URL(), time.Hour), "", "aes128gcm", body, 400},
		{"old coding", tok(s.URL(), time.Hour), "60", "aesgcm", body, 400},
		{"garbled body", tok(s.URL(), time.Hour), "60", "aes128gcm", bytes.Repeat([]byte{1}, 120), 400},
		{"valid", tok(s.URL(), time.Hour), "60", "aes128gcm", body, 201},
	}
	for _, tc := range raw {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", fine.Endpoint, bytes.NewReader(tc.body))
		for h, v := range map[string]string{"Authorization": tc.authz, "TTL": tc.ttl, "Content-Encoding": tc.ce} {
			if v != "" {
				req.Header.Set(h, v)
			}
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: got %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	// 403 + the seven refused hand-made requests.
	if n := len(s.Rejected()); n != 8 {
		t.Fatalf("Rejected: got %d, want 8: %+v", n, s.Rejected())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if got, err := s.WaitFor(ctx, 99); err == nil || len(got) != 4 {
		t.Fatalf("WaitFor(99): got %d, %v, want 4 and a ctx error", len(got), err)
	}
}
