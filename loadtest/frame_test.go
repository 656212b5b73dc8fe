package loadtest

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var frameCases = []string{
	`{"type":"msg","chat":"dm:a:b","seq":12,"from":"a","device":"lt","id":"7","ts":1795787755494,"kind":"text","body":"lt:1:2:3...."}`,
	`{"type":"sent","id":"3.14","chat":"g:x","seq":2,"ts":1}`,
	`{"type":"synced","id":"s"}`,
	`{"type":"hello","protocol":1,"user":"alice","device":"phone","session":"1a","heartbeat_ms":30000}`,
	`{"type":"error","id":"9","code":"rate_limited","message":"slow down","retryable":true,"retry_after_ms":250}`,
	`{"type":"msg","chat":"g:1","seq":1,"kind":"system","body":"{\"event\":\"created\",\"members\":[\"a\",\"b\"]}"}`,
	`{"type":"presence","users":[{"user":"a","online":false,"last_seen":1}]}`,
	`{"type":"receipt","chat":"c","user":"u","device":"d","seq":3,"status":"delivered"}`,
	` { "type" : "ok" , "id" : "g" , "chat" : "g:lt1" , "seq" : 1 } `,
	`{"type":"x","body":"\u00e9\ud83d\ude00\ud800 \n\t\\\/"}`,
	`{"seq":null,"type":null}`,
	`{}`,
	`{"type":"msg","seq":-1}`,
	`{"type":"msg","seq":1.5}`,
	`{"type":1}`,
	`{"type":"a"`,
	`{"type":"a",}`,
	`[1]`,
	`{"a":[1,{"b":"]"}],"type":"t"}`,
}

func TestParseFrame(t *testing.T) {
	tests := []struct {
		in                        string
		typ, id, chat, kind, body string
		code                      string
		seq                       uint64
		retry                     int64
		wantErr                   bool
	}{
		{in: frameCases[0], typ: "msg", id: "7", chat: "dm:a:b", kind: "text", body: "lt:1:2:3....", seq: 12},
		{in: frameCases[1], typ: "sent", id: "3.14", chat: "g:x", seq: 2},
		{in: frameCases[4], typ: "error", id: "9", code: "rate_limited", retry: 250},
		{in: frameCases[5], typ: "msg", chat: "g:1", kind: "system", seq: 1, body: `{"event":"created","members":["a","b"]}`},
		{in: frameCases[6], typ: "presence"},
		{in: frameCases[8], typ: "ok", id: "g", chat: "g:lt1", seq: 1},
		{in: frameCases[9], typ: "x", body: "é😀\uFFFD \n\t\\/"},
		{in: frameCases[10]},
		{in: frameCases[12], wantErr: true},
		{in: frameCases[13], wantErr: true},
		{in: frameCases[14], wantErr: true},
		{in: frameCases[15], wantErr: true},
		{in: frameCases[16], wantErr: true},
		{in: frameCases[17], wantErr: true},
		{in: frameCases[18], typ: "t"},
	}
	for _, tt := range tests {
		var f frame
		err := parseFrame([]byte(tt.in), &f)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseFrame(%s): got err %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		got := []string{string(f.typ), string(f.id), string(f.chat), string(f.kind), string(f.body), string(f.code)}
		want := []string{tt.typ, tt.id, tt.chat, tt.kind, tt.body, tt.code}
		if strings.Join(got, "|") != strings.Join(want, "|") || f.seq != tt.seq || f.retryAfter != tt.retry {
			t.Errorf("parseFrame(%s): got %q seq %d retry %d, want %q seq %d retry %d", tt.in, got, f.seq, f.retryAfter, want, tt.seq, tt.retry)
		}
	}
}

// FuzzParseFrame checks parseFrame against encoding/json: whenever both
// accept an object, the fields read agree. Every input is also fed split
// at each position's prefix, which must never panic.
func FuzzParseFrame(f *testing.F) {
	for _, c := range frameCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr frame
		for i := range b {
			_ = parseFrame(b[:i], &fr)
		}
		if parseFrame(b, &fr) != nil || !utf8.Valid(b) {
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return
		}
		for key, got := range map[string][]byte{"type": fr.typ, "id": fr.id, "chat": fr.chat, "kind": fr.kind, "body": fr.body, "code": fr.code} {
			want, _ := m[key].(string)
			if string(got) != want {
				t.Fatalf("%s: got %q, want %q (encoding/json)", key, got, want)
			}
		}
		for key, got := range map[string]int64{"seq": int64(fr.seq), "retry_after_ms": fr.retryAfter} {
			want, _ := m[key].(float64)
			if float64(got) != want && strconv.FormatInt(got, 10) != strconv.FormatFloat(want, 'f', -1, 64) {
				t.Fatalf("%s: got %d, want %v (encoding/json)", key, got, want)
			}
		}
	})
}

func BenchmarkParseFrame(b *testing.B) {
	msg := []byte(frameCases[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	var f frame
	for b.Loop() {
		if err := parseFrame(msg, &f); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFrameJSON(b *testing.B) {
	msg := []byte(frameCases[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	var f struct {
		Type, ID, Chat, Kind, Body, Code string
		Seq                              uint64
	}
	for b.Loop() {
		if err := json.Unmarshal(msg, &f); err != nil {
			b.Fatal(err)
		}
	}
}
