package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/client/internal/fakeserver"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

func TestSendAndDeliver(t *testing.T) {
	s := newFakeServer(t)
	alice := dialT(t, testConfig(s, "alice"))
	bob := dialT(t, testConfig(s, "bob"))
	if got, want := alice.Hello().User, "alice"; got != want {
		t.Fatalf("hello user: got %q, want %q", got, want)
	}
	ctx := context.Background()
	sent, err := alice.SendTo(ctx, "bob", "hi bob")
	if err != nil {
		t.Fatalf("SendTo: %v", err)
	}
	if got, want := sent.Chat, record.DirectChatID("alice", "bob"); got != want {
		t.Fatalf("chat: got %q, want %q", got, want)
	}
	if sent.Seq != 1 || len(sent.RequestID) != 32 {
		t.Fatalf("sent: got seq %d id %q, want seq 1 and a 32-char id", sent.Seq, sent.RequestID)
	}
	m := recvMsg(t, bob)
	if m.Chat != sent.Chat || m.Seq != 1 || m.From != "alice" || m.Body != "hi bob" || m.RequestID != sent.RequestID || m.IsSystem() {
		t.Fatalf("got message %+v", m)
	}
	// bob acks automatically; the fake turns the ack into a receipt for alice.
	select {
	case r := <-alice.Receipts():
		if r.User != "bob" || r.Seq != 1 || r.Chat != sent.Chat {
			t.Fatalf("got receipt %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no receipt")
	}
	acks := s.Frames(proto.TypeAck)
	if len(acks) != 1 || acks[0].Chat != sent.Chat || acks[0].Seq != 1 {
		t.Fatalf("got acks %+v, want one for seq 1", acks)
	}
	sent2, err := bob.Send(ctx, sent.Chat, "hi alice")
	if err != nil || sent2.Seq != 2 {
		t.Fatalf("Send: got %+v, %v; want seq 2", sent2, err)
	}
	// alice's own message (seq 1) is not delivered to her; seq 2 comes
	// straight away without a gap wait.
	if m := recvMsg(t, alice); m.Seq != 2 || m.From != "bob" {
		t.Fatalf("got %+v, want seq 2 from bob", m)
	}
}

func TestAuthTransport(t *testing.T) {
	for _, inQuery := range []bool{false, true} {
		s := newFakeServer(t)
		cfg := testConfig(s, "carol")
		cfg.TokenInQuery = inQuery
		c := dialT(t, cfg)
		_ = c.Close()
		qs, as := s.Upgrades()
		q, authz := qs[0], as[0]
		if q.Get("device") != "d-carol" {
			t.Errorf("inQuery=%v: device: got %q, want d-carol", inQuery, q.Get("device"))
		}
		if inQuery && (q.Get("token") != "tok-carol" || authz != "") {
			t.Errorf("inQuery: got token %q authz %q", q.Get("token"), authz)
		}
		if !inQuery && (authz != "Bearer tok-carol" || q.Has("token")) {
			t.Errorf("header: got authz %q query %v", authz, q)
		}
	}
}

func TestDialRefused(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s, "x")
	cfg.Token = "garbage"
	_, err := Dial(context.Background(), cfg)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != proto.CloseAuthFailed {
		t.Fatalf("got %v, want CloseError 4005", err)
	}
	cfg.URL = "ws://127.0.0.1:1/ws"
	if _, err := Dial(context.Background(), cfg); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	if _, err := Dial(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "url is required") {
		t.Fatalf("got %v, want a config error", err)
	}
}

