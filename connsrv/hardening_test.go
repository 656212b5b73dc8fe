package connsrv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/parley-chat/parley/connsrv/proxyproto"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/tierlink"
)

// connectToken dials with tok in the Authorization header and returns the
// client and its session id.
func (ts *testServer) connectToken(t *testing.T, tok, query string) (*client, uint64) {
	t.Helper()
	c, err := dial(t, ts.url+query, http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c, ts.logic.next(t, tierlink.TypeOpen).session
}

// expectPong sends a ping and waits for its pong (skipping other frames):
// proof that the connection is open.
func (c *client) expectPong(data string) {
	c.t.Helper()
	c.sendRaw(maskedFrame(0x89, []byte(data)))
	for {
		f, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("read while waiting for pong: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpPong:
			if string(f.Payload) == data {
				return
			}
		case ws.OpClose:
			c.t.Fatalf("got close %v, want pong %q", f.Payload, data)
		}
	}
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	ts := startServer(t, nil)
	issued := time.Now()
	short := func(user, dev string) string { return token(t, user, dev, 2*time.Second) }

	expiring, _ := ts.connectToken(t, short("exp-a", ""), "")
	refreshed, sRefreshed := ts.connectToken(t, short("exp-b", ""), "")
	wrongUser, _ := ts.connectToken(t, short("exp-c", ""), "")
	garbage, _ := ts.connectToken(t, short("exp-d", ""), "")
	longLived, sLong := ts.connectToken(t, token(t, "exp-e", "", time.Hour), "")
	device, _ := ts.connectToken(t, token(t, "exp-f", "phone", time.Hour), "")

	refresh := func(c *client, id, tok string) map[string]any {
		t.Helper()
		c.sendText(fmt.Sprintf(`{"type":"refresh","id":%q,"token":%q}`, id, tok))
		var m map[string]any
		if err := json.Unmarshal([]byte(c.expectText()), &m); err != nil {
			t.Fatal(err)
		}
		if m["id"] != id {
			t.Fatalf("got answer %v, want id %q", m, id)
		}
		return m
	}
	wantOK := func(m map[string]any) {
		t.Helper()
		if m["type"] != proto.TypeOK {
			t.Fatalf("got %v, want ok", m)
		}
	}
	wantAuthFailed := func(m map[string]any) {
		t.Helper()
		if m["type"] != proto.TypeError || m["code"] != codeAuthFailed || m["retryable"] != false {
			t.Fatalf("got %v, want error auth_failed", m)
		}
	}

	wantOK(refresh(refreshed, "r1", token(t, "exp-b", "", time.Hour)))
	wantAuthFailed(refresh(wrongUser, "r2", token(t, "mallory", "", time.Hour)))
	wantAuthFailed(refresh(garbage, "r3", "not.a.jwt"))
	wantAuthFailed(refresh(garbage, "r4", token(t, "exp-d", "", -time.Hour)))

	// A token expiring earlier than the current one is accepted and
	// changes nothing.
	before := ts.reg.get(sLong).expires.Load()
	wantOK(refresh(longLived, "r5", token(t, "exp-e", "", 2*time.Second)))
	if got := ts.reg.get(sLong).expires.Load(); got != before {
		t.Fatalf("got expiry %v after an earlier token, want %v unchanged", time.Unix(0, got), time.Unix(0, before))
	}

	// The device claim must match the session's device when present.
	wantAuthFailed(refresh(device, "r6", token(t, "exp-f", "tablet", 2*time.Hour)))
	wantOK(refresh(device, "r7", token(t, "exp-f", "", 2*time.Hour)))
	wantOK(refresh(device, "r8", token(t, "exp-f", "phone", 3*time.Hour)))

	// Not refreshed, or refreshed with a refused token: closed with 4001
	// when the old token expires.
	for name, c := range map[string]*client{"expiring": expiring, "wrong user": wrongUser, "garbage": garbage} {
		if got := c.expectClose(); got != proto.CloseTokenExpired {
			t.Fatalf("%s: got close %d, want %d", name, got, proto.CloseTokenExpired)
		}
	}
	// Refreshed: still open well past the old expiry (at most issued+2s).
	time.Sleep(time.Until(issued.Add(3500 * time.Millisecond)))
	refreshed.expectPong("alive")
	longLived.expectPong("alive")

	// Refresh frames never reach logic: the first data frame logic sees is
	// this one.
	refreshed.sendText(`{"type":"ping","id":"p"}`)
	if ev := ts.logic.next(t, tierlink.TypeData); ev.session != sRefreshed || string(ev.payload) != `{"type":"ping","id":"p"}` {
		t.Fatalf("got data %d %q, want the ping of session %d", ev.session, ev.payload, sRefreshed)
	}
	// A frame that only mentions "refresh" is forwarded untouched.
	msg := `{"type":"send","id":"s","to":"x","body":"refresh"}`
	refreshed.sendText(msg)
	if ev := ts.logic.next(t, tierlink.TypeData); string(ev.payload) != msg {
		t.Fatalf("got data %q, want %q forwarded", ev.payload, msg)
	}
	for result, want := range map[string]uint64{refreshOK: 3, refreshUnchanged: 1, refreshInvalid: 2, refreshMismatch: 2} {
		if got := ts.m.refreshes[result].Get(); got != want {
			t.Errorf("refreshes{result=%q}: got %d, want %d", result, got, want)
		}
	}
}

func TestSlowConsumerOthersUnaffected(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.WriteQueueLimit = 64 << 10; c.SocketSendBuffer = 4096 })
	slow, sSlow := ts.connect(t, "slow")
	_ = slow // never reads
	fast, sFast := ts.connect(t, "fast")

	done := make(chan error, 1)
	go func() {
		for i := range 200 {
			f, err := fast.readFrame()
			if err != nil {
				done <- err
				return
			}
			if want := fmt.Sprintf(`{"n":%d}`, i); f.Header.OpCode != ws.OpText || string(f.Payload) != want {
				done <- fmt.Errorf("got %v %q, want %s", f.Header.OpCode, f.Payload, want)
				return
			}
		}
		done <- nil
	}()
	big := make([]byte, 8<<10)
	for i := range big {
		big[i] = 'x'
	}
	for i := range 200 {
		// Interleave: flood the slow reader, keep feeding the fast one.
		if i < 100 {
			var b []byte
			for range 4 {
				b = tierlink.AppendFrame(b, tierlink.TypeDeliver, sSlow, big)
			}
			if ts.reg.get(sSlow) != nil {
				ts.logic.send(t, sSlow, b)
			}
		}
		ts.logic.send(t, sFast, tierlink.AppendFrame(nil, tierlink.TypeDeliver, sFast, fmt.Appendf(nil, `{"n":%d}`, i)))
	}
	ev := ts.logic.next(t, tierlink.TypeClose)
	code, _ := tierlink.ParseClose(ev.payload)
	if ev.session != sSlow || code != proto.CloseSlowConsumer {
		t.Fatalf("got close %d code %d, want %d code %d", ev.session, code, sSlow, proto.CloseSlowConsumer)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("fast client: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fast client did not get its 200 messages within 10s")
	}
	fast.expectPong("still here")
	if got := ts.m.drops[dropSlow].Get(); got == 0 {
		t.Fatalf("got drops{reason=slow_consumer} %d, want > 0", got)
	}
}

