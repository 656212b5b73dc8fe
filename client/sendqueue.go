package client

import (
	"context"
	"sync"
)

// sendQueue keeps a destination's sends in the order they were made: a
// send goes out, with all its retries, only after the one queued before it
// for the same destination has finished. Otherwise two sends in flight
// could be stored in the other order whenever the first one is retried
// (after rate_limited, overloaded, unavailable or a dropped connection) and
// the second is not. docs/protocol.md, "Order of a device's sends".
//
// Safe for concurrent use.
type sendQueue struct {
	mu    sync.Mutex
	tails map[string]chan struct{} // destination -> closed when its newest queued send finishes
}

// enter queues a send to dest. wait blocks until the sends queued before it
// for dest have finished (or ctx ends); done must be called exactly once
// when the send has finished, whether wait succeeded or not.
func (q *sendQueue) enter(dest string) (wait func(ctx context.Context) error, done func()) {
	q.mu.Lock()
	if q.tails == nil {
		q.tails = map[string]chan struct{}{}
	}
	prev := q.tails[dest]
	mine := make(chan struct{})
	q.tails[dest] = mine
	q.mu.Unlock()
	wait = func(ctx context.Context) error {
		if prev == nil {
			return nil
		}
		select {
		case <-prev:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done = func() {
		release := func() {
			q.mu.Lock()
			if q.tails[dest] == mine {
				delete(q.tails, dest)
			}
			q.mu.Unlock()
			close(mine)
		}
		if prev == nil {
			release()
			return
		}
		select {
		case <-prev:
			release()
		default:
			// Given up before its turn: the next send still waits for
			// the ones before this one.
			go func() {
				<-prev
				release()
			}()
		}
	}
	return wait, done
}
