package logic

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// TestHTTPBearerAnyCase: the HTTP API takes the Bearer scheme in any case
// (RFC 7235), as the WebSocket upgrade does.
func TestHTTPBearerAnyCase(t *testing.T) {
	svc := startService(t, newMemStore())
	url := "http://" + svc.HTTPAddr() + "/v1/chats"
	tok := testToken(t, "alice", "")
	tests := []struct {
		name, header string
		want         int
	}{
		{"canonical", "Bearer " + tok, 200},
		{"lower", "bearer " + tok, 200},
		{"upper", "BEARER " + tok, 200},
		{"mixed_extra_spaces", "bEaReR    " + tok, 200},
		{"no_space", "Bearer" + tok, 401},
		{"other_scheme", "Basic " + tok, 401},
		{"bad_token", "bearer x" + tok, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", tc.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.want)
			}
		})
	}
}

// TestHTTPBodyTooLarge: a body over MaxHTTPBodyBytes is answered 413 with
// the JSON error too_large, whether it is just over or far over the limit
// and whether its length is declared or chunked.
func TestHTTPBodyTooLarge(t *testing.T) {
	svc := startService(t, newMemStore())
	url := "http://" + svc.HTTPAddr() + "/v1/chats/dm:alice:bob/messages"
	tok := testToken(t, "alice", "")
	for _, size := range []int{MaxHTTPBodyBytes + 1, 4 * MaxHTTPBodyBytes, 16 << 20} {
		for _, mode := range []string{"length", "chunked", "expect_continue"} {
			t.Run(fmt.Sprintf("size=%d/mode=%s", size, mode), func(t *testing.T) {
				body := `{"id":"big","body":"` + strings.Repeat("x", size) + `"}`
				var r io.Reader = strings.NewReader(body)
				if mode == "chunked" {
					r = io.MultiReader(r) // hides the length: net/http sends it chunked
				}
				req, err := http.NewRequestWithContext(t.Context(), "POST", url, r)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				if mode == "expect_continue" {
					req.Header.Set("Expect", "100-continue")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				var e struct {
					Error struct {
						Code      string `json:"code"`
						Message   string `json:"message"`
						Retryable *bool  `json:"retryable"`
					} `json:"error"`
				}
				if err := json.Unmarshal(b, &e); err != nil {
					t.Fatalf("got %d %q, want a JSON error body: %v", resp.StatusCode, b, err)
				}
				if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error.Code != proto.CodeTooLarge || e.Error.Retryable == nil || *e.Error.Retryable {
					t.Fatalf("got %d %s, want 413 too_large, not retryable", resp.StatusCode, b)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", ct)
				}
			})
		}
	}
	// At the limit the body is read (and here refused for its text, which
	// is over logic.max_body_bytes: the message limit, also 413).
	code, m := httpDo(t, "POST", url, tok, `{"id":"ok","body":"`+strings.Repeat("x", MaxHTTPBodyBytes-len(`{"id":"ok","body":""}`))+`"}`)
	// The send path's error frame becomes the API's error object, with
	// the request's id.
	e, _ := m["error"].(map[string]any)
	if code != http.StatusRequestEntityTooLarge || e["code"] != proto.CodeTooLarge || e["id"] != "ok" || !strings.Contains(e["message"].(string), "limit 16384") {
		t.Fatalf("at the limit: got %d %v, want 413 too_large from the send path with id ok", code, m)
	}
	code, m = httpDo(t, "POST", url, tok, `{"id":"small","body":"hi"}`)
	if code != http.StatusOK {
		t.Fatalf("small body: got %d %v, want 200", code, m)
	}
}

// TestHTTPTooLargePipelined: a too-large body after a pipelined request
// gets its 413 after the earlier request's answer, in order.
func TestHTTPTooLargePipelined(t *testing.T) {
	svc := startService(t, newMemStore())
	c, err := net.Dial("tcp", svc.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /v1/chats HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", 4096)
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i, want := range []int{200, 413} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("answer %d: got %d, want %d", i, resp.StatusCode, want)
		}
	}
}

