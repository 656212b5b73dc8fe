package memlink

import (
	"context"
	"errors"
	"net"
	"sync"
)

// ErrClosed is returned by Accept and Dial once the listener is closed.
var ErrClosed = errors.New("memlink: listener closed")

// Addr is the address of every Listener: network "memory", "in-process".
type Addr struct{}

// Network returns "memory".
func (Addr) Network() string { return "memory" }

// String returns "in-process".
func (Addr) String() string { return "in-process" }

// Listener is a net.Listener for connections made by its Dial. Safe for
// concurrent use.
type Listener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

// NewListener returns an open Listener.
func NewListener() *Listener {
	return &Listener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for a Dial and returns the accepting end of its pipe.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, ErrClosed
	}
}

// Close makes Accept and Dial fail from now on. Connections already made
// stay open. It always returns nil.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr returns Addr{}.
func (l *Listener) Addr() net.Addr { return Addr{} }

// Dial makes a connection and returns its dialing end once Accept took the
// other end; it fails when ctx ends first or the listener is closed. addr
// is ignored (the signature of a dial function).
func (l *Listener) Dial(ctx context.Context, _ string) (net.Conn, error) {
	a, b := bufPipe()
	select {
	case l.conns <- b:
		return a, nil
	case <-l.done:
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, ErrClosed
}
