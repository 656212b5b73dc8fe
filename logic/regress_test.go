package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/logic/marks"
)

type capture struct {
	mu     sync.Mutex
	frames []string
}

func (c *capture) reply(f []byte) { c.mu.Lock(); c.frames = append(c.frames, string(f)); c.mu.Unlock() }

func newBareService(t *testing.T, st Store, tune func(*Config)) *Service {
	cfg := Default()
	cfg.LinkListen, cfg.HTTPListen, cfg.Shards = "127.0.0.1:0", "", 1
	cfg.LinkSecret = string(testLinkSecret)
	cfg.AdminListen = ""
	tune(&cfg)
	v, _ := auth.NewVerifier(auth.Config{Secret: testSecret}, nil)
	svc, err := New(cfg, st, nil, v, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func mkSend(id, from, to string, out replier) *request {
	body := "hi " + id
	r := &request{in: proto.Inbound{Type: proto.TypeSend, ID: id, To: to, Body: &body}, user: from, device: "d", out: out, recv: time.Now()}
	r.chat = record.DirectChatID(from, to)
	return r
}

// Regression tests for findings of a review of the delivery engine: each
// failed (panicked, stalled, spun or lost a message) before its fix.

// A full chat cache must not evict a chat with pending sends in the same
// batch (it panicked in flush, or reloaded the chat and reused a seq).
func TestCacheEvictionKeepsPendingChats(t *testing.T) {
	svc := newBareService(t, newMemStore(), func(c *Config) { c.ChatCacheSize = 1 })
	sh := svc.shards[0]
	c := &capture{}
	sh.process([]*request{mkSend("r1", "alice", "bob", c), mkSend("r2", "alice", "carol", c), mkSend("r3", "alice", "bob", c)})
	// Answers come chat by chat; within a chat in seq order.
	want := []string{`"id":"r1","chat":"dm:alice:bob","seq":1`, `"id":"r2","chat":"dm:alice:carol","seq":1`, `"id":"r3","chat":"dm:alice:bob","seq":2`}
	if len(c.frames) != len(want) {
		t.Fatalf("got frames %v, want 3 sent", c.frames)
	}
	for _, w := range want {
		i := slices.IndexFunc(c.frames, func(f string) bool { return strings.Contains(f, w) })
		if i < 0 || !strings.Contains(c.frames[i], `"type":"sent"`) {
			t.Fatalf("got frames %v, want a sent with %s", c.frames, w)
		}
	}
}

type flakyStore struct {
	Store
	failUntil     atomic.Int64
	failMessages  atomic.Bool
	msgCalls      atomic.Int64
	commitThenErr atomic.Bool
	dropAppends   atomic.Bool // appends refused as invalid, nothing written (the core drops them)
}

func (f *flakyStore) UserChats(ctx context.Context, u string) ([]record.ChatEntry, error) {
	if time.Now().UnixNano() < f.failUntil.Load() {
		return nil, errors.New("injected userchats failure")
	}
	return f.Store.UserChats(ctx, u)
}
func (f *flakyStore) Messages(ctx context.Context, c string, p record.Page) ([]record.Message, error) {
	f.msgCalls.Add(1)
	if f.failMessages.Load() {
		return nil, errors.New("injected read failure")
	}
	return f.Store.Messages(ctx, c, p)
}
func (f *flakyStore) AppendMessages(ctx context.Context, apps []record.ChatAppend) []record.AppendResult {
	if f.dropAppends.Load() {
		res := make([]record.AppendResult, len(apps))
		for i := range res {
			res[i].Err = fmt.Errorf("injected: %w", record.ErrInvalid)
		}
		return res
	}
	res := f.Store.AppendMessages(ctx, apps)
	if f.commitThenErr.Load() {
		for i := range res {
			if res[i].Err == nil {
				res[i] = record.AppendResult{Err: context.DeadlineExceeded}
			}
		}
	}
	return res
}

// expectMsg waits up to d for session s's next msg frame and checks its seq.
func expectMsg(t *testing.T, n *fakeNode, s uint64, seq int, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-n.ch(s):
			if m["type"] != "msg" {
				continue
			}
			if m["seq"] != float64(seq) {
				t.Fatalf("session %d: got %v, want msg seq %d", s, m, seq)
			}
			return
		case <-deadline:
			t.Fatalf("session %d: no msg seq %d within %s", s, seq, d)
		}
	}
}

