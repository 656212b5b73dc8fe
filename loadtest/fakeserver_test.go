package loadtest

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeServer speaks just enough of the client protocol for the generator:
// hello, send -> sent + msg to "to", group_create -> ok. drop and dup
// decide, per message k, whether the delivery is dropped or sent twice.
type fakeServer struct {
	ln   net.Listener
	drop func(k int) bool
	dup  func(k int) bool

	mu    sync.Mutex // guards the following
	users map[string]*fakeConn
	seq   int
	group map[string][]string
}

type fakeConn struct {
	mu sync.Mutex // serializes writes
	nc net.Conn
}

func (c *fakeConn) send(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = wsutil.WriteServerText(c.nc, []byte(s))
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln, users: map[string]*fakeConn{}, group: map[string][]string{},
		drop: func(int) bool { return false }, dup: func(int) bool { return false }}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(nc)
		}
	}()
	return s
}

func (s *fakeServer) url() string { return "ws://" + s.ln.Addr().String() + "/ws" }

func (s *fakeServer) serve(nc net.Conn) {
	defer nc.Close()
	var user string
	u := ws.Upgrader{OnHeader: func(k, v []byte) error {
		if strings.EqualFold(string(k), "Authorization") {
			user = strings.TrimPrefix(string(v), "Bearer ")
		}
		return nil
	}}
	if _, err := u.Upgrade(nc); err != nil {
		return
	}
	c := &fakeConn{nc: nc}
	s.mu.Lock()
	s.users[user] = c
	s.mu.Unlock()
	c.send(`{"type":"hello","protocol":1,"user":"` + user + `"}`)
	for {
		b, err := wsutil.ReadClientText(nc)
		if err != nil {
			return
		}
		var in struct {
			Type, ID, To, Chat, Name string
			Body                     string
			Members                  []string
		}
		if json.Unmarshal(b, &in) != nil {
			return
		}
		switch in.Type {
		case "group_create":
			chat := "g:" + user
			s.mu.Lock()
			s.group[chat] = in.Members
			s.mu.Unlock()
			c.send(`{"type":"ok","id":"` + in.ID + `","chat":"` + chat + `","seq":1}`)
		case "send":
			k, _ := strconv.Atoi(in.ID)
			s.mu.Lock()
			s.seq++
			seq := strconv.Itoa(s.seq)
			to := []string{in.To}
			if in.Chat != "" {
				to = s.group[in.Chat]
			}
			var rcpt []*fakeConn
			for _, u := range to {
				rcpt = append(rcpt, s.users[u])
			}
			s.mu.Unlock()
			c.send(`{"type":"sent","id":"` + in.ID + `","chat":"c","seq":` + seq + `,"ts":1}`)
			if s.drop(k) {
				continue
			}
			msg := `{"type":"msg","chat":"c","seq":` + seq + `,"from":"` + user + `","kind":"text","body":"` + in.Body + `"}`
			for _, r := range rcpt {
				r.send(msg)
				if s.dup(k) {
					r.send(msg)
				}
			}
		}
	}
}
