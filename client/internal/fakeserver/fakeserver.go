// Package fakeserver is an in-memory stand-in for a Parley server that
// speaks the client WebSocket protocol well enough to test the SDK and the
// terminal client: a token is "tok-<user>" (or "tok-<user>.<anything>"),
// or a JWT whose sub names the user (its signature is not checked; an exp
// in the past is refused), and a refresh frame with a token of the same
// user is answered ok (Refreshes records them; SetRefuseRefresh makes the
// server answer auth_failed),
// every connection sees every chat, messages live in memory, and sends are
// deduplicated by (sender, request id). It keeps a delivery cursor per
// (user, device, chat), raised by acks and by sync, and answers sync with
// ok, the messages after the cursors (every chat, oldest first) and synced;
// Retransmit and Goaway drive the reliable-delivery paths. Hooks let tests
// inject drops and errors. Test use only; all methods are safe for
// concurrent use.
package fakeserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Server speaks the client protocol well enough to test the SDK: a
// token is "tok-<user>", every connection sees every chat, messages are
// kept in memory, sends are deduplicated by (sender, request id).
type Server struct {
	ln          net.Listener
	URL         string
	heartbeatMS atomic.Int64

	// hook, when set, sees every decoded client frame first; returning
	// true means it handled the frame.
	hook func(fc *Conn, in proto.Inbound) bool

	wg sync.WaitGroup

	mu           sync.Mutex // guards the following
	conns        map[*Conn]bool
	msgs         map[string][]record.Message // chat -> messages, seq order
	dedup        map[string]record.Message   // sender/request id -> message
	frames       []proto.Inbound             // every client frame, in order
	members      map[string][]string
	upgrades     []url.Values // query of every upgrade
	authz        []string     // Authorization header of every upgrade
	nextGrp      int
	cursors      map[string]uint64 // user/device/chat -> acked seq
	hideLastSeen map[string]bool   // user -> settings' hide_last_seen
	syncs        []Sync
	legacy       bool // refuse sync like a server without it
	// refreshes are the refresh frames received; refuseRefresh answers
	// them with auth_failed.
	refreshes     []Refresh
	refuseRefresh bool
}

// Refresh is a refresh frame a client sent, with when it arrived and
// whether the server accepted it.
type Refresh struct {
	User, Device, ID, Token string
	At                      time.Time
	Accepted                bool
}

// CodeAuthFailed is the error code of a refused refresh.
const CodeAuthFailed = "auth_failed"

// Sync is a sync frame a client sent.
type Sync struct {
	User, Device, ID string
	Chats            map[string]uint64
}

type Conn struct {
	srv    *Server
	nc     net.Conn
	User   string
	Device string
	wmu    sync.Mutex
}

// Close drops the connection without a close frame.
func (fc *Conn) Close() { _ = fc.nc.Close() }

// New starts a server on 127.0.0.1 and an ephemeral port; call Close.
func New() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot listen: %w", err)
	}
	s := &Server{ln: ln, URL: "ws://" + ln.Addr().String() + "/ws",
		conns: map[*Conn]bool{}, msgs: map[string][]record.Message{},
		dedup: map[string]record.Message{}, members: map[string][]string{}, cursors: map[string]uint64{}, hideLastSeen: map[string]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// SetHeartbeat sets the heartbeat_ms announced in later hello frames.
func (s *Server) SetHeartbeat(ms int64) { s.heartbeatMS.Store(ms) }

// Upgrades returns the query and Authorization header of every upgrade so
// far.
func (s *Server) Upgrades() ([]url.Values, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.upgrades...), append([]string(nil), s.authz...)
}

// Messages returns a copy of chat's stored messages.
func (s *Server) Messages(chat string) []record.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record.Message(nil), s.msgs[chat]...)
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for fc := range s.conns {
		_ = fc.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(nc)
		}()
	}
}

