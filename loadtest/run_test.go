package loadtest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func userToken(user, _ string) (string, error) { return user, nil }

func testConfig(url string) Config {
	c := Default()
	c.URL = url
	c.Pairs = 5
	c.Rate = 100
	c.Warmup = 200 * time.Millisecond
	c.Duration = time.Second
	c.Grace = 300 * time.Millisecond
	c.DialConcurrency = 4
	return c
}

// ackedAll reports, for every user the fake pushed to, whether its acks
// reached the highest seq pushed in every chat. Run writes the last acks
// just before it closes the connections, so the fake may still be reading
// them: it waits up to a second.
func (s *fakeServer) ackedAll(t *testing.T) {
	t.Helper()
	var missing []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		missing = missing[:0]
		s.mu.Lock()
		for user, chats := range s.pushed {
			for chat, seq := range chats {
				if got := s.acked[user][chat]; got < seq {
					missing = append(missing, fmt.Sprintf("user %s chat %s: got acked %d, want %d (every pushed seq)", user, chat, got, seq))
				}
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Error(m)
	}
}

func TestRunAccounting(t *testing.T) {
	tests := []struct {
		name  string
		mode  string
		setup func(s *fakeServer)
		check func(t *testing.T, s *fakeServer, r *Result)
	}{
		{
			name: "pairs clean", mode: ModePairs,
			setup: func(s *fakeServer) { s.syncedDelay = 100 * time.Millisecond },
			check: func(t *testing.T, s *fakeServer, r *Result) {
				if r.Lost != 0 || r.Duplicates != 0 || r.Retransmits != 0 || r.OutOfOrder != 0 || r.Unacked != 0 || len(r.ErrorsByKind) != 0 {
					t.Errorf("got lost %d dups %d retransmits %d ooo %d unacked %d errors %v, want none",
						r.Lost, r.Duplicates, r.Retransmits, r.OutOfOrder, r.Unacked, r.ErrorsByKind)
				}
				if r.Sent != 120 || r.Acked != 120 || r.Delivered != 120 {
					t.Errorf("got sent/acked/delivered %d/%d/%d, want 120 each", r.Sent, r.Acked, r.Delivered)
				}
				if r.Deliver.Count != 100 || r.Ack.Count != 100 {
					t.Errorf("got %d and %d measured latencies, want 100 each (window only)", r.Deliver.Count, r.Ack.Count)
				}
				if r.DeliverRate != 100 {
					t.Errorf("got deliver rate %v, want 100", r.DeliverRate)
				}
				// 5 receivers, one message each per 50 ms flush: at most one
				// ack per message (batching itself: TestConnAddLocked).
				if r.AcksSent < 5 || r.AcksSent > 120 {
					t.Errorf("got %d acks, want 5..120", r.AcksSent)
				}
				s.ackedAll(t)
			},
		},
		{
			name: "pairs lossy", mode: ModePairs,
			setup: func(s *fakeServer) {
				s.drop = func(k int) bool { return k == 3 }
				s.resend = func(k int) bool { return k == 5 || k == 6 }
				s.store2 = func(k int) bool { return k == 7 }
			},
			check: func(t *testing.T, s *fakeServer, r *Result) {
				if r.Lost != 5 || r.Retransmits != 10 || r.Duplicates != 5 || r.DupAcks != 5 {
					t.Errorf("got lost %d retransmits %d dups %d dup acks %d, want 5, 10, 5, 5 (per pair: k=3 lost, k=5,6 resent, k=7 stored twice)",
						r.Lost, r.Retransmits, r.Duplicates, r.DupAcks)
				}
				if r.Delivered != 115 || r.OutOfOrder != 0 {
					t.Errorf("got delivered %d out of order %d, want 115 and 0", r.Delivered, r.OutOfOrder)
				}
			},
		},
		{
			name: "group", mode: ModeGroup,
			setup: func(s *fakeServer) { s.drop = func(k int) bool { return k == 0 } },
			check: func(t *testing.T, s *fakeServer, r *Result) {
				if r.Fanout != 2 || r.Sent != 120 || r.Delivered != 2*(120-2) || r.Lost != 2*2 {
					t.Errorf("got fanout %d sent %d delivered %d lost %d, want 2, 120, 236, 4", r.Fanout, r.Sent, r.Delivered, r.Lost)
				}
				// The receivers' acks stop below the gap at seq 2; the
				// system message (seq 1) was acked by every member.
				s.mu.Lock()
				defer s.mu.Unlock()
				for user, chats := range s.pushed {
					for chat := range chats {
						if got := s.acked[user][chat]; got < 1 {
							t.Errorf("user %s chat %s: got acked %d, want at least 1", user, chat, got)
						}
					}
				}
			},
		},
		{
			name: "group clean", mode: ModeGroup,
			check: func(t *testing.T, s *fakeServer, r *Result) {
				if r.Lost != 0 || r.Retransmits != 0 || r.Delivered != 240 || len(r.ErrorsByKind) != 0 {
					t.Errorf("got lost %d retransmits %d delivered %d errors %v, want 0, 0, 240, none", r.Lost, r.Retransmits, r.Delivered, r.ErrorsByKind)
				}
				s.ackedAll(t)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t)
			if tt.setup != nil {
				tt.setup(s)
			}
			cfg := testConfig(s.url())
			cfg.Mode = tt.mode
			cfg.Groups, cfg.GroupSize = 2, 3
			var progress strings.Builder
			res, err := Run(context.Background(), cfg, userToken, nil, &progress)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s, res)
			s.mu.Lock()
			if len(s.violations) != 0 || s.badAcks != 0 {
				t.Errorf("got protocol violations %q and %d bad acks, want none", s.violations, s.badAcks)
			}
			s.mu.Unlock()
			var out strings.Builder
			if err := res.WriteText(&out); err != nil || !strings.Contains(out.String(), "send→deliver") || !strings.Contains(out.String(), "retransmits") {
				t.Errorf("WriteText: got %q, %v", out.String(), err)
			}
		})
	}
}

