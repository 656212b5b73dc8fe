package connsrv

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/tierlink"
)

func TestUpgradeAuth(t *testing.T) {
	ts := startServer(t, nil)
	good := func(user string) string { return token(t, user, "", time.Hour) }
	tests := []struct {
		name       string
		query      string
		header     http.Header
		protocols  []string
		wantStatus int // 0 = upgrade succeeds
		wantUser   string
		wantDevice string
		wantProto  string
	}{
		{name: "header", header: http.Header{"Authorization": {"Bearer " + good("alice")}}, wantUser: "alice", wantDevice: "default"},
		{name: "query", query: "?token=" + good("bob") + "&device=phone", wantUser: "bob", wantDevice: "phone"},
		{name: "subprotocol", protocols: []string{"parley.v1", "bearer." + good("carol")}, wantUser: "carol", wantDevice: "default", wantProto: "parley.v1"},
		{name: "device claim", header: http.Header{"Authorization": {"Bearer " + token(t, "dave", "tablet", time.Hour)}}, wantUser: "dave", wantDevice: "tablet"},
		{name: "missing", wantStatus: 401},
		{name: "garbage", header: http.Header{"Authorization": {"Bearer abc.def.ghi"}}, wantStatus: 401},
		{name: "wrong secret", query: "?token=" + forgedToken(t), wantStatus: 401},
		{name: "expired", header: http.Header{"Authorization": {"Bearer " + token(t, "erin", "", -time.Hour)}}, wantStatus: 401},
		{name: "device claim and the same device", query: "?device=tablet", header: http.Header{"Authorization": {"Bearer " + token(t, "dave", "tablet", time.Hour)}}, wantUser: "dave", wantDevice: "tablet"},
		{name: "device claim and another device", query: "?device=phone", header: http.Header{"Authorization": {"Bearer " + token(t, "dave", "tablet", time.Hour)}}, wantStatus: 400},
		{name: "bad device", query: "?token=" + good("frank") + "&device=" + url.QueryEscape("bad device!"), wantStatus: 400},
		{name: "protocol spoken", query: "?token=" + good("gina") + "&protocol=1", wantUser: "gina", wantDevice: "default"},
		{name: "protocol not spoken", query: "?token=" + good("gina") + "&protocol=99", wantStatus: 400},
		{name: "protocol garbage", query: "?token=" + good("gina") + "&protocol=v1", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dial(t, ts.url+tt.query, tt.header, tt.protocols...)
			if tt.wantStatus != 0 {
				var se ws.StatusError
				if !errors.As(err, &se) || int(se) != tt.wantStatus {
					t.Fatalf("got err %v, want status %d", err, tt.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want upgrade", err)
			}
			ev := ts.logic.next(t, tierlink.TypeOpen)
			if ev.open.User != tt.wantUser || ev.open.Device != tt.wantDevice || ev.open.Remote == "" {
				t.Fatalf("got open %+v, want user %q device %q", ev.open, tt.wantUser, tt.wantDevice)
			}
			if c.hs.Protocol != tt.wantProto {
				t.Fatalf("got protocol %q, want %q", c.hs.Protocol, tt.wantProto)
			}
		})
	}
}

func forgedToken(t *testing.T) string {
	cfg := testAuth
	cfg.Secret = "ffffffffffffffffffffffffffffffff"
	tok, err := authIssue(cfg, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOriginRefused(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	h := http.Header{"Authorization": {"Bearer " + token(t, "alice", "", time.Hour)}, "Origin": {"https://evil.example"}}
	_, err := dial(t, ts.url, h)
	var se ws.StatusError
	if !errors.As(err, &se) || se != 403 {
		t.Fatalf("got %v, want status 403", err)
	}
	h.Set("Origin", "https://APP.example")
	if _, err := dial(t, ts.url, h); err != nil {
		t.Fatalf("allowed origin: got %v, want upgrade", err)
	}
}

func TestHandshakeLimits(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.HeartbeatInterval = time.Second
		c.IdleTimeout = 3 * time.Second
	})
	t.Run("head too large", func(t *testing.T) {
		req := "GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 9000) + "\r\n\r\n"
		_, status := rawHandshake(t, ts.Addr(), req)
		if status != 431 {
			t.Fatalf("got %d, want 431", status)
		}
	})
	t.Run("not websocket", func(t *testing.T) {
		_, status := rawHandshake(t, ts.Addr(), "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
		if status != 400 {
			t.Fatalf("got %d, want 400", status)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		c, err := netDial(ts.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("GET /ws HTTP/1.1\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		if n, err := c.Read(buf); err == nil {
			t.Fatalf("got %d bytes, want the connection closed", n)
		} else if isTimeout(err) {
			t.Fatal("connection still open after the handshake timeout")
		}
	})
}

func TestRelay(t *testing.T) {
	ts := startServer(t, nil)
	a, sa := ts.connect(t, "alice")
	b, sb := ts.connect(t, "bob")
	c, sc := ts.connect(t, "carol")

	// Data forwarded verbatim.
	msg := `{"type":"send","id":"1","to":"bob","body":"héllo"}`
	a.sendText(msg)
	ev := ts.logic.next(t, tierlink.TypeData)
	if ev.session != sa || string(ev.payload) != msg {
		t.Fatalf("got data %d %q, want %d %q", ev.session, ev.payload, sa, msg)
	}

	// Deliver reaches exactly one client.
	ts.logic.send(t, sb, tierlink.AppendFrame(nil, tierlink.TypeDeliver, sb, []byte(`{"type":"msg","n":1}`)))
	if got := b.expectText(); got != `{"type":"msg","n":1}` {
		t.Fatalf("got %q, want the delivered frame", got)
	}

	// Multi reaches the named sessions.
	ts.logic.send(t, sa, tierlink.AppendMulti(nil, []uint64{sa, sc}, []byte(`{"type":"msg","n":2}`)))
	for _, cl := range []*client{a, c} {
		if got := cl.expectText(); got != `{"type":"msg","n":2}` {
			t.Fatalf("got %q, want the multi frame", got)
		}
	}
	// Bob got nothing more: a ping round trip proves the queue is empty.
	b.sendRaw(maskedFrame(0x89, []byte("p1")))
	f, err := b.readFrame()
	if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "p1" {
		t.Fatalf("got %v %q err %v, want pong p1", f.Header.OpCode, f.Payload, err)
	}

	// Kick closes with the code, and logic hears Close.
	ts.logic.send(t, sc, tierlink.AppendKick(nil, sc, proto.CloseReplaced, "replaced"))
	if got := c.expectClose(); got != proto.CloseReplaced {
		t.Fatalf("got close %d, want %d", got, proto.CloseReplaced)
	}
	ev = ts.logic.next(t, tierlink.TypeClose)
	code, _ := tierlink.ParseClose(ev.payload)
	if ev.session != sc || code != proto.CloseReplaced {
		t.Fatalf("got close frame %d code %d, want %d code %d", ev.session, code, sc, proto.CloseReplaced)
	}
}

func TestFraming(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxFrameSize = 1024; c.MaxMessageSize = 2048 })
	t.Run("byte by byte", func(t *testing.T) {
		c, s := ts.connect(t, "split")
		msg := `{"type":"ping","id":"x"}`
		frame := append(maskedFrame(0x81, []byte(msg)), maskedFrame(0x81, []byte(msg+" "))...)
		for i := range frame {
			c.sendRaw(frame[i : i+1])
			if i%7 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		for _, want := range []string{msg, msg + " "} {
			ev := ts.logic.next(t, tierlink.TypeData)
			if ev.session != s || string(ev.payload) != want {
				t.Fatalf("got %q, want %q", ev.payload, want)
			}
		}
	})
	t.Run("fragmented with interleaved ping", func(t *testing.T) {
		c, s := ts.connect(t, "frag")
		var b []byte
		b = append(b, maskedFrame(0x01, []byte(`{"type":`))...)
		b = append(b, maskedFrame(0x89, []byte("mid"))...)
		b = append(b, maskedFrame(0x00, []byte(`"pi`))...)
		b = append(b, maskedFrame(0x80, []byte(`ng"}`))...)
		c.sendRaw(b)
		ev := ts.logic.next(t, tierlink.TypeData)
		if ev.session != s || string(ev.payload) != `{"type":"ping"}` {
			t.Fatalf("got %q, want the reassembled message", ev.payload)
		}
		f, err := c.readFrame()
		if err != nil || f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
			t.Fatalf("got %v %q %v, want pong mid", f.Header.OpCode, f.Payload, err)
		}
	})
	t.Run("order", func(t *testing.T) {
		c, s := ts.connect(t, "order")
		var b []byte
		for i := range 500 {
			b = append(b, maskedFrame(0x81, fmt.Appendf(nil, `{"n":%d}`, i))...)
		}
		c.sendRaw(b)
		for i := range 500 {
			ev := ts.logic.next(t, tierlink.TypeData)
			if want := fmt.Sprintf(`{"n":%d}`, i); ev.session != s || string(ev.payload) != want {
				t.Fatalf("got %q, want %q", ev.payload, want)
			}
		}
	})
	t.Run("close handshake", func(t *testing.T) {
		c, s := ts.connect(t, "closer")
		c.sendRaw(maskedFrame(0x88, []byte{0x0f, 0xa5, 'b', 'y', 'e'})) // 4005
		if got := c.expectClose(); got != 4005 {
			t.Fatalf("got %d, want 4005 echoed", got)
		}
		// The earlier subtests' connections close (1006) at their
		// cleanup, concurrently with this one: skip their Close frames.
		ev := ts.logic.next(t, tierlink.TypeClose)
		for ev.session != s && ev.session < s {
			ev = ts.logic.next(t, tierlink.TypeClose)
		}
		code, _ := tierlink.ParseClose(ev.payload)
		if ev.session != s || code != 4005 {
			t.Fatalf("got close %d code %d, want %d code 4005", ev.session, code, s)
		}
	})

	errs := []struct {
		name  string
		frame []byte
		want  ws.StatusCode
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, 1002},
		{"rsv bit", maskedFrame(0xc1, []byte("x")), 1002},
		{"unknown opcode", maskedFrame(0x83, nil), 1002},
		{"fragmented ping", maskedFrame(0x09, nil), 1002},
		{"continuation first", maskedFrame(0x80, []byte("x")), 1002},
		{"invalid utf8", maskedFrame(0x81, []byte{0xff, 0xfe}), 1007},
		{"binary", maskedFrame(0x82, []byte{1, 2, 3}), 1003},
		{"declared 1 GiB", append([]byte{0x81, 0x80 | 127}, 0, 0, 0, 0, 0x40, 0, 0, 0), 1009},
		{"frame over limit", maskedFrame(0x81, bytes.Repeat([]byte("a"), 1025)), 1009},
		{"message over limit", append(maskedFrame(0x01, bytes.Repeat([]byte("a"), 1000)), append(maskedFrame(0x00, bytes.Repeat([]byte("a"), 1000)), maskedFrame(0x80, bytes.Repeat([]byte("a"), 100))...)...), 1009},
		{"bad close code", maskedFrame(0x88, []byte{0x03, 0xed}), 1002},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := ts.connect(t, "u"+strings.ReplaceAll(tt.name, " ", "_"))
			c.sendRaw(tt.frame)
			if got := c.expectClose(); got != tt.want {
				t.Fatalf("got close %d, want %d", got, tt.want)
			}
		})
	}
}