func (s *Server) serve(nc net.Conn) {
	defer nc.Close()
	var query url.Values
	var authz string
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			pu, err := url.ParseRequestURI(string(uri))
			if err == nil {
				query = pu.Query()
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			if strings.EqualFold(string(key), "Authorization") {
				authz = string(value)
			}
			return nil
		},
	}
	if _, err := u.Upgrade(nc); err != nil {
		return
	}
	token := query.Get("token")
	if t, ok := strings.CutPrefix(authz, "Bearer "); ok {
		token = t
	}
	s.mu.Lock()
	s.upgrades = append(s.upgrades, query)
	s.authz = append(s.authz, authz)
	s.mu.Unlock()
	user, ok := userOf(token, time.Now())
	if !ok {
		_ = wsutil.WriteServerMessage(nc, ws.OpClose, ws.NewCloseFrameBody(proto.CloseAuthFailed, "bad token"))
		return
	}
	device := query.Get("device")
	if device == "" {
		device = "d-" + user
	}
	fc := &Conn{srv: s, nc: nc, User: user, Device: device}
	s.mu.Lock()
	s.conns[fc] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, fc)
		s.mu.Unlock()
	}()
	fc.Write(proto.AppendHello(nil, user, device, 1, s.heartbeatMS.Load()))
	for {
		b, op, err := wsutil.ReadClientData(nc)
		if err != nil {
			return
		}
		if op != ws.OpText {
			continue
		}
		var rf struct {
			Type  string `json:"type"`
			ID    string `json:"id"`
			Token string `json:"token"`
		}
		if json.Unmarshal(b, &rf) == nil && rf.Type == "refresh" {
			s.refresh(fc, rf.ID, rf.Token)
			continue
		}
		in, err := proto.Decode(b)
		if err != nil {
			fc.Write(proto.AppendError(nil, in.ID, err.(*proto.Error)))
			continue
		}
		s.mu.Lock()
		s.frames = append(s.frames, in)
		if in.Type == proto.TypeSync {
			s.syncs = append(s.syncs, Sync{User: fc.User, Device: fc.Device, ID: in.ID, Chats: in.Chats})
		}
		hook, legacy := s.hook, s.legacy
		s.mu.Unlock()
		if hook != nil && hook(fc, in) {
			continue
		}
		if in.Type == proto.TypeSync && legacy {
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeUnknownType, "unknown frame type %q", in.Type)))
			continue
		}
		s.handle(fc, in)
	}
}

func (fc *Conn) Write(b []byte) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	_ = wsutil.WriteServerText(fc.nc, b)
}

// closeWith sends a close frame and closes the connection.
func (fc *Conn) CloseWith(code int, reason string) {
	fc.wmu.Lock()
	_ = wsutil.WriteServerMessage(fc.nc, ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason))
	fc.wmu.Unlock()
	_ = fc.nc.Close()
}

