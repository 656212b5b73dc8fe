package client

import "testing"

func TestNextURLRotatesThroughFallbacks(t *testing.T) {
	c := &Client{cfg: Config{URL: "ws://a/ws", Fallbacks: []string{"ws://b/ws", "ws://c/ws"}}, url: "ws://a/ws"}
	for _, want := range []string{"ws://b/ws", "ws://c/ws", "ws://a/ws", "ws://b/ws"} {
		c.nextURL()
		if got := c.URL(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	// A goaway may have named a URL outside the list: start over.
	c.url = "ws://elsewhere/ws"
	if c.nextURL(); c.URL() != "ws://a/ws" {
		t.Fatalf("got %s, want ws://a/ws", c.URL())
	}
	// Without fallbacks the URL stays.
	c = &Client{cfg: Config{URL: "ws://a/ws"}, url: "ws://a/ws"}
	if c.nextURL(); c.URL() != "ws://a/ws" {
		t.Fatalf("got %s, want ws://a/ws", c.URL())
	}
}
