package client

import (
	"errors"
	"testing"
	"time"
)

var frameCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"hello", `{"type":"hello","protocol":1,"user":"alice","device":"d1","session":"1f","heartbeat_ms":25000}`, true},
	{"msg", `{"type":"msg","chat":"g:x","seq":3,"from":"bob","device":"d2","id":"r1","ts":1700000000000,"kind":"text","body":"hi \u2028"}`, true},
	{"sent", `{"type":"sent","id":"r1","chat":"g:x","seq":3,"ts":1}`, true},
	{"receipt", `{"type":"receipt","chat":"g:x","user":"bob","device":"d2","seq":3,"status":"delivered"}`, true},
	{"ok", `{"type":"ok","id":"r2","chat":"g:y","seq":1}`, true},
	{"history", `{"type":"history","id":"r3","chat":"g:x","messages":[{"chat":"g:x","seq":1,"from":"a","device":"d","ts":1,"kind":"text","body":"b"}],"more":true}`, true},
	{"chats", `{"type":"chats","id":"r4","chats":[{"chat":"g:x","kind":"group","name":"n","last_seq":4,"read_seq":1,"unread":3}]}`, true},
	{"members", `{"type":"members","id":"r5","chat":"g:x","members":["a","b"]}`, true},
	{"presence push", `{"type":"presence","users":[{"user":"bob","online":false,"last_seen":17}]}`, true},
	{"pong", `{"type":"pong","ts":5}`, true},
	{"error", `{"type":"error","id":"r6","code":"rate_limited","message":"m","retryable":true,"retry_after_ms":250}`, true},
	{"unknown type", `{"type":"future","x":1}`, true},
	{"synced", `{"type":"synced","id":"s1"}`, true},
	{"goaway", `{"type":"goaway","retry_after_ms":100,"url":"ws://10.0.0.2:8080/ws"}`, true},
	{"goaway bare", `{"type":"goaway"}`, true},
	{"goaway negative", `{"type":"goaway","retry_after_ms":-5}`, false},
	{"goaway bad url", `{"type":"goaway","url":"http://x/ws"}`, false},
	{"empty", ``, false},
	{"not json", `{"type":`, false},
	{"no type", `{"id":"x"}`, false},
	{"msg without seq", `{"type":"msg","chat":"g:x"}`, false},
	{"sent without id", `{"type":"sent","chat":"g:x","seq":1}`, false},
	{"error without code", `{"type":"error","id":"x"}`, false},
	{"ok without id", `{"type":"ok"}`, false},
	{"negative retry", `{"type":"error","code":"x","retry_after_ms":-1}`, false},
	{"wrong field type", `{"type":"msg","chat":"g:x","seq":"3"}`, false},
	{"array", `[1,2]`, false},
}

func TestDecodeServerFrame(t *testing.T) {
	for _, tt := range frameCases {
		t.Run(tt.name, func(t *testing.T) {
			f, err := decodeServerFrame([]byte(tt.in))
			if tt.ok && err != nil {
				t.Fatalf("got %v, want ok", err)
			}
			if !tt.ok {
				if err == nil || !errors.Is(err, ErrProtocol) {
					t.Fatalf("got %v, want ErrProtocol", err)
				}
				return
			}
			if f == nil {
				t.Fatal("got nil frame")
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	f, err := decodeServerFrame([]byte(frameCases[10].in))
	if err != nil {
		t.Fatal(err)
	}
	e := f.err()
	if e.Code != CodeRateLimited || !e.Retryable || e.RetryAfter != 250*time.Millisecond {
		t.Fatalf("got %+v", e)
	}
	f, _ = decodeServerFrame([]byte(frameCases[1].in))
	m := f.message()
	if m.Chat != "g:x" || m.Seq != 3 || m.From != "bob" || m.RequestID != "r1" || m.Body != "hi \u2028" || m.Time.UnixMilli() != 1700000000000 {
		t.Fatalf("got %+v", m)
	}
}

func FuzzDecodeServerFrame(f *testing.F) {
	for _, tt := range frameCases {
		f.Add([]byte(tt.in), len(tt.in)/2)
	}
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		check := func(p []byte) {
			fr, err := decodeServerFrame(p)
			if err == nil {
				if fr == nil || fr.Type == "" {
					t.Fatalf("accepted %q without a type", p)
				}
				_ = fr.message()
				_ = fr.err()
				_ = fr.presence()
				for i := range fr.Messages {
					_ = fr.Messages[i].message()
				}
			} else if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
		}
		check(b)
		// Split input: each half alone must also be handled.
		if cut < 0 {
			cut = -cut
		}
		if len(b) > 0 {
			cut %= len(b) + 1
			check(b[:cut])
			check(b[cut:])
		}
	})
}