func TestResendAfterDrop(t *testing.T) {
	s := newFakeServer(t)
	var drops atomic.Int32
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend && drops.Add(1) == 1 {
			// Store the message, then lose the connection before answering.
			s.Store(fc.User, fc.Device, in)
			fc.Close()
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	sent, err := c.SendWithID(context.Background(), "req-1", "g:room", "once")
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if sent.Seq != 1 || sent.RequestID != "req-1" {
		t.Fatalf("got %+v, want seq 1 req-1", sent)
	}
	sends := s.Frames(proto.TypeSend)
	if len(sends) != 2 || sends[0].ID != "req-1" || sends[1].ID != "req-1" {
		t.Fatalf("got sends %+v, want req-1 twice", sends)
	}
	n := len(s.Messages("g:room"))
	if n != 1 {
		t.Fatalf("stored %d messages, want 1", n)
	}
	if got := c.Stats().Reconnects; got != 1 {
		t.Fatalf("reconnects: got %d, want 1", got)
	}
}

func TestRetryableError(t *testing.T) {
	s := newFakeServer(t)
	var n atomic.Int32
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend && n.Add(1) == 1 {
			fc.Write(proto.AppendError(nil, in.ID, &proto.Error{Code: proto.CodeRateLimited, Message: "slow down", RetryAfterMS: 80}))
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	start := time.Now()
	if _, err := c.Send(context.Background(), "g:room", "x"); err != nil {
		t.Fatalf("send: %v", err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("retried after %v, want at least the 80ms hint", d)
	}

	// Without SendRetry the error comes back typed.
	cfg := testConfig(s, "bob")
	cfg.SendRetry = false
	n.Store(0)
	b := dialT(t, cfg)
	_, err := b.Send(context.Background(), "g:room", "x")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeRateLimited || !pe.Retryable || pe.RetryAfter != 80*time.Millisecond {
		t.Fatalf("got %v, want rate_limited retryable with 80ms", err)
	}
}

func TestPermanentError(t *testing.T) {
	s := newFakeServer(t)
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend {
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeNotMember, "not a member")))
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	_, err := c.Send(context.Background(), "g:room", "x")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeNotMember || pe.Retryable {
		t.Fatalf("got %v, want not_member", err)
	}
	if got := len(s.Frames(proto.TypeSend)); got != 1 {
		t.Fatalf("got %d attempts, want 1", got)
	}
}

func TestRetryUntilContextDone(t *testing.T) {
	s := newFakeServer(t)
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend {
			fc.Write(proto.AppendError(nil, in.ID, proto.Errorf(proto.CodeUnavailable, "down")))
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Send(ctx, "g:room", "x")
	var pe *Error
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &pe) || pe.Code != CodeUnavailable {
		t.Fatalf("got %v, want deadline exceeded wrapping unavailable", err)
	}
	sends := s.Frames(proto.TypeSend)
	if len(sends) < 2 {
		t.Fatalf("got %d attempts, want several", len(sends))
	}
	for _, f := range sends {
		if f.ID != sends[0].ID {
			t.Fatalf("request id changed between retries: %q vs %q", f.ID, sends[0].ID)
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	s := newFakeServer(t)
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool { return in.Type == proto.TypePing })
	cfg := testConfig(s, "alice")
	cfg.RequestTimeout = 50 * time.Millisecond
	cfg.SendRetry = false
	c := dialT(t, cfg)
	if _, err := c.Ping(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
}

func TestNoReconnectOnAuthClose(t *testing.T) {
	for _, code := range []int{proto.CloseTokenExpired, proto.CloseAuthFailed, proto.ClosePolicy, proto.CloseReplaced} {
		s := newFakeServer(t)
		c := dialT(t, testConfig(s, "alice"))
		for _, fc := range s.ConnsOf("alice") {
			fc.CloseWith(code, "bye")
		}
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("code %d: client still running", code)
		}
		var ce *CloseError
		if err := c.Err(); !errors.Is(err, ErrClosed) || !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("code %d: got Err %v", code, err)
		}
		if _, err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("code %d: ping after stop: got %v, want ErrClosed", code, err)
		}
		if _, ok := <-c.Messages(); ok {
			t.Fatalf("code %d: messages channel still open", code)
		}
		var last State
		for st := range c.States() {
			last = st
		}
		if last.Kind != StateClosed {
			t.Fatalf("code %d: last state %v, want closed", code, last.Kind)
		}
		qs, _ := s.Upgrades()
		n := len(qs)
		if n != 1 {
			t.Fatalf("code %d: got %d upgrades, want 1", code, n)
		}
	}
}

