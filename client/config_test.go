package client

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Default()
	ok.URL = "ws://127.0.0.1:8080/ws"
	ok.Token = "t"
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error; none = valid
	}{
		{"valid", func(*Config) {}, nil},
		{"valid wss with func", func(c *Config) {
			c.URL = "wss://x/ws"
			c.Token = ""
			c.TokenFunc = func(context.Context) (string, error) { return "", nil }
		}, nil},
		{"missing everything", func(c *Config) { *c = Config{} }, []string{"url is required", "token or token_func is required"}},
		{"bad scheme", func(c *Config) { c.URL = "http://x" }, []string{"scheme must be ws or wss"}},
		{"both tokens", func(c *Config) {
			c.TokenFunc = func(context.Context) (string, error) { return "", nil }
		}, []string{"only one of token"}},
		{"negatives", func(c *Config) {
			c.DialTimeout = -1
			c.Backoff.Min = -time.Second
			c.MessageBuffer = -1
		}, []string{"dial_timeout must not be negative", "backoff.min must not be negative", "message_buffer"}},
		{"min over max", func(c *Config) { c.Backoff = Backoff{Min: time.Minute, Max: time.Second} }, []string{"backoff.min 1m0s exceeds"}},
		{"ack settings", func(c *Config) {
			c.AckInterval = -time.Millisecond
			c.AckBatch = -1
			c.Resume = map[string]uint64{"": 3}
		}, []string{"ack_interval must not be negative", "ack_batch must not be negative", "resume: empty chat id"}},
		{"long device", func(c *Config) { c.Device = strings.Repeat("d", 65) }, []string{"device must be at most 64 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestJitter(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}
	for n := 0; n < 20; n++ {
		limit := min(b.Min<<min(n, 30), b.Max)
		for i := 0; i < 50; i++ {
			if d := jitter(b, n); d < 0 || d > limit {
				t.Fatalf("attempt %d: got %v, want within [0, %v]", n, d, limit)
			}
		}
	}
}
