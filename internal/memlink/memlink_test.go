package memlink

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

func TestDialAccept(t *testing.T) {
	l := NewListener()
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			accepted <- err
			return
		}
		_, err = c.Write(append(buf, '!'))
		accepted <- err
	}()
	c, err := l.Dial(t.Context(), "ignored")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello!" {
		t.Fatalf("got %q, %v", got, err)
	}
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != "in-process" || l.Addr().Network() != "memory" {
		t.Fatalf("addresses: %v %v", c.RemoteAddr(), l.Addr())
	}
}

func TestDeadlines(t *testing.T) {
	l := NewListener()
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			<-t.Context().Done()
		}
	}()
	c, err := l.Dial(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var ne interface{ Timeout() bool }
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: got %v, want a timeout", err)
	}
}

func TestClosed(t *testing.T) {
	l := NewListener()
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close: got %v", err)
	}
	if _, err := l.Dial(t.Context(), ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial after Close: got %v", err)
	}
	l2 := NewListener()
	defer l2.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l2.Dial(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with no Accept and a cancelled context: got %v", err)
	}
}

// TestBufferedPipe: a writer goes on while its reader is busy (up to
// pipeCap unread bytes), then waits for the reader; a close delivers what
// was written, then EOF, and makes the peer's writes fail.
func TestBufferedPipe(t *testing.T) {
	a, b := bufPipe()
	chunk := make([]byte, 64<<10)
	for i := range pipeCap / len(chunk) {
		chunk[0] = byte(i)
		if n, err := a.Write(chunk); err != nil || n != len(chunk) {
			t.Fatalf("write %d with the reader idle: %d, %v", i, n, err)
		}
	}
	_ = a.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := a.Write([]byte{1}); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past pipeCap with no reader: got %v, want a deadline error", err)
	}
	_ = a.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Write([]byte("tail"))
		if err == nil {
			err = a.Close()
		}
		done <- err
	}()
	got, err := io.ReadAll(b)
	if err != nil || len(got) != pipeCap+4 || string(got[pipeCap:]) != "tail" || got[0] != 0 || got[len(chunk)] != 1 {
		t.Fatalf("read %d bytes, %v, want %d ending in tail", len(got), err, pipeCap+4)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("write to a closed peer: got nil error")
	}
	if _, err := a.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after Close: got nil error")
	}
}

// TestCloseWakesEveryWaiter: two goroutines blocked in Read on one end,
// and one in Write on a full pipe, all return when the end is closed.
func TestCloseWakesEveryWaiter(t *testing.T) {
	a, b := bufPipe()
	defer b.Close()
	errs := make(chan error, 3)
	for range 2 {
		go func() {
			_, err := a.Read(make([]byte, 8))
			errs <- err
		}()
	}
	c, d := bufPipe()
	defer d.Close()
	if _, err := c.Write(make([]byte, pipeCap)); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := c.Write([]byte("x")) // waits: the pipe is full
		errs <- err
	}()
	time.Sleep(20 * time.Millisecond) // let them block (a missed wake would hang below)
	a.Close()
	c.Close()
	for range 3 {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("a waiter returned nil after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter was not woken by Close")
		}
	}
}

// TestDeadlineMoves: a deadline pushed later while a read waits, or
// before, holds the read until the later time (the timer armed for the
// earlier one re-arms); one pulled earlier ends it then; one cleared
// lets a read wait for data.
func TestDeadlineMoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := bufPipe()
		defer a.Close()
		defer b.Close()
		timedOut := func(want time.Duration, start time.Time) {
			t.Helper()
			_, err := a.Read(make([]byte, 1))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: got %v, want a timeout", err)
			}
			if got := time.Since(start); got != want {
				t.Fatalf("read timed out after %v, want %v", got, want)
			}
		}
		start := time.Now()
		_ = a.SetReadDeadline(start.Add(10 * time.Millisecond))
		_ = a.SetReadDeadline(start.Add(50 * time.Millisecond))
		timedOut(50*time.Millisecond, start)

		start = time.Now()
		_ = a.SetReadDeadline(start.Add(10 * time.Millisecond))
		go func() {
			time.Sleep(5 * time.Millisecond)
			_ = a.SetReadDeadline(start.Add(30 * time.Millisecond))
		}()
		timedOut(30*time.Millisecond, start)

		start = time.Now()
		_ = a.SetReadDeadline(start.Add(time.Hour))
		go func() {
			time.Sleep(5 * time.Millisecond)
			_ = a.SetReadDeadline(start.Add(20 * time.Millisecond))
		}()
		timedOut(20*time.Millisecond, start)

		start = time.Now()
		_ = a.SetReadDeadline(start.Add(10 * time.Millisecond))
		_ = a.SetReadDeadline(time.Time{})
		go func() {
			time.Sleep(time.Second)
			_, _ = b.Write([]byte("x"))
		}()
		if n, err := a.Read(make([]byte, 1)); n != 1 || err != nil || time.Since(start) != time.Second {
			t.Fatalf("read without a deadline: got %d, %v after %v, want the byte after 1s", n, err, time.Since(start))
		}
	})
}