func TestIdleAndHeartbeat(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.HeartbeatInterval = 100 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond
	})
	c, s := ts.connect(t, "sleepy")
	f, err := c.readFrame()
	if err != nil || f.Header.OpCode != ws.OpPing {
		t.Fatalf("got %v %v, want a ping after the heartbeat interval", f.Header.OpCode, err)
	}
	if got := c.expectClose(); got != proto.CloseIdle {
		t.Fatalf("got close %d, want %d", got, proto.CloseIdle)
	}
	ev := ts.logic.next(t, tierlink.TypeClose)
	if ev.session != s {
		t.Fatalf("got close for %d, want %d", ev.session, s)
	}
}

func TestLinkLoss(t *testing.T) {
	ts := startServer(t, nil)
	var clients []*client
	for i := range 4 {
		c, _ := ts.connect(t, fmt.Sprintf("user%d", i))
		clients = append(clients, c)
	}
	ts.logic.killLinks()
	for i, c := range clients {
		if got := c.expectClose(); got != proto.CloseServiceRestart {
			t.Fatalf("client %d: got close %d, want %d", i, got, proto.CloseServiceRestart)
		}
	}
	// Links come back and new sessions work.
	deadline := time.Now().Add(5 * time.Second)
	for ts.LinksUp() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("links did not reconnect within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c, s := ts.connect(t, "again")
	c.sendText(`{"type":"ping"}`)
	if ev := ts.logic.next(t, tierlink.TypeData); ev.session != s {
		t.Fatalf("got data for %d, want %d", ev.session, s)
	}
}

func TestSlowConsumer(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.WriteQueueLimit = 64 << 10; c.SocketSendBuffer = 4096 })
	c, s := ts.connect(t, "slow")
	_ = c
	big := bytes.Repeat([]byte("x"), 8<<10)
	var b []byte
	for range 400 {
		b = tierlink.AppendFrame(b, tierlink.TypeDeliver, s, big)
	}
	ts.logic.send(t, s, b)
	ev := ts.logic.next(t, tierlink.TypeClose)
	code, _ := tierlink.ParseClose(ev.payload)
	if ev.session != s || code != proto.CloseSlowConsumer {
		t.Fatalf("got close %d code %d, want %d code %d", ev.session, code, s, proto.CloseSlowConsumer)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	addr := freeAddr(t)
	ts := startServer(t, func(c *Config) { c.HTTPListen = addr })
	ts.connect(t, "metric")
	for _, tt := range []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ok"},
		{"/metrics", "parley_connsrv_connections_open 1"},
	} {
		resp, err := http.Get("http://" + addr + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(buf.String(), tt.want) {
			t.Fatalf("%s: got %d %q, want 200 containing %q", tt.path, resp.StatusCode, buf.String(), tt.want)
		}
	}
}

