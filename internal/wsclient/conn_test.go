package wsclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// memConn is a net.Conn reading from a buffer and recording writes.
type memConn struct {
	r io.Reader
	w bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error)       { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)      { return m.w.Write(p) }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

func newMemConn(r io.Reader, maxMsg int) (*Conn, *memConn) {
	mc := &memConn{r: r}
	return newConn(mc, r, maxMsg, time.Second), mc
}

func frameBytes(t testing.TB, f ws.Frame) []byte {
	t.Helper()
	b, err := ws.CompileFrame(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readFrame reads one frame written by the client (test input is small).
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(r, p)
	return ws.Frame{Header: h, Payload: p}, err
}

func frame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	return append([]byte{b0, byte(len(payload))}, payload...)
}

func readAll(r io.Reader, maxMsg int) ([]string, error) {
	c, _ := newMemConn(r, maxMsg)
	var out []string
	for {
		m, err := c.ReadMessage()
		if err != nil {
			return out, err
		}
		out = append(out, string(m))
	}
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name     string
		in       [][]byte
		want     []string
		wantCode int
	}{
		{"one", [][]byte{frame(true, 1, "hi")}, []string{"hi"}, 0},
		{"ping between", [][]byte{frame(true, 1, "a"), frame(true, 9, "p"), frame(true, 1, "b")}, []string{"a", "b"}, 0},
		{"fragmented with ping", [][]byte{frame(false, 1, "he"), frame(true, 9, ""), frame(true, 0, "llo")}, []string{"hello"}, 0},
		{"pong ignored", [][]byte{frame(true, 10, "x"), frame(true, 1, "a")}, []string{"a"}, 0},
		{"close", [][]byte{frame(true, 1, "x"), frame(true, 8, "\x0f\xa2bye")}, []string{"x"}, 4002},
		{"close without code", [][]byte{frame(true, 8, "")}, nil, 1005},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Join(tt.in, nil)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				got, err := readAll(r, 0)
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Errorf("got %q, want %q", got, tt.want)
				}
				var ce *CloseError
				if tt.wantCode != 0 && (!errors.As(err, &ce) || ce.Code != tt.wantCode) {
					t.Errorf("got error %v, want close %d", err, tt.wantCode)
				}
				if tt.wantCode == 0 && !errors.Is(err, io.EOF) {
					t.Errorf("got error %v, want EOF", err)
				}
			}
		})
	}
}

// TestReadAnswers: the client answers a ping with a masked pong and echoes
// a close, masked.
func TestReadAnswers(t *testing.T) {
	var in []byte
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpText, false, []byte(`{"type":`)))...)
	in = append(in, frameBytes(t, ws.NewPingFrame([]byte("p")))...)
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpContinuation, true, []byte(`"pong"}`)))...)
	in = append(in, frameBytes(t, ws.NewTextFrame([]byte("second")))...)
	in = append(in, frameBytes(t, ws.NewCloseFrame(ws.NewCloseFrameBody(4001, "expired")))...)
	c, mc := newMemConn(bytes.NewReader(in), 1024)
	for _, want := range []string{`{"type":"pong"}`, "second"} {
		got, err := c.ReadMessage()
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if c.LastRead().IsZero() {
		t.Error("LastRead is zero after reads")
	}
	_, err := c.ReadMessage()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "expired" {
		t.Fatalf("got %v, want close 4001", err)
	}
	r := bytes.NewReader(mc.w.Bytes())
	for _, want := range []ws.OpCode{ws.OpPong, ws.OpClose} {
		f, err := readFrame(r)
		if err != nil || f.Header.OpCode != want || !f.Header.Masked {
			t.Fatalf("got %+v, %v; want masked %v", f.Header, err, want)
		}
		if want == ws.OpClose {
			f = ws.UnmaskFrameInPlace(f)
			if code, _ := ws.ParseCloseFrameData(f.Payload); code != 4001 {
				t.Errorf("echoed close code %d, want 4001", code)
			}
		}
	}
	if err := c.WriteText([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after the close: got %v, want net.ErrClosed", err)
	}
}

func TestReadLimits(t *testing.T) {
	tests := []struct {
		name      string
		in        []ws.Frame
		wantClose int
	}{
		{"too big", []ws.Frame{ws.NewTextFrame(make([]byte, 65))}, CloseTooBig},
		{"fragments too big", []ws.Frame{ws.NewFrame(ws.OpText, false, make([]byte, 40)), ws.NewFrame(ws.OpContinuation, true, make([]byte, 40))}, CloseTooBig},
		{"lone continuation", []ws.Frame{ws.NewFrame(ws.OpContinuation, true, nil)}, CloseProtocolError},
		{"text inside fragments", []ws.Frame{ws.NewFrame(ws.OpText, false, nil), ws.NewTextFrame(nil)}, CloseProtocolError},
		{"fragmented ping", []ws.Frame{ws.NewFrame(ws.OpPing, false, nil)}, CloseProtocolError},
		{"reserved opcode", []ws.Frame{ws.NewFrame(ws.OpCode(3), true, nil)}, CloseProtocolError},
		{"reserved bits", []ws.Frame{{Header: ws.Header{Fin: true, Rsv: 4, OpCode: ws.OpText}}}, CloseProtocolError},
		{"masked server frame", []ws.Frame{ws.MaskFrame(ws.NewTextFrame([]byte("x")))}, CloseProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []byte
			for _, f := range tt.in {
				in = append(in, frameBytes(t, f)...)
			}
			c, mc := newMemConn(bytes.NewReader(in), 64)
			if _, err := c.ReadMessage(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", err)
			}
			f, err := readFrame(bytes.NewReader(mc.w.Bytes()))
			if err != nil || f.Header.OpCode != ws.OpClose {
				t.Fatalf("got %+v, %v; want a close frame", f.Header, err)
			}
			f = ws.UnmaskFrameInPlace(f)
			if code, _ := ws.ParseCloseFrameData(f.Payload); int(code) != tt.wantClose {
				t.Errorf("closed with %d, want %d", code, tt.wantClose)
			}
		})
	}
}

