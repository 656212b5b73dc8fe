package client

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/client/internal/fakeserver"
	"github.com/parley-chat/parley/internal/proto"
)

func newFakeServer(t *testing.T) *fakeserver.Server {
	t.Helper()
	s, err := fakeserver.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testConfig returns a fast config for user against s.
func testConfig(s *fakeserver.Server, user string) Config {
	cfg := Default()
	cfg.URL = s.URL
	cfg.Token = "tok-" + user
	cfg.Device = "d-" + user
	cfg.Backoff = Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	cfg.RetryBackoff = Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}
	cfg.RequestTimeout = 2 * time.Second
	cfg.GapWait = 50 * time.Millisecond
	return cfg
}

func dialT(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("cannot dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func recvMsg(t *testing.T, c *Client) Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("timed out waiting for a message")
	}
	return Message{}
}

func waitSynced(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
}

// noMsg fails if a message arrives within d.
func noMsg(t *testing.T, c *Client, d time.Duration) {
	t.Helper()
	select {
	case m := <-c.Messages():
		t.Fatalf("got unexpected message %+v", m)
	case <-time.After(d):
	}
}

// acksOf returns the seqs of the ack frames for chat, in order.
func acksOf(s *fakeserver.Server, chat string) []uint64 {
	var out []uint64
	for _, a := range s.Frames(proto.TypeAck) {
		if a.Chat == chat {
			out = append(out, a.Seq)
		}
	}
	return out
}