func TestSlowloris(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ts := startServer(t, func(c *Config) { c.HandshakeTimeout = timeout })
	c, err := netDial(ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	// Trickle a never-ending request head, one byte every 20ms: activity
	// must not extend the handshake deadline.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		head := []byte("GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 4000))
		for _, b := range head {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("got %d bytes, want the connection closed", n)
	}
	if isTimeout(err) {
		t.Fatal("connection still open 10s into a trickled handshake")
	}
	if elapsed < timeout/2 || elapsed > timeout+5*time.Second {
		t.Fatalf("closed after %v, want about the %v handshake timeout", elapsed, timeout)
	}
}

// proxyDial dials the server, writes header (byte by byte when split), and
// upgrades with a token for user.
func proxyDial(t *testing.T, ts *testServer, header []byte, split bool, user string) (*client, error) {
	t.Helper()
	d := ws.Dialer{
		Timeout: 5 * time.Second,
		Header:  ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token(t, user, "", time.Hour)}}),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			chunk := len(header)
			if split {
				chunk = 1
			}
			for i := 0; i < len(header); i += chunk {
				if _, err := c.Write(header[i:min(i+chunk, len(header))]); err != nil {
					c.Close()
					return nil, err
				}
				if split {
					time.Sleep(time.Millisecond)
				}
			}
			return c, nil
		},
	}
	conn, br, _, err := d.Dial(context.Background(), ts.url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	return &client{t: t, conn: conn, r: r}, nil
}

