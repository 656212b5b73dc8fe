package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// fleetDrainWindow is connsrv.drain_window in the fleet tests.
const fleetDrainWindow = 4 * time.Second

// stateLog records when a client lost its connection and when it was
// connected again.
type stateLog struct {
	mu        sync.Mutex // guards the following
	dropped   []time.Time
	connected []time.Time
}

func watchStates(c *client.Client) *stateLog {
	l := &stateLog{}
	go func() {
		for s := range c.States() {
			l.mu.Lock()
			switch s.Kind {
			case client.StateReconnecting:
				if s.Attempt <= 1 {
					l.dropped = append(l.dropped, time.Now())
				}
			case client.StateConnected:
				if !s.Synced {
					l.connected = append(l.connected, time.Now())
				}
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// drain: SIGTERM one connection node under traffic. Its clients are told
// to go elsewhere in batches spread over the drain window, move to the
// other node, and no acked message is lost; reconnects arrive at about
// clients/window per second, not all at once.
func (f *fleet) drain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const pairs = 10
	var senders, receivers []*recorder
	var logs []*stateLog
	var chats []string
	for i := range pairs {
		// Everyone starts on connsrv-2 (the one drained), fallback connsrv-1.
		s := f.dial(fmt.Sprintf("dr-s%d", i), "d", 1)
		r := f.dial(fmt.Sprintf("dr-r%d", i), "d", 1)
		sent, err := s.c.SendTo(ctx, fmt.Sprintf("dr-r%d", i), "hello")
		if err != nil {
			t.Fatal(err)
		}
		senders, receivers, chats = append(senders, s), append(receivers, r), append(chats, sent.Chat)
		logs = append(logs, watchStates(s.c), watchStates(r.c))
	}
	tr, stop := runTraffic(ctx, senders, chats)
	time.Sleep(time.Second)
	term := time.Now()
	f.conn[1].stop(syscall.SIGTERM)
	waitFor(t, fleetDrainWindow+20*time.Second, "every client reconnected", func() bool {
		for _, l := range logs {
			l.mu.Lock()
			n := len(l.connected)
			l.mu.Unlock()
			if n < 2 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	stop()

	var drops, reconnects []time.Duration
	for _, l := range logs {
		l.mu.Lock()
		if len(l.dropped) > 0 {
			drops = append(drops, l.dropped[0].Sub(term))
		}
		reconnects = append(reconnects, l.connected[1].Sub(term))
		l.mu.Unlock()
	}
	slices.Sort(drops)
	slices.Sort(reconnects)
	n := len(reconnects)
	t.Logf("drain of %d clients over %v: disconnects from %v to %v, reconnects from %v to %v (median %v)",
		n, fleetDrainWindow, drops[0].Round(time.Millisecond), drops[len(drops)-1].Round(time.Millisecond),
		reconnects[0].Round(time.Millisecond), reconnects[n-1].Round(time.Millisecond), reconnects[n/2].Round(time.Millisecond))
	// Spread, not a herd: the clients left over at least half the window.
	if spread := drops[len(drops)-1] - drops[0]; spread < fleetDrainWindow/2 {
		t.Fatalf("clients were dropped within %v of each other, want them spread over the %v drain window", spread, fleetDrainWindow)
	}
	// No spike: in any quarter of the window at most twice the even share
	// (n/4) of the clients reconnected.
	limit := n / 2
	for i := range reconnects {
		j := i
		for j < n && reconnects[j]-reconnects[i] < fleetDrainWindow/4 {
			j++
		}
		if j-i > limit {
			t.Fatalf("%d clients reconnected within %v of each other (from %v), want at most %d", j-i, fleetDrainWindow/4, reconnects[i], limit)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i, chat := range chats {
		want := append([]string{"hello"}, tr.acked[chat]...)
		got := receivers[i].waitTexts(t, chat, len(want), 30*time.Second)
		if len(got) > len(want)+1 || !slices.Equal(got[:len(want)], want) {
			t.Fatalf("pair %d: receiver got %d messages, acked %d; first difference at %d", i, len(got), len(want), firstDiff(got, want))
		}
	}
	// Bring the node back for any later subtest.
	if err := f.conn[1].start(f.within); err != nil {
		t.Fatal(err)
	}
}