func (s *Server) handle(fc *Conn, in proto.Inbound) {
	switch in.Type {
	case proto.TypeSend:
		m := s.Store(fc.User, fc.Device, in)
		fc.Write(proto.AppendSent(nil, in.ID, m.ChatID, m.Seq, m.TS))
		s.mu.Lock()
		var others []*Conn
		for c := range s.conns {
			if c != fc {
				others = append(others, c)
			}
		}
		s.mu.Unlock()
		for _, c := range others {
			c.Write(proto.AppendMsg(nil, &m))
		}
	case proto.TypeAck:
		s.mu.Lock()
		key := fc.User + "/" + fc.Device + "/" + in.Chat
		s.cursors[key] = max(s.cursors[key], in.Seq)
		var others []*Conn
		for c := range s.conns {
			if c != fc {
				others = append(others, c)
			}
		}
		s.mu.Unlock()
		for _, c := range others {
			c.Write(proto.AppendReceipt(nil, in.Chat, fc.User, fc.Device, in.Seq))
		}
	case proto.TypeSync:
		s.sync(fc, in.ID, in.Chats)
	case proto.TypeRead:
	case proto.TypeHistory:
		s.mu.Lock()
		all := s.msgs[in.Chat]
		limit := in.Limit
		if limit == 0 {
			limit = 50
		}
		var after uint64
		if in.After != nil {
			after = *in.After
		}
		var page []record.Message
		for _, m := range all {
			if (in.Before == 0 || m.Seq < in.Before) && m.Seq > after {
				page = append(page, m)
			}
		}
		more := false
		if len(page) > limit {
			more = true
			if in.Before == 0 && in.After != nil {
				page = page[:limit]
			} else {
				page = page[len(page)-limit:]
			}
		}
		page = append([]record.Message(nil), page...)
		s.mu.Unlock()
		fc.Write(proto.AppendHistory(nil, in.ID, in.Chat, page, more))
	case proto.TypeChats:
		s.mu.Lock()
		var ans proto.ChatsAnswer
		for id, ms := range s.msgs {
			ans.Chats = append(ans.Chats, proto.ChatInfo{Chat: id, Kind: "direct", LastSeq: uint64(len(ms)), Unread: uint64(len(ms))})
		}
		s.mu.Unlock()
		b, _ := proto.Marshal(proto.TypeChats, in.ID, ans)
		fc.Write(b)
	case proto.TypeGroupCreate:
		s.mu.Lock()
		s.nextGrp++
		id := record.GroupChatID(fmt.Sprintf("grp%d", s.nextGrp))
		s.members[id] = append([]string{fc.User}, in.Members...)
		s.mu.Unlock()
		fc.Write(proto.AppendOK(nil, in.ID, id, 0))
	case proto.TypeGroupRole:
		s.mu.Lock()
		_, ok := s.members[in.Chat]
		s.mu.Unlock()
		if !ok {
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeChatNotFound, "no chat %s", in.Chat)))
			return
		}
		fc.Write(proto.AppendOK(nil, in.ID, in.Chat, 0))
	case proto.TypeGroupAdd, proto.TypeGroupRemove, proto.TypeGroupLeave:
		s.mu.Lock()
		if _, ok := s.members[in.Chat]; !ok {
			s.mu.Unlock()
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeChatNotFound, "no chat %s", in.Chat)))
			return
		}
		switch in.Type {
		case proto.TypeGroupAdd:
			s.members[in.Chat] = append(s.members[in.Chat], in.User)
		case proto.TypeGroupRemove, proto.TypeGroupLeave:
			who := in.User
			if in.Type == proto.TypeGroupLeave {
				who = fc.User
			}
			var keep []string
			for _, m := range s.members[in.Chat] {
				if m != who {
					keep = append(keep, m)
				}
			}
			s.members[in.Chat] = keep
		}
		seq := uint64(len(s.msgs[in.Chat]) + 1)
		s.msgs[in.Chat] = append(s.msgs[in.Chat], record.Message{ChatID: in.Chat, Seq: seq, Kind: record.MsgSystem,
			Body: `{"event":"` + in.Type + `"}`, TS: time.Now().UnixMilli()})
		s.mu.Unlock()
		fc.Write(proto.AppendOK(nil, in.ID, in.Chat, seq))
	case proto.TypeMembers:
		s.mu.Lock()
		ms, ok := s.members[in.Chat]
		s.mu.Unlock()
		if !ok {
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeChatNotFound, "no chat %s", in.Chat)))
			return
		}
		b, _ := proto.Marshal(proto.TypeMembers, in.ID, proto.MembersAnswer{Chat: in.Chat, Members: ms})
		fc.Write(b)
	case proto.TypePresence:
		var ans proto.PresenceAnswer
		s.mu.Lock()
		for _, u := range in.Users {
			online := false
			for c := range s.conns {
				if c.User == u {
					online = true
				}
			}
			p := proto.PresenceInfo{User: u, Online: online}
			if !online {
				p.LastSeen = 1700000000000
			}
			ans.Users = append(ans.Users, p)
		}
		s.mu.Unlock()
		b, _ := proto.Marshal(proto.TypePresence, in.ID, ans)
		fc.Write(b)
	case proto.TypeSettings:
		s.mu.Lock()
		if in.HideLastSeen != nil {
			s.hideLastSeen[fc.User] = *in.HideLastSeen
		}
		hide := s.hideLastSeen[fc.User]
		s.mu.Unlock()
		b, _ := proto.Marshal(proto.TypeSettings, in.ID, proto.SettingsAnswer{HideLastSeen: hide})
		fc.Write(b)
	case proto.TypePing:
		fc.Write(proto.AppendPong(nil, in.ID, time.Now().UnixMilli()))
	}
}

// store appends a send (deduplicated) and returns the stored message.
func (s *Server) Store(user, device string, in proto.Inbound) record.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := user + "/" + in.ID
	if m, ok := s.dedup[key]; ok {
		return m
	}
	chat := in.Chat
	if chat == "" {
		chat = record.DirectChatID(user, in.To)
	}
	m := record.Message{ChatID: chat, Seq: uint64(len(s.msgs[chat]) + 1), Sender: user, Device: device,
		RequestID: in.ID, TS: time.Now().UnixMilli(), Kind: record.MsgText, Body: *in.Body}
	s.msgs[chat] = append(s.msgs[chat], m)
	s.dedup[key] = m
	return m
}

// put stores a message without delivering it.
func (s *Server) Put(m record.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs[m.ChatID] = append(s.msgs[m.ChatID], m)
}

// framesOf returns the client frames of type typ received so far.
func (s *Server) Frames(typ string) []proto.Inbound {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []proto.Inbound
	for _, f := range s.frames {
		if f.Type == typ {
			out = append(out, f)
		}
	}
	return out
}

func (s *Server) SetHook(h func(fc *Conn, in proto.Inbound) bool) {
	s.mu.Lock()
	s.hook = h
	s.mu.Unlock()
}

// connsOf returns the live connections of user.
func (s *Server) ConnsOf(user string) []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Conn
	for c := range s.conns {
		if c.User == user {
			out = append(out, c)
		}
	}
	return out
}