func TestProxyProtocol(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.ProxyProtocol = true })
	dst := netip.MustParseAddrPort("10.0.0.1:443")
	dst6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	tests := []struct {
		name       string
		header     []byte
		split      bool
		wantRemote string // "" = the socket's (loopback) address
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 1111 443\r\n"), false, "203.0.113.7:1111"},
		{"v1 tcp6 split", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n"), true, "[2001:db8::7]:40000"},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), false, ""},
		{"v2 tcp4", proxyproto.AppendV2(nil, netip.MustParseAddrPort("198.51.100.9:2222"), dst, nil), false, "198.51.100.9:2222"},
		{"v2 tcp6 tlvs split", proxyproto.AppendV2(nil, netip.MustParseAddrPort("[2001:db8::9]:3333"), dst6, []byte{0x02, 0x00, 0x03, 'a', '.', 'b', 0x04, 0x00, 0x00}), true, "[2001:db8::9]:3333"},
		{"v2 local", proxyproto.AppendV2Local(nil), false, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := fmt.Sprintf("proxied%d", i)
			if _, err := proxyDial(t, ts, tt.header, tt.split, user); err != nil {
				t.Fatalf("dial: %v", err)
			}
			ev := ts.logic.next(t, tierlink.TypeOpen)
			if ev.open.User != user {
				t.Fatalf("got open for %q, want %q", ev.open.User, user)
			}
			if tt.wantRemote == "" {
				if !strings.HasPrefix(ev.open.Remote, "127.0.0.1:") {
					t.Fatalf("got remote %q, want the socket's 127.0.0.1 address", ev.open.Remote)
				}
			} else if ev.open.Remote != tt.wantRemote {
				t.Fatalf("got remote %q, want %q", ev.open.Remote, tt.wantRemote)
			}
		})
	}
	for _, tt := range []struct {
		name, header, reason string
	}{
		{"missing", "", rejectProxyMissing},
		{"malformed", "PROXY TCP4 1.2.3.4 nope 1 2\r\n", rejectProxyInvalid},
		{"v2 unix", "\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\x00", rejectProxyInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.m.rejects[tt.reason].Get()
			if _, err := proxyDial(t, ts, []byte(tt.header), false, "nobody"); err == nil {
				t.Fatal("got an upgrade, want the connection closed")
			}
			if got := ts.m.rejects[tt.reason].Get(); got != before+1 {
				t.Fatalf("got rejected{reason=%q} %d, want %d", tt.reason, got, before+1)
			}
		})
	}
}

func TestProxyProtocolTrustedAndRate(t *testing.T) {
	t.Run("untrusted peer", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.ProxyProtocol = true; c.TrustedProxies = []string{"192.0.2.0/24"} })
		if _, err := proxyDial(t, ts, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 1 2\r\n"), false, "alice"); err == nil {
			t.Fatal("got an upgrade from an untrusted proxy, want the connection closed")
		}
		if got := ts.m.rejects[rejectProxyUntrusted].Get(); got != 1 {
			t.Fatalf("got rejected{reason=proxy_untrusted} %d, want 1", got)
		}
	})
	t.Run("trusted peer, rate per client address", func(t *testing.T) {
		ts := startServer(t, func(c *Config) {
			c.ProxyProtocol = true
			c.TrustedProxies = []string{"127.0.0.1"}
			c.IPConnRate, c.IPConnBurst = 0.01, 2
		})
		hdr := func(ip string) []byte { return fmt.Appendf(nil, "PROXY TCP4 %s 10.0.0.1 5000 443\r\n", ip) }
		for i := range 2 {
			if _, err := proxyDial(t, ts, hdr("198.51.100.1"), false, fmt.Sprintf("r%d", i)); err != nil {
				t.Fatalf("connection %d: %v", i+1, err)
			}
		}
		_, err := proxyDial(t, ts, hdr("198.51.100.1"), false, "r3")
		var se ws.StatusError
		if !errors.As(err, &se) || se != 429 {
			t.Fatalf("third connection from one client address: got %v, want 429", err)
		}
		if _, err := proxyDial(t, ts, hdr("198.51.100.2"), false, "r4"); err != nil {
			t.Fatalf("another client address behind the same proxy: got %v, want an upgrade", err)
		}
	})
}