// TestMetricsToken: with a metrics token /metrics asks for it; the probes
// stay open. A non-loopback http_listen without a token is a config error.
func TestMetricsToken(t *testing.T) {
	addr, token := freeAddr(t), strings.Repeat("m", 40)
	startServer(t, func(c *Config) { c.HTTPListen, c.MetricsToken = addr, token })
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", 401},
		{"/metrics", "Bearer nope", 401},
		{"/metrics", "bearer " + token, 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s (auth %q): got %d, want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}
	c := Default()
	c.LinkSecret = string(testLinkSecret)
	c.HTTPListen = "0.0.0.0:8082"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "metrics_token") {
		t.Fatalf("0.0.0.0 without a token: got %v, want the token asked for", err)
	}
	c.MetricsToken = token
	if err := c.Validate(); err != nil {
		t.Fatalf("0.0.0.0 with a token: got %v", err)
	}
}

func TestUpgradeWhileLinkDown(t *testing.T) {
	ts := startServer(t, nil)
	ts.logic.ln.Close()
	ts.logic.killLinks()
	deadline := time.Now().Add(5 * time.Second)
	for ts.LinksUp() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("links still up 5s after logic went away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h := http.Header{"Authorization": {"Bearer " + token(t, "alice", "", time.Hour)}}
	_, err := dial(t, ts.url, h)
	var se ws.StatusError
	if !errors.As(err, &se) || se != 503 {
		t.Fatalf("got %v, want status 503", err)
	}
}

func TestConfigValidate(t *testing.T) {
	// The defaults dial a logic node, and a link must be authenticated.
	if err := Default().Validate(); err == nil || !strings.Contains(err.Error(), "link_secret") {
		t.Fatalf("default config: got %v, want the link secret asked for", err)
	}
	d := Default()
	d.LinkSecret = string(testLinkSecret)
	if err := d.Validate(); err != nil {
		t.Fatalf("default config with a link secret: got %v, want nil", err)
	}
	d.LinkSecret = "short"
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short link secret: got %v, want refused", err)
	}
	// A logic node beyond loopback needs mutual TLS, a secret alone does
	// not do there.
	d.LinkSecret = string(testLinkSecret)
	d.LogicAddrs = []string{"127.0.0.1:7070", "logic-1.internal:7070"}
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("logic beyond loopback with a secret only: got %v, want mutual TLS asked for", err)
	}
	d.LinkTLS.CertFile, d.LinkTLS.KeyFile = "/tls/connsrv-1.crt", "/tls/connsrv-1.key"
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("logic beyond loopback without ca_file: got %v, want ca_file asked for", err)
	}
	d.LinkTLS.CAFile = "/tls/ca.crt"
	if err := d.Validate(); err != nil {
		t.Fatalf("logic beyond loopback with mutual TLS: got %v, want nil", err)
	}
	d.LinkTLS, d.LogicAddrs = Default().LinkTLS, Default().LogicAddrs
	c := Default()
	c.LinkPoolSize = -1
	c.MaxFrameSize = -5
	c.LogicAddrs = []string{"nohost"}
	c.IdleTimeout = c.HeartbeatInterval
	err := c.Validate()
	for _, want := range []string{"link_pool_size", "max_frame_size", "logic_addrs[0]", "idle_timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error naming %s", err, want)
		}
	}
}

func TestShutdownGoingAway(t *testing.T) {
	ts := startServer(t, nil)
	c, s := ts.connect(t, "leaver")
	ts.stop()
	if got := c.expectClose(); got != proto.CloseGoingAway {
		t.Fatalf("got close %d, want %d", got, proto.CloseGoingAway)
	}
	ev := ts.logic.next(t, tierlink.TypeClose)
	if ev.session != s {
		t.Fatalf("got close for %d, want %d", ev.session, s)
	}
}
