package logic

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// TestHideLastSeen: a user who hides their last-seen time is shown to the
// users who may see their presence as online or offline, never with a
// last_seen, in answers and in pushes; turned off, last_seen is back. The
// setting is read and changed over WebSocket and HTTP and is kept by the
// store.
func TestHideLastSeen(t *testing.T) {
	st := newMemStore()
	svc := startService(t, st)
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.open(2, "bob", "d")
	n.send(1, `{"type":"send","id":"a1","to":"bob","body":"hi"}`)
	n.nextType(1, "sent")
	n.nextType(2, "msg")
	n.send(2, `{"type":"send","id":"b1","to":"alice","body":"hi"}`)
	for m := n.next(2); m["type"] != "sent"; m = n.next(2) { // past pushes
	}

	setting := func(s uint64, frame string) any {
		t.Helper()
		n.send(s, frame)
		for {
			m := n.next(s)
			if m["type"] == "settings" {
				return m["hide_last_seen"]
			}
			if m["type"] == "error" {
				t.Fatalf("%s: got %v", frame, m)
			}
		}
	}
	if got := setting(2, `{"type":"settings","id":"s0"}`); got != false {
		t.Fatalf("settings of a user who never set any: hide_last_seen %v, want false", got)
	}
	if got := setting(2, `{"type":"settings","id":"s1","hide_last_seen":true}`); got != true {
		t.Fatalf("after hiding: hide_last_seen %v, want true", got)
	}
	if got := setting(2, `{"type":"settings","id":"s2"}`); got != true {
		t.Fatalf("read back: hide_last_seen %v, want true", got)
	}

	n.close(2)
	if p := pushedOffline(t, n, 1, "bob"); p["last_seen"] != nil {
		t.Fatalf("alice was pushed %v about bob, want offline without last_seen", p)
	}
	if p := presenceOf(t, n, 1, "bob")["bob"]; p["online"] != false || p["last_seen"] != nil {
		t.Fatalf("alice asking: got %v about bob, want offline without last_seen", p)
	}
	// Alice, who does not hide hers, is shown with it.
	reopen := func(s uint64, user string) {
		t.Helper()
		n.openSync(s, user, "d", `{"dm:alice:bob":2}`)
		for m := n.next(s); m["type"] != "synced"; m = n.next(s) {
		}
	}
	reopen(3, "bob")
	n.close(1)
	if p := pushedOffline(t, n, 3, "alice"); p["last_seen"] == nil {
		t.Fatalf("bob was pushed %v about alice, want offline with last_seen", p)
	}

	// Over HTTP, and back off: bob's last-seen shows again.
	tok := testToken(t, "bob", "d")
	do := func(method, body string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+svc.HTTPAddr()+"/v1/settings", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + strings.TrimSpace(string(b))
	}
	if got, want := do("GET", ""), `200 OK {"hide_last_seen":true}`; got != want {
		t.Fatalf("GET /v1/settings: got %s, want %s", got, want)
	}
	if got := do("PUT", `{"hide_last_seen":1}`); !strings.HasPrefix(got, "400 ") {
		t.Fatalf("PUT with a number: got %s, want 400", got)
	}
	if got := do("PUT", `null`); !strings.HasPrefix(got, "400 ") {
		t.Fatalf("PUT null: got %s, want 400", got)
	}
	if got := do("PUT", `{"hide_lastseen":false}`); !strings.HasPrefix(got, "400 ") {
		t.Fatalf("PUT with an unknown setting: got %s, want 400", got)
	}
	if got, want := do("PUT", `{"hide_last_seen":false}`), `200 OK {"hide_last_seen":false}`; got != want {
		t.Fatalf("PUT /v1/settings: got %s, want %s", got, want)
	}
	if got, _ := st.UserSettings(t.Context(), "bob"); got.HideLastSeen {
		t.Fatal("the store still has bob's last-seen hidden")
	}
	reopen(4, "alice")
	n.close(3)
	if p := pushedOffline(t, n, 4, "bob"); p["last_seen"] == nil {
		t.Fatalf("alice was pushed %v about bob after he showed it again, want offline with last_seen", p)
	}
}

// TestSettingsNeedsID: settings is answered, so it needs a request id.
func TestSettingsNeedsID(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	n.open(1, "alice", "d")
	n.send(1, `{"type":"settings","hide_last_seen":true}`)
	if m := n.nextType(1, "error"); m["code"] != "bad_request" {
		t.Fatalf("got %v, want bad_request", m)
	}
}

// pushedOffline waits for a presence push on session s that user went
// offline (past pushes that they are online).
func pushedOffline(t *testing.T, n *fakeNode, s uint64, user string) map[string]any {
	t.Helper()
	for {
		if p := pushedPresence(t, n, s, user); p["online"] == false {
			return p
		}
	}
}

// heldSettings holds the first UserSettings read of a user until release
// is closed, after entered.
type heldSettings struct {
	*memStore
	hold    atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (h *heldSettings) UserSettings(ctx context.Context, user string) (record.UserSettings, error) {
	st, err := h.memStore.UserSettings(ctx, user)
	if h.hold.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.release
	}
	return st, err
}

// TestSettingsCacheKeepsChange: a read of the settings that started before
// a change and ends after it does not put the old value back in the cache
// (last_seen would have shown for up to the cache's lifetime).
func TestSettingsCacheKeepsChange(t *testing.T) {
	st := &heldSettings{memStore: newMemStore(), entered: make(chan struct{}), release: make(chan struct{})}
	c := newSettingsCache(st, time.Now)
	st.hold.Store(true)
	done := make(chan record.UserSettings)
	go func() {
		got, _ := c.get(t.Context(), "bob", false)
		done <- got
	}()
	<-st.entered // the read has the old value (shown)
	hidden := record.UserSettings{HideLastSeen: true}
	if err := st.PutUserSettings(t.Context(), "bob", hidden); err != nil {
		t.Fatal(err)
	}
	c.changed("bob")
	close(st.release)
	<-done
	if got, err := c.get(t.Context(), "bob", false); err != nil || !got.HideLastSeen {
		t.Fatalf("after the change: got %+v, %v, want hidden", got, err)
	}
}