// A transient failure when a catch-up starts is retried.
func TestCatchupRetriesAfterInitFailure(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.RetransmitTimeout = 200 * time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for i := 0; i < 3; i++ {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"r%d","to":"bob","body":"m%d"}`, i, i))
		n.nextType(1, "sent")
	}
	fs.failUntil.Store(time.Now().Add(300 * time.Millisecond).UnixNano())
	n.openSync(2, "bob", "phone", "")
	expectMsg(t, n, 2, 1, 3*time.Second)
}

// A failing store read stops the catch-up (no spinning) and it resumes
// once the store is back.
func TestCatchupBacksOffOnReadErrors(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.Breaker.Failures = 1 << 30; c.StoreTimeout = time.Second })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"m"}`)
	n.nextType(1, "sent")
	fs.failMessages.Store(true)
	before := fs.msgCalls.Load()
	n.openSync(2, "bob", "phone", "")
	time.Sleep(500 * time.Millisecond)
	if calls := fs.msgCalls.Load() - before; calls > 5 {
		t.Fatalf("catch-up read the store %d times in 500ms while it failed, want a back-off", calls)
	}
	fs.failMessages.Store(false)
	expectMsg(t, n, 2, 1, 3*time.Second)
}

// A write that was stored but reported an error is fanned out when the
// client's retry finds it by its request id.
func TestDedupHitFansOut(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.RetransmitTimeout = 200 * time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "phone")
	n.send(1, `{"type":"send","id":"r0","to":"bob","body":"m0"}`)
	n.nextType(1, "sent")
	m := n.nextType(2, "msg")
	n.send(2, fmt.Sprintf(`{"type":"ack","chat":%q,"seq":1}`, m["chat"]))
	fs.commitThenErr.Store(true)
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"m1"}`)
	n.nextType(1, "error")
	fs.commitThenErr.Store(false)
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"m1"}`)
	if m := n.nextType(1, "sent"); m["seq"] != float64(2) {
		t.Fatalf("retry got %v, want the original seq 2", m)
	}
	expectMsg(t, n, 2, 2, 2*time.Second)
}

