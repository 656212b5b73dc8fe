package tierlink

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

// handshake runs both sides over a pipe and returns their outcomes.
func handshake(t *testing.T, dialSecret, acceptSecret Secret, tamper func(frame []byte) []byte) (Dialed, error, Accepted, error) {
	return handshakeWith(t, dialSecret, acceptSecret, tamper, DialOptions{}, nil)
}

func handshakeWith(t *testing.T, dialSecret, acceptSecret Secret, tamper func(frame []byte) []byte, opts DialOptions, acceptBinding []byte) (Dialed, error, Accepted, error) {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	type res struct {
		a   Accepted
		err error
	}
	done := make(chan res, 1)
	go func() {
		r := NewReader(s, 4096, MaxFrame)
		f, err := r.Next()
		if err != nil {
			done <- res{err: err}
			return
		}
		a, err := AcceptHandshake(s, r, f, "logic-1", acceptSecret, acceptBinding)
		if err != nil {
			s.Close()
		}
		done <- res{a, err}
	}()
	var w interface{ Write([]byte) (int, error) } = c
	if tamper != nil {
		w = tamperWriter{c, tamper}
	}
	d, derr := DialHandshake(w, NewReader(c, 4096, MaxFrame), TypeHello, "conn-1", dialSecret, opts)
	if derr != nil {
		c.Close()
	}
	r := <-done
	return d, derr, r.a, r.err
}

type tamperWriter struct {
	c interface{ Write([]byte) (int, error) }
	f func([]byte) []byte
}

func (w tamperWriter) Write(b []byte) (int, error) {
	_, err := w.c.Write(w.f(bytes.Clone(b)))
	return len(b), err
}

func TestHandshake(t *testing.T) {
	secret := Secret("0123456789abcdef0123456789abcdef")
	other := Secret("ffffffffffffffffffffffffffffffff")
	d, derr, a, aerr := handshake(t, secret, secret, nil)
	if derr != nil || aerr != nil || d.Version != MaxVersion || a.Version != MaxVersion || !a.Proved || d.NodeID != "logic-1" || a.Hello.NodeID != "conn-1" {
		t.Fatalf("same secret: got %+v %v / %+v %v", d, derr, a, aerr)
	}
	_, _, a, aerr = handshake(t, nil, nil, nil)
	if aerr != nil || a.Proved {
		t.Fatalf("no secrets (mutual TLS): got %+v %v, want accepted without proof", a, aerr)
	}
	for _, tc := range []struct {
		name         string
		dial, accept Secret
		tamper       func([]byte) []byte
	}{
		{"wrong secret", other, secret, nil},
		{"dialer without the secret", nil, secret, nil},
		{"acceptor without the secret", secret, nil, nil},
		{"forged dialer proof", secret, secret, func(b []byte) []byte {
			if Type(b[4]) == TypeAuth {
				b[len(b)-1] ^= 1
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, derr, _, aerr := handshake(t, tc.dial, tc.accept, tc.tamper)
			if !errors.Is(derr, ErrAuth) && !errors.Is(aerr, ErrAuth) {
				t.Fatalf("got dial %v, accept %v; want ErrAuth on one side", derr, aerr)
			}
			if aerr == nil {
				t.Fatal("the acceptor accepted the link")
			}
		})
	}
}

// TestHandshakeReplay: a recorded dialer's proof does not open a second
// link (the acceptor's nonce is new every time).
func TestHandshakeReplay(t *testing.T) {
	secret := Secret("0123456789abcdef0123456789abcdef")
	var hello, auth []byte
	_, derr, _, aerr := handshake(t, secret, secret, func(b []byte) []byte {
		switch Type(b[4]) {
		case TypeHello:
			hello = bytes.Clone(b)
		case TypeAuth:
			auth = bytes.Clone(b)
		}
		return b
	})
	if derr != nil || aerr != nil || hello == nil || auth == nil {
		t.Fatalf("first link: %v %v", derr, aerr)
	}
	// An attacker who recorded that link plays it back to the acceptor.
	c, s := net.Pipe()
	defer c.Close()
	go func() {
		_, _ = c.Write(hello)
		r := NewReader(c, 4096, MaxFrame)
		if f, err := r.Next(); err == nil && f.Type == TypeHelloAck {
			_, _ = c.Write(auth)
		}
	}()
	r := NewReader(s, 4096, MaxFrame)
	f, _ := r.Next()
	if _, err := AcceptHandshake(s, r, f, "logic-1", secret, nil); !errors.Is(err, ErrAuth) {
		t.Fatalf("replayed handshake: got %v, want ErrAuth", err)
	}
}

// TestHandshakeVersions: two ranges settle on the highest common version;
// disjoint ranges and a version-1 hello are refused.
func TestHandshakeVersions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max uint8
		want     uint8
		wantErr  error
	}{
		{"same", MinVersion, MaxVersion, MaxVersion, nil},
		{"newer dialer", MinVersion, MaxVersion + 5, MaxVersion, nil},
		{"older overlap", 1, MinVersion, MinVersion, nil},
		{"too new", MaxVersion + 1, MaxVersion + 3, 0, ErrNoCommonVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			go func() {
				_, _ = c.Write(AppendHello(nil, TypeHello, Hello{Min: tc.min, Max: tc.max, NodeID: "x"}))
				r := NewReader(c, 4096, MaxFrame)
				if f, err := r.Next(); err == nil && f.Type == TypeHelloAck {
					_, _ = c.Write(AppendAuth(nil, nil))
				}
			}()
			r := NewReader(s, 4096, MaxFrame)
			f, _ := r.Next()
			a, err := AcceptHandshake(s, r, f, "l", nil, nil)
			if !errors.Is(err, tc.wantErr) || (err == nil && a.Version != tc.want) {
				t.Fatalf("got %d %v, want %d %v", a.Version, err, tc.want, tc.wantErr)
			}
		})
	}
	c, s := net.Pipe()
	defer c.Close()
	go func() { _, _ = c.Write(AppendFrame(nil, TypeHello, 0, []byte("\x01\x06conn-1"))) }()
	r := NewReader(s, 4096, MaxFrame)
	f, _ := r.Next()
	if _, err := AcceptHandshake(s, r, f, "l", nil, nil); !errors.Is(err, ErrLegacyHello) {
		t.Fatalf("v1 hello: got %v, want ErrLegacyHello", err)
	}
}

