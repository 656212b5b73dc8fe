package webpush

import (
	"crypto/ecdh"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// TestSendOutcomes maps push service answers to outcomes, and checks what
// the request carries.
func TestSendOutcomes(t *testing.T) {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	authSecret := make([]byte, AuthSize)
	rand.Read(authSecret)
	v, _ := GenerateVAPID()

	var mu sync.Mutex
	var last *http.Request
	var lastBody []byte
	status, retryAfter := 201, ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last, lastBody = r, b
		st, ra := status, retryAfter
		mu.Unlock()
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(st)
		_, _ = io.WriteString(w, "answer "+strconv.Itoa(st))
	}))
	defer srv.Close()
	sub := record.PushSubscription{User: "alice", Device: "phone", Endpoint: srv.URL + "/push/abc",
		P256dh: b64.EncodeToString(ua.PublicKey().Bytes()), Auth: b64.EncodeToString(authSecret)}
	s, err := NewSender(v, "mailto:ops@example.com", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	msg := Message{Payload: []byte(`{"chat":"g:a"}`), TTL: 90 * time.Second, Urgency: UrgencyHigh, Topic: "g-a"}

	tests := []struct {
		name       string
		status     int
		retryAfter string
		want       Outcome
		wantRA     time.Duration
	}{
		{"created", 201, "", Delivered, 0},
		{"ok", 200, "", Delivered, 0},
		{"not found", 404, "", Gone, 0},
		{"gone", 410, "", Gone, 0},
		{"too many", 429, "7", Retryable, 7 * time.Second},
		{"server error", 500, "", Retryable, 0},
		{"unavailable", 503, "2", Retryable, 2 * time.Second},
		{"bad request", 400, "", Permanent, 0},
		{"forbidden", 403, "", Permanent, 0},
		{"too large", 413, "", Permanent, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			status, retryAfter = tc.status, tc.retryAfter
			mu.Unlock()
			r := s.Send(t.Context(), sub, msg)
			if r.Outcome != tc.want || r.Status != tc.status || r.RetryAfter != tc.wantRA {
				t.Fatalf("Send: got %v status %d retry-after %v (%v), want %v %d %v", r.Outcome, r.Status, r.RetryAfter, r.Err, tc.want, tc.status, tc.wantRA)
			}
			if (r.Err == nil) != (tc.want == Delivered) {
				t.Fatalf("Send: got err %v for %v", r.Err, r.Outcome)
			}
		})
	}

	mu.Lock()
	req, body := last, lastBody
	mu.Unlock()
	for h, want := range map[string]string{"Content-Encoding": "aes128gcm", "TTL": "90", "Urgency": "high", "Topic": "g-a"} {
		if got := req.Header.Get(h); got != want {
			t.Errorf("header %s: got %q, want %q", h, got, want)
		}
	}
	tok, key, err := ParseAuthorization(req.Header.Get("Authorization"))
	if err != nil || key != v.PublicKey() {
		t.Fatalf("Authorization: got key %q, %v, want %q", key, err, v.PublicKey())
	}
	if c, err := VerifyToken(tok, key, srv.URL, time.Now()); err != nil || c.Sub != "mailto:ops@example.com" {
		t.Fatalf("VerifyToken: got %+v, %v", c, err)
	}
	if plain, err := Decrypt(body, ua, authSecret); err != nil || string(plain) != string(msg.Payload) {
		t.Fatalf("Decrypt: got %q, %v, want %q", plain, err, msg.Payload)
	}

	// Problems before the request are permanent; no answer is retryable.
	bad := sub
	bad.P256dh = "AAAA"
	if r := s.Send(t.Context(), bad, msg); r.Outcome != Permanent {
		t.Fatalf("Send(bad key): got %v, want permanent", r.Outcome)
	}
	if r := s.Send(t.Context(), sub, Message{Topic: "no spaces allowed"}); r.Outcome != Permanent {
		t.Fatalf("Send(bad topic): got %v, want permanent", r.Outcome)
	}
	srv.Close()
	if r := s.Send(t.Context(), sub, msg); r.Outcome != Retryable || r.Err == nil {
		t.Fatalf("Send(closed server): got %v, %v, want retryable", r.Outcome, r.Err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"120", 2 * time.Minute},
		{"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q): got %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidTopic(t *testing.T) {
	tests := []struct {
		topic string
		ok    bool
	}{{"a", true}, {"chat-1_x", true}, {"0123456789abcdef0123456789abcdef", true}, {"0123456789abcdef0123456789abcdefX", false}, {"", false}, {"a b", false}, {"a=", false}}
	for _, tc := range tests {
		if got := ValidTopic(tc.topic); got != tc.ok {
			t.Errorf("ValidTopic(%q): got %v, want %v", tc.topic, got, tc.ok)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	authSecret := make([]byte, AuthSize)
	payload := []byte(`{"chat":"dm:alice:bob","seq":42,"sender":"alice","preview":"see you at 6","ts":1700000000000}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if _, err := Encrypt(payload, ua.PublicKey().Bytes(), authSecret); err != nil {
			b.Fatal(err)
		}
	}
}