func TestRunSyncTimeout(t *testing.T) {
	s := newFakeServer(t)
	s.noSynced = true
	cfg := testConfig(s.url())
	cfg.DialTimeout = 300 * time.Millisecond
	_, err := Run(context.Background(), cfg, userToken, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "sync:timeout") {
		t.Errorf("got %v, want an error naming sync:timeout", err)
	}
}

func TestRunNoServer(t *testing.T) {
	cfg := testConfig("ws://127.0.0.1:1/ws")
	cfg.DialTimeout = time.Second
	_, err := Run(context.Background(), cfg, userToken, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "dial:refused") {
		t.Errorf("got %v, want an error naming dial:refused", err)
	}
}

func TestParseBody(t *testing.T) {
	tests := []struct {
		body      string
		due       int64
		stream, k int
		ok        bool
	}{
		{"lt:123:4:5", 123, 4, 5, true},
		{"lt:123:4:5....", 123, 4, 5, true},
		{"lt:123:4", 0, 0, 0, false},
		{"lt:x:4:5", 0, 0, 0, false},
		{"lt:1:-1:5", 0, 0, 0, false},
		{"hello", 0, 0, 0, false},
	}
	for _, tt := range tests {
		due, s, k, ok := parseBody([]byte(tt.body))
		if due != tt.due || s != tt.stream || k != tt.k || ok != tt.ok {
			t.Errorf("parseBody(%q): got %d %d %d %v, want %d %d %d %v", tt.body, due, s, k, ok, tt.due, tt.stream, tt.k, tt.ok)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{Mode: "nope", Rate: -1, Duration: time.Hour, BodySize: -1, SourceIPs: "x"}
	err := c.Validate()
	if err == nil {
		t.Fatal("got nil, want errors")
	}
	for _, want := range []string{"url", "mode", "rate", "duration", "body_size", "dial_concurrency", "dial_timeout", "ack_interval", "ack_batch", "source_ips"} {
		if !strings.Contains(err.Error(), "loadtest."+want) {
			t.Errorf("got %q, want it to mention loadtest.%s", err, want)
		}
	}
	d := Default()
	d.URL = "ws://x"
	if err := d.Validate(); err != nil {
		t.Errorf("Default with URL: got %v, want nil", err)
	}
}
