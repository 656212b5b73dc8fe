package wsc

import (
	"bytes"
	"errors"
	"github.com/gobwas/ws/wsutil"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseIPRange(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"127.0.0.2", []string{"127.0.0.2"}, false},
		{"127.0.0.254-127.0.1.1", []string{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"}, false},
		{"127.0.0.2-127.0.0.3,10.0.0.1", []string{"127.0.0.2", "127.0.0.3", "10.0.0.1"}, false},
		{"127.0.0.3-127.0.0.2", nil, true},
		{"::1", nil, true},
		{"x", nil, true},
		{"10.0.0.0-10.1.0.0", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseIPRange(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIPRange(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var gs []string
		for _, ip := range got {
			gs = append(gs, ip.String())
		}
		if strings.Join(gs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("ParseIPRange(%q): got %v, want %v", tt.in, gs, tt.want)
		}
	}
}

// discardConn is a net.Conn whose writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }

func frame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	return append([]byte{b0, byte(len(payload))}, payload...)
}

func readAll(r io.Reader) ([]string, error) {
	c := &Conn{nc: discardConn{}, r: r}
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
		{"close", [][]byte{frame(true, 1, "x"), frame(true, 8, "\x0f\xa2bye")}, []string{"x"}, 4002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Join(tt.in, nil)
			for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
				got, err := readAll(r)
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

func FuzzReadMessage(f *testing.F) {
	f.Add(frame(true, 1, "hi"))
	f.Add(append(frame(false, 1, "he"), frame(true, 0, "llo")...))
	f.Add(frame(true, 8, "\x03\xe8"))
	f.Add([]byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, errW := readAll(bytes.NewReader(in))
		half := len(in) / 2
		split, errS := readAll(io.MultiReader(bytes.NewReader(in[:half]), bytes.NewReader(in[half:])))
		if strings.Join(whole, "|") != strings.Join(split, "|") || (errW == nil) != (errS == nil) {
			t.Errorf("split input changed the result: %q %v vs %q %v", whole, errW, split, errS)
		}
	})
}

func TestWriteTexts(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &Conn{nc: a, wtimeout: time.Second}
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