// TestMetricsOnAdminListenerOnly: /metrics is not on the public API; the
// admin listener serves it (behind its bearer token when one is set) and
// the probes, GET and HEAD only.
func TestMetricsOnAdminListenerOnly(t *testing.T) {
	token := strings.Repeat("t", 40)
	svc := startService(t, newMemStore(), func(c *Config) { c.AdminToken = token })
	get := func(method, url, auth string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	api, admin := "http://"+svc.HTTPAddr(), "http://"+svc.AdminAddr()
	for _, tc := range []struct {
		method, url, auth string
		want              int
	}{
		{"GET", api + "/metrics", "", 404},
		{"GET", api + "/metrics", "Bearer " + token, 404},
		{"GET", api + "/healthz", "", 200},
		{"GET", admin + "/metrics", "", 401},
		{"GET", admin + "/metrics", "Bearer wrong", 401},
		{"GET", admin + "/metrics", "bearer " + token, 200},
		{"POST", admin + "/metrics", "Bearer " + token, 405},
		{"HEAD", admin + "/healthz", "", 200},
		{"GET", admin + "/readyz", "", 200},
		{"GET", admin + "/v1/chats", "", 404},
	} {
		if got := get(tc.method, tc.url, tc.auth); got != tc.want {
			t.Errorf("%s %s (auth %q): got %d, want %d", tc.method, tc.url, tc.auth, got, tc.want)
		}
	}
}

// TestReadyzReasonOnAdminOnly: a node that is not ready says only "not
// ready" on the HTTP API's listener, which clients may reach, and why on
// the admin listener.
func TestReadyzReasonOnAdminOnly(t *testing.T) {
	svc := startService(t, newMemStore())
	body := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	api, admin := "http://"+svc.HTTPAddr()+"/readyz", "http://"+svc.AdminAddr()+"/readyz"
	if code, b := body(api); code != 200 || b != "ready\n" {
		t.Fatalf("API /readyz when ready: %d %q", code, b)
	}
	svc.health.mu.Lock()
	svc.health.draining = true
	svc.health.mu.Unlock()
	if code, b := body(api); code != 503 || b != "not ready\n" {
		t.Fatalf("API /readyz while draining: %d %q, want 503 \"not ready\"", code, b)
	}
	if code, b := body(admin); code != 503 || b != "draining\n" {
		t.Fatalf("admin /readyz while draining: %d %q, want 503 \"draining\"", code, b)
	}
}

func TestAdminListenConfig(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		ok            bool
	}{
		{"127.0.0.1:8091", "", true},
		{"[::1]:8091", "", true},
		{"localhost:8091", "", true},
		{"", "", true},
		{"0.0.0.0:8091", "", false},
		{":8091", "", false},
		{"10.0.0.5:8091", strings.Repeat("t", 32), true},
		{"10.0.0.5:8091", "short", false},
	} {
		c := Default()
		c.LinkSecret = string(testLinkSecret)
		c.AdminListen, c.AdminToken = tc.listen, tc.token
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("admin_listen %q token %q: got %v, want ok=%v", tc.listen, tc.token, err, tc.ok)
		}
	}
}

// TestLinkBeyondLoopbackNeedsMTLS: a link address beyond loopback (where
// the node listens, advertises itself or dials peers) needs mutual TLS;
// a link secret alone does not do there.
func TestLinkBeyondLoopbackNeedsMTLS(t *testing.T) {
	mtls := func(c *Config) {
		c.LinkTLS.CertFile, c.LinkTLS.KeyFile = "/tls/logic-1.crt", "/tls/logic-1.key"
		c.LinkTLS.ClientCAFile, c.LinkTLS.CAFile = "/tls/ca.crt", "/tls/ca.crt"
	}
	for _, tc := range []struct {
		name string
		set  func(*Config)
		ok   bool
	}{
		{"loopback, secret only", func(c *Config) {}, true},
		{"all interfaces, secret only", func(c *Config) { c.LinkListen = "0.0.0.0:7070" }, false},
		{"empty host, secret only", func(c *Config) { c.LinkListen = ":7070" }, false},
		{"all interfaces, mutual TLS", func(c *Config) { c.LinkListen = "0.0.0.0:7070"; mtls(c) }, true},
		{"all interfaces, no ca_file", func(c *Config) { c.LinkListen = "0.0.0.0:7070"; mtls(c); c.LinkTLS.CAFile = "" }, false},
		{"all interfaces, no client_ca_file", func(c *Config) { c.LinkListen = "0.0.0.0:7070"; mtls(c); c.LinkTLS.ClientCAFile = "" }, false},
		{"advertised beyond loopback", func(c *Config) { c.Cluster.Advertise = "10.0.0.5:7070" }, false},
		{"a peer beyond loopback", func(c *Config) { c.Cluster.Peers = []string{"127.0.0.1:7071", "logic-2.internal:7070"} }, false},
		{"peers beyond loopback, mutual TLS", func(c *Config) { c.Cluster.Peers = []string{"logic-2.internal:7070"}; mtls(c) }, true},
		{"localhost and [::1], secret only", func(c *Config) { c.LinkListen = "[::1]:7070"; c.Cluster.Peers = []string{"localhost:7071"} }, true},
	} {
		c := Default()
		c.LinkSecret = string(testLinkSecret)
		tc.set(&c)
		err := c.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !tc.ok && !strings.Contains(err.Error(), "mutual TLS") {
			t.Errorf("%s: got %v, want it to ask for mutual TLS", tc.name, err)
		}
	}
}

// TestPeerBeyondLoopbackNeedsTLS: a node without link_tls never dials a
// peer beyond loopback in plain TCP, even one found at run time (the
// directory, a peer's hello) that the configuration check never saw.
func TestPeerBeyondLoopbackNeedsTLS(t *testing.T) {
	c := &cluster{svc: &Service{}}
	for _, addr := range []string{"192.0.2.1:7070", "logic-2.internal:7070", "[2001:db8::1]:7070"} {
		if err := c.connectPeer(t.Context(), addr); !errors.Is(err, errPlainBeyondLoopback) {
			t.Errorf("plain dial of %s: got %v, want errPlainBeyondLoopback", addr, err)
		}
	}
}
