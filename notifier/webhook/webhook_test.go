package webhook

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

const secret = "0123456789abcdef-secret"

func TestVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"recipient":"bob"}`)
	good := Sign([]byte(secret), now, body)
	tests := []struct {
		name   string
		secret string
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"valid", secret, good, body, now, nil},
		{"valid within tolerance", secret, good, body, now.Add(4 * time.Minute), nil},
		{"clock skew within tolerance", secret, good, body, now.Add(-4 * time.Minute), nil},
		{"rotated secret: second v1 matches", secret, "t=1700000000,v1=" + strings.Repeat("00", 32) + "," + strings.TrimPrefix(good, "t=1700000000,"), body, now, nil},
		{"stale", secret, good, body, now.Add(6 * time.Minute), ErrStale},
		{"wrong secret", "another-secret-0123", good, body, now, ErrBadSignature},
		{"changed body", secret, good, []byte(`{"recipient":"eve"}`), now, ErrBadSignature},
		{"changed timestamp", secret, strings.Replace(good, "t=1700000000", "t=1700000001", 1), body, now, ErrBadSignature},
		{"no v1", secret, "t=1700000000", body, now, ErrBadHeader},
		{"no t", secret, strings.TrimPrefix(good, "t=1700000000,"), body, now, ErrBadHeader},
		{"short v1", secret, "t=1700000000,v1=abcd", body, now, ErrBadHeader},
		{"garbage", secret, "hello", body, now, ErrBadHeader},
		{"empty", secret, "", body, now, ErrBadHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.body, tc.at, 5*time.Minute)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify: got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSend(t *testing.T) {
	var mu sync.Mutex
	status := 200
	var got []*http.Request
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got, bodies = append(got, r), append(bodies, b)
		st := status
		mu.Unlock()
		if st == 429 {
			w.Header().Set("Retry-After", "3")
		}
		w.WriteHeader(st)
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/hook", secret, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ev := FromPushEvent(record.PushEvent{Recipient: "bob", ChatID: "dm:alice:bob", Seq: 42, Sender: "alice", Preview: "hi", TS: 7}, []string{"phone"})
	tests := []struct {
		status int
		want   Outcome
		ra     time.Duration
	}{
		{200, Delivered, 0}, {204, Delivered, 0}, {429, Retryable, 3 * time.Second}, {500, Retryable, 0},
		{503, Retryable, 0}, {400, Permanent, 0}, {404, Permanent, 0}, {410, Permanent, 0},
	}
	for _, tc := range tests {
		mu.Lock()
		status = tc.status
		mu.Unlock()
		r := c.Send(t.Context(), "dm:alice:bob/42/bob", ev)
		if r.Outcome != tc.want || r.Status != tc.status || r.RetryAfter != tc.ra || (r.Err == nil) != (tc.want == Delivered) {
			t.Errorf("Send with answer %d: got %v %d %v %v, want %v", tc.status, r.Outcome, r.Status, r.RetryAfter, r.Err, tc.want)
		}
	}
	mu.Lock()
	req, body := got[0], bodies[0]
	mu.Unlock()
	if err := Verify(secret, req.Header.Get(SignatureHeader), body, time.Now(), time.Minute); err != nil {
		t.Fatalf("Verify of a sent request: %v", err)
	}
	if k := req.Header.Get(DeliveryHeader); k != "dm:alice:bob/42/bob" {
		t.Fatalf("%s: got %q", DeliveryHeader, k)
	}
	var back Event
	if err := json.Unmarshal(body, &back); err != nil || back.Seq != 42 || back.Devices[0] != "phone" || back.Preview != "hi" {
		t.Fatalf("body: got %+v, %v", back, err)
	}
	srv.Close()
	if r := c.Send(t.Context(), "k", ev); r.Outcome != Retryable {
		t.Fatalf("Send to a closed server: got %v, want retryable", r.Outcome)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		url, secret string
		ok          bool
	}{
		{"https://hooks.example/p", secret, true},
		{"http://127.0.0.1:9/p", secret, true},
		{"ftp://hooks.example/p", secret, false},
		{"/p", secret, false},
		{"https://hooks.example/p", "short", false},
	}
	for _, tc := range tests {
		if _, err := New(tc.url, tc.secret, nil); (err == nil) != tc.ok {
			t.Errorf("New(%q, %q): got %v, want ok=%v", tc.url, tc.secret, err, tc.ok)
		}
	}
}

// FuzzVerify: never panics on any header, split or whole, and never
// accepts a header for a body it was not signed for.
func FuzzVerify(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	f.Add(Sign([]byte(secret), now, []byte("b")), []byte("b"))
	f.Add("t=1,v1=zz", []byte{})
	f.Add("t=,v1=,", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		for i := 0; i <= len(header); i += max(1, len(header)/8) {
			_ = Verify(secret, header[:i], body, now, time.Minute)
			_ = Verify(secret, header[i:], body, now, time.Minute)
		}
		if Verify(secret, header, body, now, time.Minute) == nil && Verify(secret, header, append(body, '!'), now, time.Minute) == nil {
			t.Fatalf("header %q verifies two different bodies", header)
		}
	})
}