func TestIPConnRate(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IPConnRate, c.IPConnBurst = 0.01, 40 })
	for i := range 40 {
		c, _ := ts.connect(t, fmt.Sprintf("rate%d", i))
		c.conn.Close()
	}
	req := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	c, err := netDial(ts.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufioReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Fatalf("41st connection: got %d, want 429", resp.StatusCode)
	}
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("got Retry-After %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
	}
	if got := ts.m.rejects[rejectIPRate].Get(); got != 1 {
		t.Fatalf("got rejected{reason=ip_rate} %d, want 1", got)
	}

	t.Run("exempt", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.IPConnRate, c.IPConnBurst, c.IPRateExempt = 0.01, 1, []string{"127.0.0.0/8"} })
		for i := range 5 {
			c, _ := ts.connect(t, fmt.Sprintf("ex%d", i))
			c.conn.Close()
		}
	})
	t.Run("off", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.IPConnRate = 0 })
		for i := range 50 {
			c, _ := ts.connect(t, fmt.Sprintf("off%d", i))
			c.conn.Close()
		}
	})
}

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(2, 3, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	a := netip.MustParseAddr("192.0.2.1")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	sec := int64(time.Second)
	steps := []struct {
		addr netip.Addr
		at   int64 // nanos
		want int
	}{
		{a, 0, ipAllowed},
		{mapped, 0, ipAllowed}, // the same address
		{a, 0, ipAllowed},
		{a, 0, ipLimited},
		{netip.MustParseAddr("192.0.2.2"), 0, ipAllowed},
		{a, sec / 2, ipAllowed}, // one token back after 1/rate
		{a, sec / 2, ipLimited},
		{netip.MustParseAddr("10.1.2.3"), 0, ipAllowed}, // exempt
		{netip.MustParseAddr("10.1.2.3"), 0, ipAllowed},
		{netip.MustParseAddr("10.1.2.3"), 0, ipAllowed},
		{netip.MustParseAddr("10.1.2.3"), 0, ipAllowed},
	}
	for i, st := range steps {
		got, wait := l.allow(st.addr, st.at)
		if got != st.want {
			t.Fatalf("step %d (%v at %v): got %d, want %d", i, st.addr, time.Duration(st.at), got, st.want)
		}
		if got == ipLimited && (wait <= 0 || wait > time.Second) {
			t.Fatalf("step %d: got wait %v, want in (0, 1s]", i, wait)
		}
	}
	if n := l.sweep(sec); n != 2 {
		t.Fatalf("sweep before refill: got %d buckets, want 2", n)
	}
	if n := l.sweep(sec/2 + 2*sec); n != 0 {
		t.Fatalf("sweep after refill: got %d buckets, want 0", n)
	}
	if newIPLimiter(0, 10, nil) != nil {
		t.Fatal("got a limiter for rate 0, want nil")
	}
	if got := retryAfterSeconds(1500 * time.Millisecond); got != 2 {
		t.Fatalf("retryAfterSeconds(1.5s): got %d, want 2", got)
	}
}

func TestConfigValidateHardening(t *testing.T) {
	c := Default()
	if c.IPConnRate != 20 || c.IPConnBurst != 40 || c.DrainWindow != 10*time.Second || c.ProxyProtocol {
		t.Fatalf("got defaults rate %v burst %d drain %v proxy %v, want 20 40 10s false", c.IPConnRate, c.IPConnBurst, c.DrainWindow, c.ProxyProtocol)
	}
	c.IPConnRate = -1
	c.IPConnBurst = -2
	c.DrainWindow = -time.Second
	c.TrustedProxies = []string{"10.0.0.0/8", "nope"}
	c.IPRateExempt = []string{"::1", "1.2.3.4/33"}
	err := c.Validate()
	for _, want := range []string{"ip_conn_rate", "ip_conn_burst", "drain_window", "trusted_proxies[1]", "ip_rate_exempt[1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error naming %s", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "trusted_proxies[0]") {
		t.Errorf("got %v, want trusted_proxies[0] accepted", err)
	}
	d := Config{IPConnRate: 2.5}.withDefaults()
	if d.IPConnBurst != 3 || d.DrainWindow != 0 {
		t.Fatalf("zero config: got burst %d drain %v, want 3 and 0", d.IPConnBurst, d.DrainWindow)
	}
}

// drainRecord is what one client saw during a drain.
type drainRecord struct {
	gotMsg     bool
	goawayAt   time.Time
	retryAfter float64
	url        any
	closeCode  ws.StatusCode
	order      string
	err        error
}

