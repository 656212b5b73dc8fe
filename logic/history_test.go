package logic

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
)

// TestHistoryBounds: after 0 pages from the oldest message; no bound and
// before 0 give the newest page; the same over HTTP. (Before, after 0 was
// taken for "no bound" and returned the newest page.)
func TestHistoryBounds(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	for i := range 6 {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"m%d","to":"bob","body":"m%d"}`, i, i))
		n.nextType(1, "sent")
	}
	const chat = "dm:alice:bob"
	type page struct {
		Messages []struct {
			Seq uint64 `json:"seq"`
		} `json:"messages"`
		More bool `json:"more"`
	}
	seqs := func(p page) []uint64 {
		var out []uint64
		for _, m := range p.Messages {
			out = append(out, m.Seq)
		}
		return out
	}
	tok := testToken(t, "alice", "")
	for _, tc := range []struct {
		bounds string // JSON fields
		query  string // HTTP query
		want   []uint64
		more   bool
	}{
		{`"after":0`, "after=0", []uint64{1, 2}, true},
		{`"after":4`, "after=4", []uint64{5, 6}, false},
		{`"after":5`, "after=5", []uint64{6}, false},
		{``, ``, []uint64{5, 6}, true},
		{`"before":0`, "before=0", []uint64{5, 6}, true},
		{`"before":3`, "before=3", []uint64{1, 2}, false},
	} {
		frame := `{"type":"history","id":"h","chat":"` + chat + `","limit":2`
		if tc.bounds != "" {
			frame += "," + tc.bounds
		}
		n.send(1, frame+"}")
		m := n.nextType(1, "history")
		b, _ := json.Marshal(m)
		var ws page
		if err := json.Unmarshal(b, &ws); err != nil {
			t.Fatal(err)
		}
		if got := seqs(ws); !slices.Equal(got, tc.want) || ws.More != tc.more {
			t.Errorf("history {%s}: got %v more=%v, want %v more=%v", tc.bounds, got, ws.More, tc.want, tc.more)
		}

		req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+svc.HTTPAddr()+"/v1/chats/"+chat+"/messages?limit=2&"+tc.query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hp page
		if err := json.Unmarshal(body, &hp); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET ?%s: %d %s", tc.query, resp.StatusCode, body)
		}
		if got := seqs(hp); !slices.Equal(got, tc.want) || hp.More != tc.more {
			t.Errorf("GET ?%s: got %v more=%v, want %v more=%v", tc.query, got, hp.More, tc.want, tc.more)
		}
	}
}
