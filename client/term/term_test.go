package term

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/client/internal/fakeserver"
)

// syncBuffer is an io.Writer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// terminal is one running Run session.
type terminal struct {
	t    *testing.T
	name string
	in   *io.PipeWriter
	out  *syncBuffer
	done chan error
}

func start(t *testing.T, srv *fakeserver.Server, user string) *terminal {
	t.Helper()
	cfg := client.Default()
	cfg.URL = srv.URL
	cfg.Token = "tok-" + user
	cfg.Device = "d-" + user
	cfg.Backoff = client.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("cannot dial: %v", err)
	}
	pr, pw := io.Pipe()
	tm := &terminal{t: t, name: user, in: pw, out: &syncBuffer{}, done: make(chan error, 1)}
	go func() { tm.done <- Run(context.Background(), c, pr, tm.out) }()
	t.Cleanup(func() {
		_ = pw.Close()
		<-tm.done
		_ = c.Close()
	})
	tm.expect("connected as " + user)
	return tm
}

func (tm *terminal) say(line string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.in, line+"\n"); err != nil {
		tm.t.Fatalf("%s: cannot write %q: %v", tm.name, line, err)
	}
}

// expect waits until the output contains want.
func (tm *terminal) expect(want string) {
	tm.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(tm.out.String(), want) {
		if time.Now().After(deadline) {
			tm.t.Fatalf("%s: output does not contain %q; got:\n%s", tm.name, want, tm.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTwoTerminals(t *testing.T) {
	srv, err := fakeserver.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	alice := start(t, srv, "alice")
	bob := start(t, srv, "bob")

	alice.say("/to bob hello bob")
	alice.expect("sent #1 (dm:alice:bob)")
	bob.expect("[dm:alice:bob #1] alice: hello bob")
	alice.expect("✓✓ delivered to bob (dm:alice:bob #1)")

	bob.say("hi?")
	bob.expect("no current chat")
	bob.say("/use alice")
	bob.expect("now talking in alice")
	bob.say("hi alice")
	bob.expect("sent #2 (dm:alice:bob)")
	alice.expect("[dm:alice:bob #2] bob: hi alice")

	alice.say("/group team bob carol")
	alice.expect("created group team: g:grp1 (now talking there)")
	alice.say("in the group")
	alice.expect("sent #1 (g:grp1)")
	bob.expect("[g:grp1 #1] alice: in the group")
	bob.say("/g g:grp1 reply")
	bob.expect("sent #2 (g:grp1)")
	bob.say("/send bob oops")
	bob.expect(`"bob" is not a chat id`)

	alice.say("/members g:grp1")
	alice.expect("members of g:grp1: alice, bob, carol")
	alice.say("/add g:grp1 dave")
	alice.expect("ok")
	alice.say("/remove g:grp1 carol")
	alice.say("/members g:grp1")
	alice.expect("members of g:grp1: alice, bob, dave")
	alice.say("/members g:none")
	alice.expect("error: ")

	alice.say("/history bob 10")
	alice.expect("[dm:alice:bob #1] alice: hello bob\n[dm:alice:bob #2] bob: hi alice")
	alice.say("/history g:grp1")
	alice.expect("[g:grp1 #4] * system: ")

	alice.say("/chats")
	alice.expect("dm:alice:bob  direct")
	alice.expect("unread 2  (last #2)")

	alice.say("/presence bob zed")
	alice.expect("bob: online")
	alice.expect("zed: offline (last seen")
	alice.say("/lastseen")
	alice.expect("others may see when you were last online")
	alice.say("/lastseen hide")
	alice.expect("your last seen is hidden from others")
	alice.say("/lastseen maybe")
	alice.expect("usage: /lastseen [show|hide]")

	alice.say("/leave g:grp1")
	alice.expect("left g:grp1")
	alice.say("/help")
	alice.expect("/history [chat] [n]")
	alice.say("/bogus")
	alice.expect("unknown command /bogus")
	alice.say("/to bob")
	alice.expect("usage: /to <user> <text>")

	alice.say("/quit")
	select {
	case err := <-alice.done:
		if err != nil {
			t.Fatalf("Run after /quit: got %v, want nil", err)
		}
		alice.done <- nil // for cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after /quit")
	}
}

func TestEventsAndClientStop(t *testing.T) {
	srv, err := fakeserver.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	alice := start(t, srv, "alice")
	b, _ := jsonPresence("bob", true)
	srv.Broadcast("alice", b)
	alice.expect("* bob is online")
	for _, fc := range srv.ConnsOf("alice") {
		fc.CloseWith(1012, "restart")
	}
	alice.expect("* connection lost")
	alice.expect("* reconnected")
	for _, fc := range srv.ConnsOf("alice") {
		fc.CloseWith(4001, "token expired")
	}
	select {
	case err := <-alice.done:
		if err == nil || !strings.Contains(err.Error(), "4001") {
			t.Fatalf("got %v, want the 4001 close", err)
		}
		alice.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the client stopped")
	}
}

func TestEOFAndContext(t *testing.T) {
	srv, err := fakeserver.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := client.Default()
	cfg.URL, cfg.Token = srv.URL, "tok-alice"
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out syncBuffer
	if err := Run(context.Background(), c, strings.NewReader("/help\n"), &out); err != nil {
		t.Fatalf("Run on EOF: got %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, c, pr, &out) }()
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run ignored ctx")
	}
}
