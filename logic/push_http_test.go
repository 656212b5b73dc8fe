package logic

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/record"
)

func testToken(t *testing.T, user, device string) string {
	t.Helper()
	tok, err := auth.Issue(auth.Config{Secret: testSecret}, user, device, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// httpDo sends one request and returns the status and the decoded JSON
// body (nil when empty).
func httpDo(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := contract(t).HTTPResponse(method, req.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), b); err != nil {
		t.Error(err)
	}
	var out map[string]any
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", method, url, b, err)
		}
	}
	return resp.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestPushSubscriptionsHTTP(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st)
	base := "http://" + svc.HTTPAddr()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256dh := base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	authSecret := base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef"))
	offCurve := append([]byte{4}, bytes.Repeat([]byte{1}, 64)...)
	body := func(endpoint, p, a string) string {
		b, _ := json.Marshal(map[string]any{"endpoint": endpoint, "keys": map[string]string{"p256dh": p, "auth": a}})
		return string(b)
	}
	alice := testToken(t, "alice", "phone")
	tests := []struct {
		name     string
		method   string
		path     string
		token    string
		body     string
		want     int
		wantCode string
	}{
		{"no token", "POST", "/v1/push/subscriptions", "", body("https://push.example/x", p256dh, authSecret), 401, "unauthorized"},
		{"token without device", "POST", "/v1/push/subscriptions", testToken(t, "alice", ""), body("https://push.example/x", p256dh, authSecret), 400, "bad_request"},
		{"not JSON", "POST", "/v1/push/subscriptions", alice, "{", 400, "bad_request"},
		{"no endpoint", "POST", "/v1/push/subscriptions", alice, body("", p256dh, authSecret), 400, "bad_request"},
		{"relative endpoint", "POST", "/v1/push/subscriptions", alice, body("/push/x", p256dh, authSecret), 400, "bad_request"},
		{"ftp endpoint", "POST", "/v1/push/subscriptions", alice, body("ftp://push.example/x", p256dh, authSecret), 400, "bad_request"},
		{"http to a remote host", "POST", "/v1/push/subscriptions", alice, body("http://push.example/x", p256dh, authSecret), 400, "bad_request"},
		{"endpoint too long", "POST", "/v1/push/subscriptions", alice, body("https://push.example/"+strings.Repeat("x", maxPushEndpoint), p256dh, authSecret), 400, "bad_request"},
		{"p256dh not base64url", "POST", "/v1/push/subscriptions", alice, body("https://push.example/x", "!!", authSecret), 400, "bad_request"},
		{"p256dh short", "POST", "/v1/push/subscriptions", alice, body("https://push.example/x", p256dh[:40], authSecret), 400, "bad_request"},
		{"p256dh off the curve", "POST", "/v1/push/subscriptions", alice, body("https://push.example/x", base64.RawURLEncoding.EncodeToString(offCurve), authSecret), 400, "bad_request"},
		{"auth short", "POST", "/v1/push/subscriptions", alice, body("https://push.example/x", p256dh, "AAAA"), 400, "bad_request"},
		{"https", "POST", "/v1/push/subscriptions", alice, body("https://push.example/x", p256dh, authSecret), 201, ""},
		{"http loopback v4", "POST", "/v1/push/subscriptions", alice, body("http://127.0.0.1:8080/x", p256dh, authSecret), 201, ""},
		{"http loopback v6", "POST", "/v1/push/subscriptions", alice, body("http://[::1]:8080/x", p256dh, authSecret), 201, ""},
		{"http localhost, padded keys", "POST", "/v1/push/subscriptions", alice, body("http://localhost:8080/x", p256dh+"=", base64.URLEncoding.EncodeToString([]byte("0123456789abcdef"))), 201, ""},
		{"wrong method", "PUT", "/v1/push/subscriptions", alice, "", 404, "not_found"},
		{"vapid not configured", "GET", "/v1/push/vapid", alice, "", 404, "not_found"},
		{"vapid without token", "GET", "/v1/push/vapid", "", "", 401, "unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, out := httpDo(t, tc.method, base+tc.path, tc.token, tc.body)
			if got != tc.want {
				t.Fatalf("%s %s: got status %d (%v), want %d", tc.method, tc.path, got, out, tc.want)
			}
			if code := errCode(out); code != tc.wantCode {
				t.Fatalf("%s %s: got error code %q, want %q", tc.method, tc.path, code, tc.wantCode)
			}
			if tc.want == 201 {
				var sub record.PushSubscription
				b, _ := json.Marshal(out)
				_ = json.Unmarshal(b, &sub)
				if sub.User != "alice" || sub.Device != "phone" || sub.P256dh != p256dh || sub.Auth != authSecret || sub.CreatedAt == 0 {
					t.Fatalf("answer: got %+v", sub)
				}
			}
		})
	}

	// The last registration won, with canonical (unpadded) keys.
	subs, err := st.PushSubscriptions(t.Context(), "alice")
	if err != nil || len(subs) != 1 {
		t.Fatalf("PushSubscriptions: got %+v, %v, want one", subs, err)
	}
	if s := subs[0]; s.Device != "phone" || s.Endpoint != "http://localhost:8080/x" || s.P256dh != p256dh || s.Auth != authSecret {
		t.Fatalf("stored subscription: got %+v", s)
	}

	// DELETE removes the token device's subscription only; twice is fine.
	laptopSub := record.PushSubscription{User: "alice", Device: "laptop", Endpoint: "https://push.example/l", P256dh: p256dh, Auth: authSecret}
	if err := st.PutPushSubscription(t.Context(), laptopSub); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, out := httpDo(t, "DELETE", base+"/v1/push/subscriptions", alice, ""); got != 204 {
			t.Fatalf("DELETE: got %d (%v), want 204", got, out)
		}
	}
	if subs, _ := st.PushSubscriptions(t.Context(), "alice"); len(subs) != 1 || subs[0].Device != "laptop" {
		t.Fatalf("after DELETE: got %+v, want only the laptop's", subs)
	}

	svc.SetVAPIDPublicKey("BVapidKey")
	if got, out := httpDo(t, "GET", base+"/v1/push/vapid", alice, ""); got != 200 || out["public_key"] != "BVapidKey" {
		t.Fatalf("GET /v1/push/vapid: got %d %v, want 200 with the key", got, out)
	}
}
