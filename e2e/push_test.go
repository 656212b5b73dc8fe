package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/notifier"
	"github.com/parley-chat/parley/notifier/pushtest"
)

// TestStandalonePush: the standalone binary runs the notifier in-process.
// An offline user's registered Web Push endpoint (a real push service on
// loopback that verifies the VAPID JWT and decrypts the payload) gets one
// push per message; a user with a device online gets none.
func TestStandalonePush(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	pub, priv, err := notifier.GenerateVAPID()
	if err != nil {
		t.Fatal(err)
	}
	push := pushtest.NewServer()
	defer push.Close()
	push.SetVAPIDKey(pub)
	bin := parleyBinary(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	p := startStandalone(t, bin, newTestStore(t), ports,
		"-set", "notifier.vapid_public_key="+pub, "-set", "notifier.vapid_private_key="+priv,
		"-set", "notifier.vapid_subject=mailto:ops@example.com")

	// The VAPID key is served to signed-in browsers.
	req, _ := http.NewRequest(http.MethodGet, p.httpBase+"/v1/push/vapid", nil)
	req.Header.Set("Authorization", "Bearer "+p.token(t, "rosa", "d"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), pub) {
		t.Fatalf("GET /v1/push/vapid = %d %s, want the public key", resp.StatusCode, b)
	}
	register := func(user string) {
		t.Helper()
		sub := push.Subscribe(user, "d")
		body := fmt.Sprintf(`{"endpoint":%q,"keys":{"p256dh":%q,"auth":%q}}`, sub.Endpoint, sub.P256dh, sub.Auth)
		req, _ := http.NewRequest(http.MethodPost, p.httpBase+"/v1/push/subscriptions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+p.token(t, user, "d")) // push subscriptions are per device
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("register %s: %d %s", user, resp.StatusCode, b)
		}
	}
	register("rosa") // offline
	register("sam")  // online below
	p.dial(t, "sam")

	alice := p.dial(t, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := alice.SendTo(ctx, "rosa", fmt.Sprintf("to rosa %d", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := alice.SendTo(ctx, "sam", fmt.Sprintf("to sam %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := push.WaitFor(ctx, 3); err != nil {
		t.Fatalf("push service got %d of 3: %v (rejected %v)", len(push.Received()), err, push.Rejected())
	}
	time.Sleep(2 * time.Second) // a duplicate, or a push to sam, would show up by now
	got := push.Received()
	if len(got) != 3 {
		t.Fatalf("push service got %d pushes, want exactly 3 (rosa's)", len(got))
	}
	// Each of rosa's messages once. Pushes are sent concurrently and push
	// services do not keep order either: the payload's chat and seq let
	// the app order them, so the test does not ask for arrival order.
	seen := map[int]bool{}
	for _, g := range got {
		k := -1
		for i := range 3 {
			if strings.Contains(string(g.Plaintext), fmt.Sprintf("to rosa %d", i)) {
				k = i
			}
		}
		if g.Sub.User != "rosa" || k < 0 || seen[k] {
			t.Fatalf("push to %s with %s: want each of rosa's 3 messages once (seen %v)", g.Sub.User, g.Plaintext, seen)
		}
		seen[k] = true
	}
}
