package logic

import (
	"context"
	"sync"
	"time"
)

// storeCtx is a context with a deadline (and no parent or values) whose
// Done channel and timer are made only when something asks for Done. A
// shard makes one per request and most requests make no store call (their
// chat is cached) or call a store that only checks Err; a
// context.WithTimeout per request cost four allocations and a timer.
// Err reports a passed deadline without making them. Safe for concurrent
// use, as a context must be.
type storeCtx struct {
	at time.Time

	mu    sync.Mutex    // guards the following
	done  chan struct{} // nil until Done is called
	timer *time.Timer   // closes done at the deadline; nil until Done
	err   error         // nil until the deadline passed or cancel
}

var _ context.Context = (*storeCtx)(nil)

// newStoreCtx returns a context whose deadline is d from now. Call its
// cancel when the request is done, as with context.WithTimeout.
func newStoreCtx(d time.Duration) *storeCtx {
	return &storeCtx{at: time.Now().Add(d)}
}

func (c *storeCtx) Deadline() (time.Time, bool) { return c.at, true }

func (c *storeCtx) Value(any) any { return nil }

func (c *storeCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	ended := c.expiredLocked() // before done exists: endLocked closes it
	c.done = make(chan struct{})
	if ended {
		close(c.done)
		return c.done
	}
	c.timer = time.AfterFunc(time.Until(c.at), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.endLocked(context.DeadlineExceeded)
	})
	return c.done
}

func (c *storeCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expiredLocked()
	return c.err
}

// cancel ends the context (context.Canceled) unless it has ended.
func (c *storeCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(context.Canceled)
}

// expiredLocked ends the context if its deadline passed and reports
// whether it has ended.
func (c *storeCtx) expiredLocked() bool {
	if c.err == nil && !time.Now().Before(c.at) {
		c.endLocked(context.DeadlineExceeded)
	}
	return c.err != nil
}

// endLocked ends the context with err unless it has ended already.
func (c *storeCtx) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
}