// BenchmarkHandshake: the cost of opening one authenticated link (both
// sides, over an in-memory pipe); frames after it cost nothing extra.
func BenchmarkHandshake(b *testing.B) {
	for _, tc := range []struct {
		name   string
		secret Secret
	}{{"secret", Secret("0123456789abcdef0123456789abcdef")}, {"none", nil}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, s := net.Pipe()
				done := make(chan error, 1)
				go func() {
					r := NewReader(s, 4096, MaxFrame)
					f, err := r.Next()
					if err == nil {
						_, err = AcceptHandshake(s, r, f, "logic-1", tc.secret, nil)
					}
					done <- err
				}()
				if _, err := DialHandshake(c, NewReader(c, 4096, MaxFrame), TypeHello, "conn-1", tc.secret, DialOptions{}); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				c.Close()
				s.Close()
			}
		})
	}
}

// TestHandshakeCovers: the proofs cover the offered version range and the
// channel binding, one side's proof is not the other's, and a dialer that
// vetoes the acceptor sends no proof.
func TestHandshakeCovers(t *testing.T) {
	secret := Secret("0123456789abcdef0123456789abcdef")
	t.Run("range changed in transit", func(t *testing.T) {
		_, derr, _, _ := handshake(t, secret, secret, func(b []byte) []byte {
			if Type(b[4]) == TypeHello {
				b[HeaderSize+1]++ // max
			}
			return b
		})
		if !errors.Is(derr, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", derr)
		}
	})
	t.Run("different channel bindings", func(t *testing.T) {
		_, derr, _, _ := handshakeWith(t, secret, secret, nil, DialOptions{Binding: []byte("session-1")}, []byte("session-2"))
		if !errors.Is(derr, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", derr)
		}
	})
	t.Run("same channel binding", func(t *testing.T) {
		_, derr, a, aerr := handshakeWith(t, secret, secret, nil, DialOptions{Binding: []byte("session-1")}, []byte("session-1"))
		if derr != nil || aerr != nil || !a.Proved {
			t.Fatalf("got %v / %v, want a proved link", derr, aerr)
		}
	})
	t.Run("veto sends no proof", func(t *testing.T) {
		veto := errors.New("that is me")
		_, derr, _, aerr := handshakeWith(t, secret, secret, nil, DialOptions{Check: func(d Dialed) error { return veto }}, nil)
		if !errors.Is(derr, veto) || aerr == nil {
			t.Fatalf("got dial %v, accept %v; want the veto and no link", derr, aerr)
		}
	})
	t.Run("the acceptor's proof bounced back", func(t *testing.T) {
		c, s := net.Pipe()
		defer c.Close()
		go func() {
			_, _ = c.Write(AppendHello(nil, TypeHello, Hello{Min: MinVersion, Max: MaxVersion, NodeID: "conn-1"}))
			r := NewReader(c, 4096, MaxFrame)
			if f, err := r.Next(); err == nil && f.Type == TypeHelloAck {
				if a, err := ParseHelloAck(f.Payload); err == nil {
					_, _ = c.Write(AppendAuth(nil, a.MAC))
				}
			}
		}()
		r := NewReader(s, 4096, MaxFrame)
		f, _ := r.Next()
		if _, err := AcceptHandshake(s, r, f, "logic-1", secret, nil); !errors.Is(err, ErrAuth) {
			t.Fatalf("got %v, want ErrAuth", err)
		}
	})
}

// TestHandshakeReplayedAck: a recorded HelloAck does not fool a dialer
// (its own nonce is new every time), so nobody can pose as a logic node.
func TestHandshakeReplayedAck(t *testing.T) {
	secret := Secret("0123456789abcdef0123456789abcdef")
	var ack []byte
	c, s := net.Pipe()
	go func() {
		r := NewReader(s, 4096, MaxFrame)
		if f, err := r.Next(); err == nil {
			_, _ = AcceptHandshake(tamperWriter{s, func(b []byte) []byte {
				if Type(b[4]) == TypeHelloAck {
					ack = bytes.Clone(b)
				}
				return b
			}}, r, f, "logic-1", secret, nil)
		}
	}()
	if _, err := DialHandshake(c, NewReader(c, 4096, MaxFrame), TypeHello, "conn-1", secret, DialOptions{}); err != nil || ack == nil {
		t.Fatalf("first link: %v", err)
	}
	c.Close()
	s.Close()
	c, s = net.Pipe()
	defer c.Close()
	go func() {
		r := NewReader(s, 4096, MaxFrame)
		if _, err := r.Next(); err == nil {
			_, _ = s.Write(ack)
		}
	}()
	if _, err := DialHandshake(c, NewReader(c, 4096, MaxFrame), TypeHello, "conn-1", secret, DialOptions{}); !errors.Is(err, ErrAuth) {
		t.Fatalf("replayed hello ack: got %v, want ErrAuth", err)
	}
}