// A chat the session learns about after sync starts at its first message,
// even when that message was not fanned out live.
func TestNewChatStartsAtItsFirstMessage(t *testing.T) {
	fs := &flakyStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.RetransmitTimeout = 200 * time.Millisecond })
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "phone")
	fs.commitThenErr.Store(true)
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"m1"}`)
	n.nextType(1, "error")
	fs.commitThenErr.Store(false)
	n.send(1, `{"type":"send","id":"r1","to":"bob","body":"m1"}`)
	n.nextType(1, "sent")
	n.send(1, `{"type":"send","id":"r2","to":"bob","body":"m2"}`)
	n.nextType(1, "sent")
	expectMsg(t, n, 2, 1, 2*time.Second)
	expectMsg(t, n, 2, 2, 2*time.Second)
}

// TestGroupAddRetryKeepsItsEvent: a group_add that fails half way (its
// event or its membership write) is completed by the client's retry with
// the same request id: the member is added and the event exists exactly
// once (before the fix, a failed event append after the membership write
// left the change without an event for good).
func TestGroupAddRetryKeepsItsEvent(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*memStore)
	}{
		{"membership write fails", func(m *memStore) { m.failMembers = 1 }},
		{"event append fails", func(m *memStore) { m.failAppends = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newMemStore()
			svc := startService(t, st)
			n := dialNode(t, svc.LinkAddr())
			n.open(1, "gowner", "d")
			n.send(1, `{"type":"group_create","id":"g","name":"g","members":["gm1"]}`)
			until := func(typ string) map[string]any {
				t.Helper()
				for {
					if m := n.next(1); m["type"] == typ {
						return m
					}
				}
			}
			chat := until("ok")["chat"].(string)
			st.mu.Lock()
			tc.inject(st)
			st.mu.Unlock()
			n.send(1, `{"type":"group_add","id":"add1","chat":"`+chat+`","user":"gnew"}`)
			if e := until("error"); e["code"] != "unavailable" {
				t.Fatalf("got %v, want a retryable error", e)
			}
			n.send(1, `{"type":"group_add","id":"add1","chat":"`+chat+`","user":"gnew"}`)
			ok := until("ok")
			members, err := st.Members(context.Background(), chat)
			if err != nil || !slices.Contains(members, "gnew") {
				t.Fatalf("members %v (%v), want gnew added by the retry", members, err)
			}
			msgs, err := st.Messages(context.Background(), chat, record.Page{After: 1, Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			added := 0
			for _, m := range msgs {
				if strings.Contains(m.Body, `"member_added"`) {
					added++
					if m.Seq != uint64(ok["seq"].(float64)) {
						t.Fatalf("ok names seq %v, the event is seq %d", ok["seq"], m.Seq)
					}
				}
			}
			if added != 1 {
				t.Fatalf("got %d member_added events, want 1", added)
			}
		})
	}
}

// flushingStore writes the marks writer's pending marks in the middle of
// a ChatCursors call: after reading the store, before returning what it
// read (a write that ends while the read is in flight).
type flushingStore struct {
	Store
	marks atomic.Pointer[marks.Writer]
}

func (f *flushingStore) ChatCursors(ctx context.Context, chat string) ([]record.DeviceCursor, error) {
	cs, err := f.Store.ChatCursors(ctx, chat)
	if err == nil {
		err = f.flush(ctx)
	}
	return cs, err
}

func (f *flushingStore) DeviceCursor(ctx context.Context, user, device, chat string) (uint64, error) {
	c, err := f.Store.DeviceCursor(ctx, user, device, chat)
	if err == nil {
		err = f.flush(ctx)
	}
	return c, err
}

func (f *flushingStore) flush(ctx context.Context) error {
	if w := f.marks.Load(); w != nil {
		return w.Flush(ctx)
	}
	return nil
}

// waitPendingCursor waits until bob/phone's ack of seq 1 in chat waits in
// the marks writer.
func waitPendingCursor(t *testing.T, svc *Service, chat string) {
	t.Helper()
	eventually(t, 5*time.Second, func() (bool, string) {
		got := svc.marks.Get(record.MarkCursor, "bob", "phone", chat)
		return got == 1, fmt.Sprintf("bob/phone's pending cursor is %d, want 1", got)
	})
}

// TestAckedNotResentAfterAMarksWrite: a device that reconnects while its
// ack is being written is not sent the acked message again (before, its
// session read the store's cursor, then the marks writer's: an ack written
// between the two reads was in neither).
func TestAckedNotResentAfterAMarksWrite(t *testing.T) {
	fs := &flushingStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.MarksInterval = time.Hour })
	n := dialNode(t, svc.LinkAddr())
	chat := ackedHi(t, n)
	n.nextType(2, "synced")
	waitPendingCursor(t, svc, chat)
	n.close(2)
	fs.marks.Store(svc.marks)
	t.Cleanup(func() { fs.marks.Store(nil) }) // before shutdown: no Flush beside Run's
	n.openSync(3, "bob", "phone", "")         // no positions: the server's cursor decides
	n.nextType(3, "synced")                   // a msg first would be seq 1 resent
}

// TestReceiptNotLostToAMarksWrite: a sender who syncs while the
// recipient's ack is being written gets the receipt. Before, the sync read
// the store's cursors and then the marks writer's: an ack written between
// the two reads was in neither.
func TestReceiptNotLostToAMarksWrite(t *testing.T) {
	fs := &flushingStore{Store: newMemStore()}
	svc := startService(t, fs, func(c *Config) { c.MarksInterval = time.Hour })
	n := dialNode(t, svc.LinkAddr())
	chat := ackedHi(t, n)
	waitPendingCursor(t, svc, chat)
	fs.marks.Store(svc.marks)
	t.Cleanup(func() { fs.marks.Store(nil) }) // before shutdown: no Flush beside Run's
	n.openSync(3, "alice", "d", `{"`+chat+`":1}`)
	r := n.nextType(3, "receipt")
	if r["user"] != "bob" || r["device"] != "phone" || r["seq"] != float64(1) {
		t.Fatalf("got %v, want bob/phone's receipt for seq 1", r)
	}
	if got, err := fs.Store.DeviceCursor(t.Context(), "bob", "phone", chat); err != nil || got != 1 {
		t.Fatalf("stored cursor: got %d, %v, want 1 (the write happened during the sync)", got, err)
	}
}