func TestTokenRefreshAfterExpiry(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s, "alice")
	cfg.Token = ""
	var calls, gen atomic.Int32
	cfg.TokenFunc = func(context.Context) (string, error) {
		calls.Add(1)
		if gen.Load() == 0 {
			return "tok-alice.v1", nil
		}
		return "tok-alice.v2", nil
	}
	c := dialT(t, cfg)
	gen.Store(1)
	for _, fc := range s.ConnsOf("alice") {
		fc.CloseWith(proto.CloseTokenExpired, "expired")
	}
	waitFor(t, "reconnect", func() bool { return c.Stats().Reconnects == 1 && c.State().Kind == StateConnected })
	if _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping after refresh: %v", err)
	}
	_, as := s.Upgrades()
	last := as[len(as)-1]
	if last != "Bearer tok-alice.v2" {
		t.Fatalf("got authorization %q, want the refreshed token", last)
	}
	// The same token again: the client must stop.
	for _, fc := range s.ConnsOf("alice") {
		fc.CloseWith(proto.CloseTokenExpired, "expired")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client kept reconnecting with a refused token")
	}
}

func TestReconnectStates(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "alice"))
	if st := <-c.States(); st.Kind != StateConnected || st.Hello.User != "alice" {
		t.Fatalf("got first state %+v, want connected", st)
	}
	for _, fc := range s.ConnsOf("alice") {
		fc.CloseWith(proto.CloseServiceRestart, "restart")
	}
	var kinds []StateKind
	for len(kinds) < 2 {
		select {
		case st := <-c.States():
			if len(kinds) == 0 && st.Kind == StateConnected && st.Synced {
				continue // the first connection's "synced" update may come late
			}
			kinds = append(kinds, st.Kind)
		case <-time.After(5 * time.Second):
			t.Fatalf("got states %v, want reconnecting then connected", kinds)
		}
	}
	if kinds[0] != StateReconnecting || kinds[1] != StateConnected {
		t.Fatalf("got states %v, want reconnecting then connected", kinds)
	}
}

func TestOrdering(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s, "bob")
	cfg.GapWait = 5 * time.Second // reordering only; no history fetch
	c := dialT(t, cfg)
	msg := func(seq uint64) []byte {
		return proto.AppendMsg(nil, &record.Message{ChatID: "g:x", Seq: seq, Sender: "eve", Device: "d1",
			Kind: record.MsgText, Body: "m"})
	}
	for _, seq := range []uint64{1, 2, 2, 1, 4, 3, 5} {
		s.Broadcast("bob", msg(seq))
	}
	for _, want := range []uint64{1, 2, 3, 4, 5} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	waitFor(t, "ack of 5", func() bool {
		acks := s.Frames(proto.TypeAck)
		return len(acks) > 0 && acks[len(acks)-1].Seq == 5
	})
	if got := c.Stats().Duplicates; got != 2 {
		t.Fatalf("duplicates: got %d, want 2", got)
	}
}

// TestGapFromTheStartFilled: a new device's first live message is seq 5
// of a 6-message chat; the gap below it starts at seq 1, and "after 0" asks
// the server for the newest page, so the client must page from the start
// another way or it skips 1..4 for good.
func TestGapFromTheStartFilled(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	for seq := uint64(1); seq <= 6; seq++ {
		s.Put(record.Message{ChatID: "g:x", Seq: seq, Sender: "eve", Device: "d1", Kind: record.MsgText, Body: "m"})
	}
	all := s.Messages("g:x")
	s.Broadcast("bob", proto.AppendMsg(nil, &all[4]))
	for _, want := range []uint64{1, 2, 3, 4, 5} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if st := c.Stats(); st.GapsFilled != 1 || st.GapsSkipped != 0 {
		t.Fatalf("got stats %+v, want the gap filled, none skipped", st)
	}
}