func TestDrain(t *testing.T) {
	const n = 20
	const window = 2 * time.Second
	httpAddr := freeAddr(t)
	ts := startServer(t, func(c *Config) { c.DrainWindow = window; c.HTTPListen = httpAddr })
	clients := make([]*client, n)
	sessions := make([]uint64, n)
	for i := range n {
		clients[i], sessions[i] = ts.connect(t, fmt.Sprintf("drain%d", i))
	}
	// A message from logic in flight to everyone when the drain starts: it
	// must arrive before the goaway.
	ts.logic.send(t, sessions[0], tierlink.AppendMulti(nil, sessions, []byte(`{"type":"msg","n":1}`)))
	deadline := time.Now().Add(5 * time.Second)
	for ts.m.framesOut.Get() < n {
		if time.Now().After(deadline) {
			t.Fatal("the multi frame was not queued within 5s")
		}
		time.Sleep(time.Millisecond)
	}

	recs := make([]drainRecord, n)
	var told atomic.Int32
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			r := &recs[i]
			for {
				_ = c.conn.SetReadDeadline(time.Now().Add(window + 5*time.Second))
				f, err := readServerFrame(c.r)
				if err != nil {
					r.err = err
					return
				}
				switch f.Header.OpCode {
				case ws.OpText:
					var m map[string]any
					_ = json.Unmarshal(f.Payload, &m)
					switch m["type"] {
					case proto.TypeMsg:
						r.gotMsg = true
						r.order += "msg,"
					case proto.TypeGoaway:
						r.goawayAt = time.Now()
						r.retryAfter, _ = m["retry_after_ms"].(float64)
						r.url = m["url"]
						r.order += "goaway,"
						told.Add(1)
					}
				case ws.OpClose:
					if len(f.Payload) >= 2 {
						r.closeCode = ws.StatusCode(uint16(f.Payload[0])<<8 | uint16(f.Payload[1]))
					}
					r.order += "close"
					return
				}
			}
		})
	}

	start := time.Now()
	ts.stop()
	// Acks sent during the drain by clients not yet told reach logic.
	acksSent := map[uint64]time.Time{}
	for i, c := range clients {
		ack := fmt.Sprintf(`{"type":"ack","chat":"c","seq":%d}`, i+1)
		if _, err := c.conn.Write(maskedFrame(0x81, []byte(ack))); err == nil {
			acksSent[sessions[i]] = time.Now()
		}
	}
	// New connections are refused and readyz is 503 while draining.
	time.Sleep(100 * time.Millisecond)
	if told.Load() == n {
		t.Fatal("every client was told to go away within 100ms of a 2s drain")
	}
	if _, err := dial(t, ts.url, http.Header{"Authorization": {"Bearer " + token(t, "late", "", time.Hour)}}); err == nil {
		t.Fatal("got an upgrade during the drain, want the connection refused")
	}
	if resp, err := http.Get("http://" + httpAddr + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("readyz during the drain: got %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}

	// Logic hears a Close for every session: the links were flushed
	// before they closed. Data frames (acks) seen on the way are noted.
	acked := map[uint64]bool{}
	closed := map[uint64]bool{}
	for len(closed) < n {
		ev := ts.logic.next(t, tierlink.TypeClose, tierlink.TypeData)
		if ev.typ == tierlink.TypeData {
			acked[ev.session] = true
			continue
		}
		closed[ev.session] = true
	}
	wg.Wait()

	var first, last time.Time
	for i, r := range recs {
		if r.order != "msg,goaway,close" || r.closeCode != proto.CloseGoingAway {
			t.Fatalf("client %d: got %q close %d (err %v), want msg, goaway, close 1001", i, r.order, r.closeCode, r.err)
		}
		if r.retryAfter < 0 || r.retryAfter >= goawayJitterMS || r.url != nil {
			t.Fatalf("client %d: got retry_after_ms %v url %v, want [0,%d) and no url", i, r.retryAfter, r.url, goawayJitterMS)
		}
		if first.IsZero() || r.goawayAt.Before(first) {
			first = r.goawayAt
		}
		if r.goawayAt.After(last) {
			last = r.goawayAt
		}
		// An ack sent well before the client's goaway was read while the
		// session was open, so it must have reached logic.
		if sent, ok := acksSent[sessions[i]]; ok && r.goawayAt.Sub(sent) > 500*time.Millisecond && !acked[sessions[i]] {
			t.Errorf("client %d: ack sent %v before its goaway never reached logic", i, r.goawayAt.Sub(sent))
		}
	}
	t.Logf("goaways from %v to %v after the drain began", first.Sub(start), last.Sub(start))
	if spread := last.Sub(first); spread < window/2 {
		t.Fatalf("goaways spread over %v, want at least half of the %v window", spread, window)
	}
	if end := last.Sub(start); end > window+5*time.Second {
		t.Fatalf("last goaway %v after the drain began, want within about the %v window", end, window)
	}
	if got := ts.m.drained.Get(); got != n {
		t.Fatalf("got drained %d, want %d", got, n)
	}
	if got := ts.m.rejects[rejectDraining].Get(); got == 0 {
		t.Fatal("got rejected{reason=draining} 0, want the refused connection counted")
	}
}
