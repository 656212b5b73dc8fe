package logic

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/tierlink"
)

// TestLinkRefusesUnauthenticated: a raw tier-link client without the link
// secret gets no session and no data: a version-1 hello (a build before
// link authentication), a wrong secret, a missing proof, and a proof
// replayed from another link are all refused before any Open is read.
func TestLinkRefusesUnauthenticated(t *testing.T) {
	svc := startService(t, newMemStore())
	open := tierlink.AppendOpen(nil, 1, tierlink.Open{User: "alice", Device: "d", Remote: "127.0.0.1:1"})
	open = tierlink.AppendFrame(open, tierlink.TypeData, 1, []byte(`{"type":"history","id":"h","chat":"dm:alice:bob"}`))
	// refused reports whether the server closed the link without handing
	// out anything but (at most) a hello ack.
	refused := func(t *testing.T, c net.Conn, r *tierlink.Reader) {
		t.Helper()
		_, _ = c.Write(open)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			f, err := r.Next()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the link stayed open without authentication")
				}
				return // closed: refused
			}
			if f.Type != tierlink.TypeHelloAck {
				t.Fatalf("got a %s frame on an unauthenticated link", f.Type)
			}
		}
	}
	dial := func(t *testing.T) (net.Conn, *tierlink.Reader) {
		c, err := net.Dial("tcp", svc.LinkAddr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, tierlink.NewReader(c, 0, 0)
	}
	t.Run("version 1 hello", func(t *testing.T) {
		c, r := dial(t)
		_, _ = c.Write(tierlink.AppendFrame(nil, tierlink.TypeHello, 0, []byte("\x01\x04fake")))
		refused(t, c, r)
	})
	t.Run("wrong secret", func(t *testing.T) {
		c, r := dial(t)
		_, err := tierlink.DialHandshake(c, r, tierlink.TypeHello, "fake", tierlink.Secret("wrong-secret-wrong-secret-wrong-secret"), tierlink.DialOptions{})
		if !errors.Is(err, tierlink.ErrAuth) {
			t.Fatalf("got %v, want ErrAuth (the server's proof does not match)", err)
		}
		// Go on as if it had: send a bogus proof.
		_, _ = c.Write(tierlink.AppendAuth(nil, make([]byte, tierlink.MACSize)))
		refused(t, c, r)
	})
	t.Run("no proof", func(t *testing.T) {
		c, r := dial(t)
		_, _ = c.Write(tierlink.AppendHello(nil, tierlink.TypeHello, tierlink.Hello{Min: tierlink.MinVersion, Max: tierlink.MaxVersion, NodeID: "fake"}))
		refused(t, c, r)
	})
	t.Run("peer hello without proof", func(t *testing.T) {
		c, r := dial(t)
		_, _ = c.Write(tierlink.AppendHello(nil, tierlink.TypePeerHello, tierlink.Hello{Min: tierlink.MinVersion, Max: tierlink.MaxVersion, NodeID: "evil|127.0.0.1:1"}))
		_, _ = c.Write(tierlink.AppendAuth(nil, nil))
		refused(t, c, r)
	})
	t.Run("the secret opens it", func(t *testing.T) {
		n := dialNode(t, svc.LinkAddr())
		n.open(1, "alice", "d") // hello, sync, synced
	})
}