func TestGapFilledFromHistory(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	for seq := uint64(1); seq <= 4; seq++ {
		s.Put(record.Message{ChatID: "g:x", Seq: seq, Sender: "eve", Device: "d1", Kind: record.MsgText, Body: "m"})
	}
	all := s.Messages("g:x")
	s.Broadcast("bob", proto.AppendMsg(nil, &all[0]))
	s.Broadcast("bob", proto.AppendMsg(nil, &all[3])) // 2 and 3 are lost
	for _, want := range []uint64{1, 2, 3, 4} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if st := c.Stats(); st.GapsFilled != 1 || st.GapsSkipped != 0 || st.Gaps != 1 || st.Duplicates != 0 {
		t.Fatalf("got stats %+v, want one gap seen and filled, no duplicates", st)
	}
}

func TestTwoGapsBothFilled(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	for seq := uint64(1); seq <= 6; seq++ {
		s.Put(record.Message{ChatID: "g:2", Seq: seq, Sender: "eve", Device: "d1", Kind: record.MsgText, Body: "m"})
	}
	all := s.Messages("g:2")
	for _, i := range []int{0, 3, 5} { // 2, 3 and 5 are lost
		s.Broadcast("bob", proto.AppendMsg(nil, &all[i]))
	}
	for want := uint64(1); want <= 6; want++ {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	// One history read may fill both gaps when 6 arrived before the first
	// fill ran (it reads everything after 1): one or two fills, none skipped.
	if st := c.Stats(); st.GapsSkipped != 0 || st.GapsFilled < 1 || st.GapsFilled > 2 {
		t.Fatalf("got stats %+v, want one or two fills, none skipped", st)
	}
}

func TestGapSkipped(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	msg := func(seq uint64) []byte {
		return proto.AppendMsg(nil, &record.Message{ChatID: "g:y", Seq: seq, Sender: "eve", Kind: record.MsgText})
	}
	s.Broadcast("bob", msg(1))
	s.Broadcast("bob", msg(3)) // 2 is nowhere
	for _, want := range []uint64{1, 3} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if st := c.Stats(); st.GapsSkipped != 1 {
		t.Fatalf("got stats %+v, want one gap skipped", st)
	}
}

func TestRequests(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "alice"))
	_ = dialT(t, testConfig(s, "bob"))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.Send(ctx, "g:h", "m"); err != nil {
			t.Fatal(err)
		}
	}
	page, more, err := c.History(ctx, "g:h", HistoryQuery{Limit: 2})
	if err != nil || !more || len(page) != 2 || page[0].Seq != 2 || page[1].Seq != 3 {
		t.Fatalf("history: got %+v more=%v err=%v", page, more, err)
	}
	page, more, err = c.History(ctx, "g:h", HistoryQuery{Before: 2})
	if err != nil || more || len(page) != 1 || page[0].Seq != 1 || page[0].From != "alice" {
		t.Fatalf("history before 2: got %+v more=%v err=%v", page, more, err)
	}
	chats, err := c.Chats(ctx)
	if err != nil || len(chats) != 1 || chats[0].Chat != "g:h" || chats[0].LastSeq != 3 || chats[0].Unread != 3 {
		t.Fatalf("chats: got %+v, %v", chats, err)
	}
	g, err := c.CreateGroup(ctx, "team", []string{"bob"})
	if err != nil || !strings.HasPrefix(g, "g:") {
		t.Fatalf("create: got %q, %v", g, err)
	}
	if seq, err := c.AddMember(ctx, g, "carol"); err != nil || seq != 1 {
		t.Fatalf("add: got %d, %v", seq, err)
	}
	if seq, err := c.RemoveMember(ctx, g, "bob"); err != nil || seq != 2 {
		t.Fatalf("remove: got %d, %v", seq, err)
	}
	ms, err := c.Members(ctx, g)
	if err != nil || strings.Join(ms, ",") != "alice,carol" {
		t.Fatalf("members: got %v, %v", ms, err)
	}
	if _, err := c.Leave(ctx, g); err != nil {
		t.Fatalf("leave: %v", err)
	}
	_, err = c.Members(ctx, "g:nope")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeChatNotFound {
		t.Fatalf("members of unknown chat: got %v", err)
	}
	ps, err := c.Presence(ctx, "bob", "zed")
	if err != nil || len(ps) != 2 || !ps[0].Online || ps[1].Online || ps[1].LastSeen.IsZero() {
		t.Fatalf("presence: got %+v, %v", ps, err)
	}
	if st, err := c.Settings(ctx); err != nil || st.HideLastSeen {
		t.Fatalf("settings: got %+v, %v, want last seen shown", st, err)
	}
	if st, err := c.SetHideLastSeen(ctx, true); err != nil || !st.HideLastSeen {
		t.Fatalf("hide last seen: got %+v, %v", st, err)
	}
	if f := s.Frames(proto.TypeSettings); len(f) != 2 || f[0].HideLastSeen != nil || f[1].HideLastSeen == nil || !*f[1].HideLastSeen {
		t.Fatalf("settings frames: got %+v, want a read then hide_last_seen true", f)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if err := c.MarkRead(ctx, "g:h", 3); err != nil {
		t.Fatalf("mark read: %v", err)
	}
	waitFor(t, "read frame", func() bool {
		r := s.Frames(proto.TypeRead)
		return len(r) == 1 && r[0].Chat == "g:h" && r[0].Seq == 3
	})
}

