package loadtest

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// fakeServer speaks just enough of the client protocol for the generator:
// hello, sync -> ok + synced, send -> sent + msg to "to" (per-chat seqs),
// group_create -> a system msg to every member + ok, ack -> recorded.
// Per message k, drop skips the delivery (a seq gap), resend pushes the same
// (chat, seq) twice (a retransmit), and store2 stores the send a second
// time under a new seq (a real duplicate).
type fakeServer struct {
	ln     net.Listener
	drop   func(k int) bool
	resend func(k int) bool
	store2 func(k int) bool
	// syncedDelay delays the synced frame; noSynced never sends it.
	syncedDelay time.Duration
	noSynced    bool

	mu         sync.Mutex // guards the following
	users      map[string]*fakeConn
	seqs       map[string]uint64            // chat -> last seq
	group      map[string][]string          // chat -> members
	pushed     map[string]map[string]uint64 // user -> chat -> highest seq pushed
	acked      map[string]map[string]uint64 // user -> chat -> highest seq acked
	badAcks    int                          // acks above what was pushed, or going backwards
	violations []string                     // protocol misuse by the generator
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
	never := func(int) bool { return false }
	s := &fakeServer{ln: ln, users: map[string]*fakeConn{}, seqs: map[string]uint64{}, group: map[string][]string{},
		pushed: map[string]map[string]uint64{}, acked: map[string]map[string]uint64{},
		drop: never, resend: never, store2: never}
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

// push writes a msg to user, recording it. s.mu must not be held.
func (s *fakeServer) push(user string, c *fakeConn, chat string, seq uint64, from, kind, body string) {
	s.mu.Lock()
	if s.pushed[user] == nil {
		s.pushed[user] = map[string]uint64{}
	}
	s.pushed[user][chat] = max(s.pushed[user][chat], seq)
	s.mu.Unlock()
	c.send(`{"type":"msg","chat":"` + chat + `","seq":` + strconv.FormatUint(seq, 10) + `,"from":"` + from + `","kind":"` + kind + `","body":"` + body + `"}`)
}

func (s *fakeServer) violate(v string) {
	s.mu.Lock()
	s.violations = append(s.violations, v)
	s.mu.Unlock()
}

func directChat(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return "d:" + a + ":" + b
}

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
	var synced, synced2 atomic.Bool // sync received; synced sent
	for {
		b, err := wsutil.ReadClientText(nc)
		if err != nil {
			return
		}
		var in struct {
			Type, ID, To, Chat, Name string
			Seq                      uint64
			Body                     string
			Members                  []string
		}
		if json.Unmarshal(b, &in) != nil {
			s.violate(user + ": bad frame " + string(b))
			return
		}
		switch in.Type {
		case "sync":
			if synced.Swap(true) {
				s.violate(user + ": second sync")
			}
			c.send(`{"type":"ok","id":"` + in.ID + `"}`)
			if !s.noSynced {
				go func() {
					time.Sleep(s.syncedDelay)
					synced2.Store(true)
					c.send(`{"type":"synced","id":"` + in.ID + `"}`)
				}()
			}
		case "ack":
			s.mu.Lock()
			if s.acked[user] == nil {
				s.acked[user] = map[string]uint64{}
			}
			if in.Seq > s.pushed[user][in.Chat] && in.Seq > s.seqs[in.Chat] || in.Seq < s.acked[user][in.Chat] {
				s.badAcks++
			}
			s.acked[user][in.Chat] = max(s.acked[user][in.Chat], in.Seq)
			s.mu.Unlock()
		case "group_create":
			if !synced2.Load() {
				s.violate(user + ": group_create before synced")
			}
			chat := "g:" + user
			members := append([]string{user}, in.Members...)
			s.mu.Lock()
			s.group[chat] = members
			s.seqs[chat] = 1
			var rcpt []*fakeConn
			for _, m := range members {
				rcpt = append(rcpt, s.users[m])
			}
			s.mu.Unlock()
			for i, r := range rcpt {
				s.push(members[i], r, chat, 1, user, "system", "created")
			}
			c.send(`{"type":"ok","id":"` + in.ID + `","chat":"` + chat + `","seq":1}`)
		case "send":
			if !synced2.Load() {
				s.violate(user + ": send before synced")
			}
			k, _ := strconv.Atoi(in.ID)
			chat := in.Chat
			if chat == "" {
				chat = directChat(user, in.To)
			}
			copies := 1
			if s.store2(k) {
				copies = 2
			}
			for range copies {
				s.mu.Lock()
				s.seqs[chat]++
				seq := s.seqs[chat]
				to := []string{in.To}
				if in.Chat != "" {
					to = s.group[in.Chat][1:]
				}
				var rcpt []*fakeConn
				for _, u := range to {
					rcpt = append(rcpt, s.users[u])
				}
				s.mu.Unlock()
				c.send(`{"type":"sent","id":"` + in.ID + `","chat":"` + chat + `","seq":` + strconv.FormatUint(seq, 10) + `,"ts":1}`)
				if s.drop(k) {
					continue
				}
				for i, r := range rcpt {
					s.push(to[i], r, chat, seq, user, "text", in.Body)
					if s.resend(k) {
						s.push(to[i], r, chat, seq, user, "text", in.Body)
					}
				}
			}
		}
	}
}
