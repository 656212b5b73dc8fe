package connsrv

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/tierlink"
)

var testAuth = auth.Config{Secret: "0123456789abcdef0123456789abcdef", Leeway: time.Second}

// testLinkSecret authenticates the fake logic node's links.
var testLinkSecret = tierlink.Secret("link-secret-link-secret-link-secret")

// linkEvent is one frame the fake logic tier received.
type linkEvent struct {
	typ     tierlink.Type
	session uint64
	payload []byte
	open    tierlink.Open
}

// fakeLogic is a logic tier speaking tierlink: it answers Hello, records
// Open/Data/Close and lets the test send Deliver/Multi/Kick.
type fakeLogic struct {
	t      *testing.T
	ln     net.Listener
	events chan linkEvent

	mu       sync.Mutex
	conns    []net.Conn
	sessConn map[uint64]net.Conn
	users    map[string]uint64 // user -> latest session
	wmu      map[net.Conn]*sync.Mutex
}

func newFakeLogic(t *testing.T) *fakeLogic {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLogic{t: t, ln: ln, events: make(chan linkEvent, 10000), sessConn: map[uint64]net.Conn{}, users: map[string]uint64{}, wmu: map[net.Conn]*sync.Mutex{}}
	go f.accept()
	t.Cleanup(func() {
		ln.Close()
		f.killLinks()
	})
	return f
}

func (f *fakeLogic) addr() string { return f.ln.Addr().String() }

func (f *fakeLogic) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.wmu[c] = &sync.Mutex{}
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *fakeLogic) write(c net.Conn, b []byte) {
	f.mu.Lock()
	m := f.wmu[c]
	f.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	_, _ = c.Write(b)
}

func (f *fakeLogic) serve(c net.Conn) {
	r := tierlink.NewReader(c, 4096, 0)
	for {
		fr, err := r.Next()
		if err != nil {
			c.Close()
			return
		}
		ev := linkEvent{typ: fr.Type, session: fr.Session, payload: append([]byte(nil), fr.Payload...)}
		switch fr.Type {
		case tierlink.TypeHello:
			f.mu.Lock()
			m := f.wmu[c]
			f.mu.Unlock()
			m.Lock()
			_, err := tierlink.AcceptHandshake(c, r, fr, "fake-logic", testLinkSecret, nil)
			m.Unlock()
			if err != nil {
				c.Close()
				return
			}
			continue
		case tierlink.TypePing:
			n, _ := tierlink.ParsePing(fr.Payload)
			f.write(c, tierlink.AppendPing(nil, tierlink.TypePong, n))
			continue
		case tierlink.TypePong:
			continue
		case tierlink.TypeOpen:
			o, err := tierlink.ParseOpen(fr.Payload)
			if err != nil {
				f.t.Errorf("bad open payload: %v", err)
			}
			ev.open = o
			f.mu.Lock()
			f.sessConn[fr.Session] = c
			f.users[o.User] = fr.Session
			f.mu.Unlock()
		}
		f.events <- ev
	}
}

// killLinks closes every link connection (simulates a logic crash).
func (f *fakeLogic) killLinks() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// next returns the next event of one of the given types (others skipped).
func (f *fakeLogic) next(t *testing.T, types ...tierlink.Type) linkEvent {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-f.events:
			for _, ty := range types {
				if ev.typ == ty {
					return ev
				}
			}
		case <-timeout:
			t.Fatalf("no %v event within 5s", types)
		}
	}
}

// send writes a frame on the link carrying session.
func (f *fakeLogic) send(t *testing.T, session uint64, frame []byte) {
	t.Helper()
	f.mu.Lock()
	c := f.sessConn[session]
	f.mu.Unlock()
	if c == nil {
		t.Fatalf("no link for session %d", session)
	}
	f.write(c, frame)
}

type testServer struct {
	*Server
	logic *fakeLogic
	url   string
	stop  context.CancelFunc // cancels Run's context
}

func startServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	fl := newFakeLogic(t)
	cfg := Default()
	cfg.Listen = "tcp://127.0.0.1:0"
	cfg.NumEventLoop = 2
	cfg.LogicAddrs = []string{fl.addr()}
	cfg.LinkPoolSize = 2
	cfg.NodeID = "test-node"
	cfg.LinkSecret = string(testLinkSecret)
	cfg.LinkPingInterval = time.Second
	cfg.LinkBackoffMax = 200 * time.Millisecond
	cfg.DrainWindow = 0 // tests that drain set their window
	if mod != nil {
		mod(&cfg)
	}
	v, err := auth.NewVerifier(testAuth, nil)
	if err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if os.Getenv("CONNSRV_DEBUG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := New(cfg, v, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: got %v, want nil", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return within 15s of cancel")
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready within 5s")
	}
	return &testServer{Server: srv, logic: fl, url: "ws://" + srv.Addr() + "/ws", stop: cancel}
}

func token(t *testing.T, user, device string, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Issue(testAuth, user, device, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// client is a test WebSocket client.
type client struct {
	t    *testing.T
	conn net.Conn
	r    io.Reader
	hs   ws.Handshake
}

func dial(t *testing.T, url string, header http.Header, protocols ...string) (*client, error) {
	t.Helper()
	d := ws.Dialer{Timeout: 5 * time.Second, Protocols: protocols}
	if header != nil {
		d.Header = ws.HandshakeHeaderHTTP(header)
	}
	conn, br, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	c := &client{t: t, conn: conn, r: r, hs: hs}
	t.Cleanup(func() { conn.Close() })
	return c, nil
}

// connect dials as user with the token in the Authorization header.
func (ts *testServer) connect(t *testing.T, user string) (*client, uint64) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + token(t, user, "", time.Hour)}}
	c, err := dial(t, ts.url, h)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	ev := ts.logic.next(t, tierlink.TypeOpen)
	if ev.open.User != user {
		t.Fatalf("got open for %q, want %q", ev.open.User, user)
	}
	return c, ev.session
}

func (c *client) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) sendText(s string) { c.sendRaw(maskedFrame(0x81, []byte(s))) }

// readFrame reads one server frame.
func (c *client) readFrame() (ws.Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	return readServerFrame(c.r)
}

// readServerFrame reads one frame, refusing payloads over 1 MiB.
func readServerFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return ws.Frame{}, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return ws.Frame{Header: h, Payload: p}, nil
}

// expectText reads frames, skipping pings, until a text frame arrives.
func (c *client) expectText() string {
	c.t.Helper()
	for {
		f, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		switch f.Header.OpCode {
		case ws.OpText:
			return string(f.Payload)
		case ws.OpPing:
			continue
		default:
			c.t.Fatalf("got opcode %v (%q), want text", f.Header.OpCode, f.Payload)
		}
	}
}

// expectClose reads until a close frame and returns its code; it then
// checks that the server closes the TCP connection.
func (c *client) expectClose() ws.StatusCode {
	c.t.Helper()
	for {
		f, err := c.readFrame()
		if err != nil {
			c.t.Fatalf("read while waiting for close: %v", err)
		}
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		if len(f.Payload) < 2 {
			return ws.StatusNoStatusRcvd
		}
		code := ws.StatusCode(binary.BigEndian.Uint16(f.Payload))
		_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c.r); err != nil && !errors.Is(err, net.ErrClosed) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("server did not close the connection after the close frame")
			}
		}
		return code
	}
}

var testMask = [4]byte{0xa1, 0xb2, 0xc3, 0xd4}

func maskedFrame(b0 byte, payload []byte) []byte {
	var out []byte
	n := len(payload)
	switch {
	case n <= 125:
		out = append(out, b0, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, b0, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, testMask[:]...)
	start := len(out)
	out = append(out, payload...)
	ws.Cipher(out[start:], testMask, 0)
	return out
}

// rawHandshake performs an HTTP request on a raw TCP connection and returns
// the connection and the status code.
func rawHandshake(t *testing.T, addr, req string) (net.Conn, int) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return c, resp.StatusCode
}