func TestPresencePush(t *testing.T) {
	s := newFakeServer(t)
	c := dialT(t, testConfig(s, "alice"))
	b, _ := proto.Marshal(proto.TypePresence, "", proto.PresenceAnswer{Users: []proto.PresenceInfo{{User: "bob", Online: true}}})
	s.Broadcast("alice", b)
	select {
	case p := <-c.PresenceEvents():
		if p.User != "bob" || !p.Online {
			t.Fatalf("got %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no presence event")
	}
}

func TestHeartbeat(t *testing.T) {
	s := newFakeServer(t)
	s.SetHeartbeat(20)
	c := dialT(t, testConfig(s, "alice"))
	if got := c.Hello().Heartbeat; got != 20*time.Millisecond {
		t.Fatalf("heartbeat: got %v, want 20ms", got)
	}
	waitFor(t, "heartbeat pings", func() bool { return len(s.Frames(proto.TypePing)) >= 2 })
}

func TestConcurrentSends(t *testing.T) {
	s := newFakeServer(t)
	var n atomic.Int32
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend && n.Add(1)%7 == 0 {
			fc.Close() // drop every 7th send unanswered
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.Send(ctx, "g:c", "x"); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("send: %v", err)
	}
	got := len(s.Messages("g:c"))
	if got != 40 {
		t.Fatalf("stored %d messages, want 40", got)
	}
}

func TestCloseIdempotentNoLeak(t *testing.T) {
	s := newFakeServer(t)
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		cfg := testConfig(s, "alice")
		cfg.GapWait = time.Hour
		c, err := Dial(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		// Leave a gap pending and a request in flight.
		s.Broadcast("alice", proto.AppendMsg(nil, &record.Message{ChatID: "g:z", Seq: 1, Kind: record.MsgText}))
		s.Broadcast("alice", proto.AppendMsg(nil, &record.Message{ChatID: "g:z", Seq: 3, Kind: record.MsgText}))
		var wg sync.WaitGroup
		wg.Add(2)
		for j := 0; j < 2; j++ {
			go func() {
				defer wg.Done()
				_ = c.Close()
			}()
		}
		wg.Wait()
		_ = c.Close()
		if _, err := c.Send(context.Background(), "g:z", "x"); !errors.Is(err, ErrClosed) {
			t.Fatalf("send after close: got %v, want ErrClosed", err)
		}
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before+1 })
}

