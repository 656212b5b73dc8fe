package logic

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestStoreCtx: storeCtx behaves as context.WithTimeout does, whether or
// not Done was asked for before the deadline or the cancel.
func TestStoreCtx(t *testing.T) {
	tests := []struct {
		name     string
		doneAt   time.Duration // when Done is first called; <0: never before the end
		cancelAt time.Duration // when cancel is called; <0: never
		wantErr  error
		wantEnd  time.Duration // when Err turns non-nil
	}{
		{"DeadlineNoDone", -1, -1, context.DeadlineExceeded, 10 * time.Millisecond},
		{"DeadlineDone", 2 * time.Millisecond, -1, context.DeadlineExceeded, 10 * time.Millisecond},
		{"CancelNoDone", -1, 3 * time.Millisecond, context.Canceled, 3 * time.Millisecond},
		{"CancelDone", time.Millisecond, 3 * time.Millisecond, context.Canceled, 3 * time.Millisecond},
		{"DoneAfterDeadline", 20 * time.Millisecond, -1, context.DeadlineExceeded, 10 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				ctx := newStoreCtx(10 * time.Millisecond)
				cancel := ctx.cancel
				defer cancel()
				if at, ok := ctx.Deadline(); !ok || !at.Equal(start.Add(10*time.Millisecond)) {
					t.Fatalf("Deadline: got %v, %v", at, ok)
				}
				var done <-chan struct{}
				if tc.doneAt >= 0 && tc.doneAt < tc.wantEnd {
					time.Sleep(tc.doneAt)
					done = ctx.Done()
					select {
					case <-done:
						t.Fatal("Done closed early")
					default:
					}
				}
				if tc.cancelAt >= 0 {
					time.Sleep(tc.cancelAt - time.Since(start))
					cancel()
				} else {
					time.Sleep(tc.wantEnd - time.Since(start) - time.Microsecond)
					if err := ctx.Err(); err != nil {
						t.Fatalf("Err just before the deadline: %v", err)
					}
					if done == nil && tc.doneAt < 0 {
						time.Sleep(time.Microsecond)
					} else {
						if done == nil {
							time.Sleep(tc.doneAt - time.Since(start))
							done = ctx.Done()
						}
						<-done
					}
				}
				if err := ctx.Err(); !errors.Is(err, tc.wantErr) {
					t.Fatalf("Err: got %v, want %v", err, tc.wantErr)
				}
				if got := time.Since(start); tc.doneAt < tc.wantEnd && got != tc.wantEnd {
					t.Fatalf("ended after %v, want %v", got, tc.wantEnd)
				}
				select {
				case <-ctx.Done():
				default:
					t.Fatal("Done not closed after the end")
				}
			})
		})
	}
}

// TestStoreCtxChild: a context derived from a storeCtx ends with it.
func TestStoreCtxChild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		parent := newStoreCtx(time.Hour)
		cancel := parent.cancel
		child, c2 := context.WithTimeout(parent, 2*time.Hour)
		defer c2()
		time.Sleep(time.Millisecond)
		cancel()
		<-child.Done()
		if !errors.Is(child.Err(), context.Canceled) {
			t.Fatalf("child Err: got %v, want canceled", child.Err())
		}
	})
}