// TestControlFrameOutsideTheLimit: a ping between the fragments of a
// message at the limit does not count toward the message.
func TestControlFrameOutsideTheLimit(t *testing.T) {
	var in []byte
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpText, false, bytes.Repeat([]byte("a"), 60)))...)
	in = append(in, frameBytes(t, ws.NewPingFrame([]byte("12345678")))...)
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpContinuation, true, []byte("bbbb")))...)
	c, _ := newMemConn(bytes.NewReader(in), 64)
	if m, err := c.ReadMessage(); err != nil || len(m) != 64 {
		t.Fatalf("got %d bytes, %v; want the 64-byte message", len(m), err)
	}
}

// TestCloseWithBounded: a close frame waits at most a second for a peer
// that stopped reading, whatever the write timeout.
func TestCloseWithBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := net.Pipe() // b never reads
		defer b.Close()
		c := newConn(a, a, 0, 10*time.Second)
		start := time.Now()
		_ = c.CloseWith(CloseNormal, "")
		if took := time.Since(start); took > time.Second {
			t.Fatalf("CloseWith took %v, want at most 1s", took)
		}
		if err := c.WriteText([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after CloseWith: got %v, want net.ErrClosed", err)
		}
	})
}

// TestCloseWithBehindABlockedWrite: a write stuck on a peer that stopped
// reading does not hold CloseWith for the whole write timeout. Real time:
// a goroutine waiting for a mutex does not let synctest's clock move.
func TestCloseWithBehindABlockedWrite(t *testing.T) {
	a, b := net.Pipe() // b never reads
	defer b.Close()
	c := newConn(a, a, 0, 30*time.Second)
	go func() { _ = c.WriteText([]byte("stuck")) }()
	for { // until the writer holds the lock
		if c.wmu.TryLock() {
			c.wmu.Unlock()
			time.Sleep(time.Millisecond)
			continue
		}
		break
	}
	start := time.Now()
	_ = c.CloseWith(CloseNormal, "")
	if took := time.Since(start); took > 10*time.Second { // 1 s by design; generous for CI
		t.Fatalf("CloseWith took %v behind a blocked write, want about 1s", took)
	}
}

func TestWriteMasks(t *testing.T) {
	var seen []string
	c, mc := newMemConn(bytes.NewReader(nil), 64)
	c.observe = func(out bool, p []byte) { seen = append(seen, string(p)) }
	p := []byte(`{"type":"ping","id":"x"}`)
	if err := c.WriteText(p); err != nil {
		t.Fatal(err)
	}
	if string(p) != `{"type":"ping","id":"x"}` {
		t.Fatalf("WriteText modified its input: %q", p)
	}
	f, err := readFrame(bytes.NewReader(mc.w.Bytes()))
	if err != nil || !f.Header.Masked {
		t.Fatalf("got %+v, %v; want a masked frame", f.Header, err)
	}
	f = ws.UnmaskFrameInPlace(f)
	if string(f.Payload) != string(p) || len(seen) != 1 || seen[0] != string(p) {
		t.Fatalf("got payload %q, observed %q; want %q", f.Payload, seen, p)
	}
}

func TestWriteTexts(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newConn(a, a, 0, time.Second)
	want := []string{"one", strings.Repeat("x", 300), "", "three"}
	go func() {
		var ps [][]byte
		for _, s := range want[:3] {
			ps = append(ps, []byte(s))
		}
		_ = c.WriteTexts(ps)
		_ = c.WriteText([]byte(want[3]))
		_ = c.Drop()
	}()
	for _, w := range want {
		got, err := wsutil.ReadClientText(b)
		if err != nil || string(got) != w {
			t.Fatalf("got %q, %v, want %q", got, err, w)
		}
	}
	if err := c.WriteText([]byte("after drop")); err == nil {
		t.Error("write after Drop: got nil, want an error")
	}
}

func FuzzReadMessage(f *testing.F) {
	f.Add(frame(true, 1, "hi"), 1)
	f.Add(append(frame(false, 1, "he"), frame(true, 0, "llo")...), 3)
	f.Add(frame(true, 8, "\x03\xe8"), 0)
	f.Add(frameBytes(f, ws.NewPingFrame([]byte("p"))), 2)
	f.Add([]byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 5)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		cut %= len(in) + 1
		whole, errW := readAll(bytes.NewReader(in), 256)
		split, errS := readAll(io.MultiReader(bytes.NewReader(in[:cut]), bytes.NewReader(in[cut:])), 256)
		if strings.Join(whole, "|") != strings.Join(split, "|") || errKind(errW) != errKind(errS) {
			t.Errorf("split input changed the result: %q %v vs %q %v", whole, errW, split, errS)
		}
		for _, m := range whole {
			if len(m) > 256 {
				t.Fatalf("got a %d-byte message over the 256 limit", len(m))
			}
		}
	})
}

// errKind names how a read ended, for comparing two runs.
func errKind(err error) string {
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("close %d %q", ce.Code, ce.Reason)
	case errors.Is(err, ErrProtocol):
		return "protocol"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated"
	case errors.Is(err, io.EOF):
		return "eof"
	}
	return fmt.Sprintf("other: %v", err)
}
