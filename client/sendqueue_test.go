package client

import (
	"context"
	"testing"
	"time"
)

// TestSendQueueCancelKeepsOrder: a send that gives up while waiting for
// its turn does not let the next one overtake the one still in flight.
func TestSendQueueCancelKeepsOrder(t *testing.T) {
	var q sendQueue
	waitA, doneA := q.enter("g:x")
	waitB, doneB := q.enter("g:x")
	waitC, doneC := q.enter("g:x")
	if err := waitA(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := waitB(ctx); err == nil {
		t.Fatal("b waited through a cancelled context")
	}
	doneB()
	cTurn := make(chan error, 1)
	go func() { cTurn <- waitC(t.Context()) }()
	select {
	case <-cTurn:
		t.Fatal("c went ahead while a was still in flight")
	case <-time.After(50 * time.Millisecond):
	}
	doneA()
	if err := <-cTurn; err != nil {
		t.Fatal(err)
	}
	doneC()
	// Another destination never waits, and a finished queue starts afresh.
	for _, dest := range []string{"g:y", "g:x"} {
		wait, done := q.enter(dest)
		if err := wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		done()
	}
}
