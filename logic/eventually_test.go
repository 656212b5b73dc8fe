package logic

import (
	"testing"
	"time"
)

// eventually calls cond until it reports done, and fails the test with
// the state cond last described when within passes first. It is for state
// reached over real sockets, which testing/synctest cannot wait for (a
// goroutine blocked in network I/O is never durably blocked in a bubble):
// within is a generous bound for a slow CI machine, never a timing
// assertion. Tests without sockets use synctest instead.
func eventually(t testing.TB, within time.Duration, cond func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
