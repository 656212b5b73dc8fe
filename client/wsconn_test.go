package client

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
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

func newMemWS(in []byte, maxFrame int) (*wsConn, *memConn) {
	mc := &memConn{r: bytes.NewReader(in)}
	return &wsConn{nc: mc, r: mc, maxFrame: maxFrame, wtimeout: time.Second}, mc
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

func TestWSRead(t *testing.T) {
	var in []byte
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpText, false, []byte(`{"type":`)))...)
	in = append(in, frameBytes(t, ws.NewPingFrame([]byte("p")))...)
	in = append(in, frameBytes(t, ws.NewFrame(ws.OpContinuation, true, []byte(`"pong"}`)))...)
	in = append(in, frameBytes(t, ws.MaskFrame(ws.NewTextFrame([]byte("masked"))))...)
	in = append(in, frameBytes(t, ws.NewCloseFrame(ws.NewCloseFrameBody(4001, "expired")))...)
	c, mc := newMemWS(in, 1024)
	for _, want := range []string{`{"type":"pong"}`, "masked"} {
		got, err := c.read()
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	_, err := c.read()
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "expired" {
		t.Fatalf("got %v, want close 4001", err)
	}
	// The client answered the ping (masked pong) and echoed the close.
	r := bytes.NewReader(mc.w.Bytes())
	for _, want := range []ws.OpCode{ws.OpPong, ws.OpClose} {
		f, err := readFrame(r)
		if err != nil || f.Header.OpCode != want || !f.Header.Masked {
			t.Fatalf("got %+v, %v; want masked %v", f.Header, err, want)
		}
	}
}

func TestWSReadLimits(t *testing.T) {
	tests := []struct {
		name string
		in   []ws.Frame
	}{
		{"too big", []ws.Frame{ws.NewTextFrame(make([]byte, 65))}},
		{"fragments too big", []ws.Frame{ws.NewFrame(ws.OpText, false, make([]byte, 40)), ws.NewFrame(ws.OpContinuation, true, make([]byte, 40))}},
		{"lone continuation", []ws.Frame{ws.NewFrame(ws.OpContinuation, true, nil)}},
		{"text inside fragments", []ws.Frame{ws.NewFrame(ws.OpText, false, nil), ws.NewTextFrame(nil)}},
		{"fragmented ping", []ws.Frame{ws.NewFrame(ws.OpPing, false, nil)}},
		{"reserved opcode", []ws.Frame{ws.NewFrame(ws.OpCode(3), true, nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []byte
			for _, f := range tt.in {
				in = append(in, frameBytes(t, f)...)
			}
			c, _ := newMemWS(in, 64)
			if _, err := c.read(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("got %v, want ErrProtocol", err)
			}
		})
	}
}

func TestWSWriteMasks(t *testing.T) {
	c, mc := newMemWS(nil, 64)
	p := []byte(`{"type":"ping","id":"x"}`)
	if err := c.writeText(p); err != nil {
		t.Fatal(err)
	}
	if string(p) != `{"type":"ping","id":"x"}` {
		t.Fatalf("writeText modified its input: %q", p)
	}
	f, err := readFrame(bytes.NewReader(mc.w.Bytes()))
	if err != nil || !f.Header.Masked {
		t.Fatalf("got %+v, %v; want a masked frame", f.Header, err)
	}
	f = ws.UnmaskFrameInPlace(f)
	if string(f.Payload) != string(p) {
		t.Fatalf("got payload %q, want %q", f.Payload, p)
	}
}

func FuzzWSRead(f *testing.F) {
	f.Add(frameBytes(f, ws.NewTextFrame([]byte(`{"type":"pong"}`))), 3)
	f.Add(append(frameBytes(f, ws.NewFrame(ws.OpText, false, []byte("a"))), frameBytes(f, ws.NewFrame(ws.OpContinuation, true, []byte("b")))...), 5)
	f.Add(frameBytes(f, ws.NewCloseFrame(ws.NewCloseFrameBody(1012, "x"))), 1)
	f.Add(frameBytes(f, ws.NewPingFrame([]byte("p"))), 2)
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		cut %= len(in) + 1
		// Split input: the frame reader sees the bytes in two reads.
		c, _ := newMemWS(nil, 256)
		c.r = io.MultiReader(bytes.NewReader(in[:cut]), bytes.NewReader(in[cut:]))
		for i := 0; i < 16; i++ {
			msg, err := c.read()
			if err != nil {
				return
			}
			if len(msg) > 256 {
				t.Fatalf("got a %d-byte message over the 256 limit", len(msg))
			}
		}
	})
}