// TestResyncLegacyServer: a server that refuses sync is caught up with
// history requests after a reconnect.
func TestResyncLegacyServer(t *testing.T) {
	s := newFakeServer(t)
	s.SetLegacy(true)
	c := dialT(t, testConfig(s, "bob"))
	waitSynced(t, c)
	put := func(seq uint64) record.Message {
		m := record.Message{ChatID: "g:r", Seq: seq, Sender: "eve", Device: "d1", Kind: record.MsgText, Body: "m"}
		s.Put(m)
		return m
	}
	for seq := uint64(1); seq <= 2; seq++ {
		m := put(seq)
		s.Broadcast("bob", proto.AppendMsg(nil, &m))
	}
	for _, want := range []uint64{1, 2} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	// 3 and 4 are stored while bob is away; nobody pushes them.
	put(3)
	put(4)
	for _, fc := range s.ConnsOf("bob") {
		fc.CloseWith(proto.CloseServiceRestart, "restart")
	}
	for _, want := range []uint64{3, 4} {
		if m := recvMsg(t, c); m.Seq != want {
			t.Fatalf("got seq %d, want %d", m.Seq, want)
		}
	}
	if got := c.Stats().Resyncs; got != 1 {
		t.Fatalf("resyncs: got %d, want 1", got)
	}
	waitFor(t, "ack of 4", func() bool {
		acks := s.Frames(proto.TypeAck)
		return len(acks) > 0 && acks[len(acks)-1].Seq == 4
	})
}

func TestHeartbeatIdleOnly(t *testing.T) {
	s := newFakeServer(t)
	s.SetHeartbeat(100)
	c := dialT(t, testConfig(s, "alice"))
	// Keep the connection busy: answers count as activity, so no
	// heartbeat pings are needed.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if _, err := c.Chats(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, p := range s.Frames(proto.TypePing) {
		if strings.HasPrefix(p.ID, "hb-") {
			t.Fatalf("got heartbeat ping %q on a busy connection", p.ID)
		}
	}
}

// TestPipelinedSendsKeepOrder: sends made one after another without
// waiting (each in its own goroutine), to a server that refuses some first
// attempts with rate_limited, are stored in the order they were made.
func TestPipelinedSendsKeepOrder(t *testing.T) {
	s := newFakeServer(t)
	var attempts atomic.Int32
	var seen sync.Map // bodies the server got an attempt of
	s.SetHook(func(fc *fakeserver.Conn, in proto.Inbound) bool {
		if in.Type == proto.TypeSend {
			seen.Store(*in.Body, true)
		}
		if in.Type == proto.TypeSend && attempts.Add(1)%3 == 1 {
			fc.Write(proto.AppendError(nil, in.ID, &proto.Error{Code: proto.CodeRateLimited, Message: "slow down", RetryAfterMS: 20}))
			return true
		}
		return false
	})
	c := dialT(t, testConfig(s, "alice"))
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := c.Send(context.Background(), "g:room", fmt.Sprintf("m%02d", i))
			errs <- err
		}()
		// The next send is made once the server saw this one: that is
		// the order the app made them in.
		for _, ok := seen.Load(fmt.Sprintf("m%02d", i)); !ok; _, ok = seen.Load(fmt.Sprintf("m%02d", i)) {
			time.Sleep(time.Millisecond)
		}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs := s.Messages("g:room")
	for i, m := range msgs {
		if want := fmt.Sprintf("m%02d", i); m.Body != want {
			t.Fatalf("stored #%d is %q, want %q (order %v)", i+1, m.Body, want, msgs)
		}
	}
	if len(msgs) != n || attempts.Load() <= n {
		t.Fatalf("stored %d of %d in %d attempts, want all with some refused", len(msgs), n, attempts.Load())
	}
}
