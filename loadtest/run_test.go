package loadtest

import (
	"context"
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

func TestRunAccounting(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		drop, dup func(k int) bool
		check     func(t *testing.T, r *Result)
	}{
		{
			name: "pairs clean", mode: ModePairs,
			check: func(t *testing.T, r *Result) {
				if r.Lost != 0 || r.Duplicates != 0 || r.Unacked != 0 || len(r.ErrorsByKind) != 0 {
					t.Errorf("got lost %d dups %d unacked %d errors %v, want none", r.Lost, r.Duplicates, r.Unacked, r.ErrorsByKind)
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
			},
		},
		{
			name: "pairs lossy", mode: ModePairs,
			drop: func(k int) bool { return k == 3 },
			dup:  func(k int) bool { return k == 5 },
			check: func(t *testing.T, r *Result) {
				if r.Lost != 5 || r.Duplicates != 5 {
					t.Errorf("got lost %d dups %d, want 5 and 5 (one of each per pair)", r.Lost, r.Duplicates)
				}
			},
		},
		{
			name: "group", mode: ModeGroup,
			drop: func(k int) bool { return k == 0 },
			check: func(t *testing.T, r *Result) {
				if r.Fanout != 2 || r.Sent != 120 || r.Delivered != 2*(120-2) || r.Lost != 2*2 {
					t.Errorf("got fanout %d sent %d delivered %d lost %d, want 2, 120, 236, 4", r.Fanout, r.Sent, r.Delivered, r.Lost)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newFakeServer(t)
			if tt.drop != nil {
				s.drop = tt.drop
			}
			if tt.dup != nil {
				s.dup = tt.dup
			}
			cfg := testConfig(s.url())
			cfg.Mode = tt.mode
			cfg.Groups, cfg.GroupSize = 2, 3
			var progress strings.Builder
			res, err := Run(context.Background(), cfg, userToken, nil, &progress)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, res)
			var out strings.Builder
			if err := res.WriteText(&out); err != nil || !strings.Contains(out.String(), "send→deliver") {
				t.Errorf("WriteText: got %q, %v", out.String(), err)
			}
		})
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
		due, s, k, ok := parseBody(tt.body)
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
	for _, want := range []string{"url", "mode", "rate", "duration", "body_size", "dial_concurrency", "dial_timeout", "source_ips"} {
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