// broadcast writes a raw frame to every connection of user.
func (s *Server) Broadcast(user string, frame []byte) {
	for _, c := range s.ConnsOf(user) {
		c.Write(frame)
	}
}

// SetLegacy makes the server refuse sync frames (error unknown_type), like
// a server from before reliable delivery.
func (s *Server) SetLegacy(on bool) {
	s.mu.Lock()
	s.legacy = on
	s.mu.Unlock()
}

// Syncs returns the sync frames received so far.
func (s *Server) Syncs() []Sync {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sync(nil), s.syncs...)
}

// Cursor returns the delivery cursor of (user, device, chat).
func (s *Server) Cursor(user, device, chat string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[user+"/"+device+"/"+chat]
}

// after returns, for every chat in id order, the stored messages after
// fc's cursor, except the device's own (they count as delivered to it).
// s.mu must be held.
func (s *Server) after(fc *Conn) []record.Message {
	chats := make([]string, 0, len(s.msgs))
	for id := range s.msgs {
		chats = append(chats, id)
	}
	slices.Sort(chats)
	var out []record.Message
	for _, id := range chats {
		cur := s.cursors[fc.User+"/"+fc.Device+"/"+id]
		for _, m := range s.msgs[id] {
			if m.Seq > cur && (m.Sender != fc.User || m.Device != fc.Device) {
				out = append(out, m)
			}
		}
	}
	return out
}

// sync raises fc's cursors to chats, answers ok, pushes everything after
// the cursors and sends synced.
func (s *Server) sync(fc *Conn, id string, chats map[string]uint64) {
	s.mu.Lock()
	for chat, seq := range chats {
		key := fc.User + "/" + fc.Device + "/" + chat
		s.cursors[key] = max(s.cursors[key], seq)
	}
	missed := s.after(fc)
	s.mu.Unlock()
	fc.Write(proto.AppendOK(nil, id, "", 0))
	for i := range missed {
		fc.Write(proto.AppendMsg(nil, &missed[i]))
	}
	fc.Write(proto.AppendSynced(nil, id))
}

// Retransmit pushes again, to every connection of user, every stored
// message after its device's cursor (what a server does when acks are
// late). It returns how many frames it wrote.
func (s *Server) Retransmit(user string) int {
	n := 0
	for _, c := range s.ConnsOf(user) {
		s.mu.Lock()
		missed := s.after(c)
		s.mu.Unlock()
		for i := range missed {
			c.Write(proto.AppendMsg(nil, &missed[i]))
			n++
		}
	}
	return n
}

// Goaway sends a goaway frame asking the client to reconnect after
// retryMS, to url when it is not empty.
func (fc *Conn) Goaway(retryMS int64, url string) {
	fc.Write(proto.AppendGoaway(nil, retryMS, url))
}

// userOf returns the user a token names: "tok-<user>[.<anything>]", or a
// JWT (not verified) whose sub is the user and whose exp, if any, is
// after now.
func userOf(token string, now time.Time) (string, bool) {
	if rest, ok := strings.CutPrefix(token, "tok-"); ok {
		user, _, _ := strings.Cut(rest, ".") // tok-<user>.<version> is accepted too
		return user, user != ""
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var c struct {
		Sub string  `json:"sub"`
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.Sub == "" {
		return "", false
	}
	if c.Exp != 0 && float64(now.Unix()) >= c.Exp {
		return "", false
	}
	return c.Sub, true
}

// refresh answers a refresh frame: ok when token names fc's user and the
// server does not refuse refreshes, else error auth_failed.
func (s *Server) refresh(fc *Conn, id, token string) {
	user, ok := userOf(token, time.Now())
	ok = ok && user == fc.User
	s.mu.Lock()
	if s.refuseRefresh {
		ok = false
	}
	s.refreshes = append(s.refreshes, Refresh{User: fc.User, Device: fc.Device, ID: id, Token: token, At: time.Now(), Accepted: ok})
	s.mu.Unlock()
	if !ok {
		fc.Write(proto.AppendError(nil, id, proto.Errorf(CodeAuthFailed, "token refused")))
		return
	}
	fc.Write(proto.AppendOK(nil, id, "", 0))
}

// Refreshes returns the refresh frames received so far.
func (s *Server) Refreshes() []Refresh {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Refresh(nil), s.refreshes...)
}

// SetRefuseRefresh makes the server answer refresh frames with an
// auth_failed error (on) or accept valid ones (off).
func (s *Server) SetRefuseRefresh(on bool) {
	s.mu.Lock()
	s.refuseRefresh = on
	s.mu.Unlock()
}
