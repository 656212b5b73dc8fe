package tierlink

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// frameCase is one encoded frame and what Parse must return for it.
type frameCase struct {
	name    string
	enc     []byte
	typ     Type
	session uint64
	payload []byte
}

// frameCases returns one encoded frame of every type, built with the
// Append* functions.
func frameCases() []frameCase {
	multi := binary.BigEndian.AppendUint16(nil, 2)
	multi = binary.BigEndian.AppendUint64(multi, 7)
	multi = binary.BigEndian.AppendUint64(multi, 1<<63)
	multi = append(multi, `{"type":"msg"}`...)
	return []frameCase{
		{"hello", AppendHello(nil, TypeHello, Hello{Min: 2, Max: 3, NodeID: "conn-1", Nonce: [NonceSize]byte{7}}), TypeHello, 0, append([]byte("\x02\x03\x06conn-1\x07"), make([]byte, NonceSize-1)...)},
		{"hello_ack", AppendHelloAck(nil, HelloAck{Version: 9, NodeID: "", MAC: []byte{1, 2}}), TypeHelloAck, 0, append(append([]byte{9, 0}, make([]byte, NonceSize)...), 2, 1, 2)},
		{"auth", AppendAuth(nil, []byte{5, 6}), TypeAuth, 0, []byte{5, 6}},
		{"open", AppendOpen(nil, 42, Open{User: "alice", Device: "d1", Remote: "127.0.0.1:9"}), TypeOpen, 42, []byte("\x05alice\x02d1\x0b127.0.0.1:9")},
		{"close", AppendClose(nil, 43, 1000), TypeClose, 43, []byte{0x03, 0xe8}},
		{"data", AppendFrame(nil, TypeData, 44, []byte(`{"type":"ping"}`)), TypeData, 44, []byte(`{"type":"ping"}`)},
		{"data_empty", AppendFrame(nil, TypeData, 45, nil), TypeData, 45, []byte{}},
		{"deliver", AppendFrame(nil, TypeDeliver, ^uint64(0), []byte(`{"type":"msg"}`)), TypeDeliver, ^uint64(0), []byte(`{"type":"msg"}`)},
		{"kick", AppendKick(nil, 46, 4002, "slow"), TypeKick, 46, []byte("\x0f\xa2slow")},
		{"ping", AppendPing(nil, TypePing, 0x0102030405060708), TypePing, 0, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"pong", AppendPing(nil, TypePong, 1), TypePong, 0, []byte{0, 0, 0, 0, 0, 0, 0, 1}},
		{"multi", AppendMulti(nil, []uint64{7, 1 << 63}, []byte(`{"type":"msg"}`)), TypeMulti, 0, multi},
	}
}

func TestParseRoundTrip(t *testing.T) {
	for _, tc := range frameCases() {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := len(tc.enc), HeaderSize+len(tc.payload); got != want {
				t.Fatalf("got encoded length %d, want %d", got, want)
			}
			// Trailing bytes of a following frame must not be consumed.
			in := append(bytes.Clone(tc.enc), 0, 0)
			f, n, err := Parse(in, 0)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if n != len(tc.enc) {
				t.Errorf("got n %d, want %d", n, len(tc.enc))
			}
			if f.Type != tc.typ {
				t.Errorf("got type %v, want %v", f.Type, tc.typ)
			}
			if f.Session != tc.session {
				t.Errorf("got session %d, want %d", f.Session, tc.session)
			}
			if !bytes.Equal(f.Payload, tc.payload) {
				t.Errorf("got payload %q, want %q", f.Payload, tc.payload)
			}
			if cap(f.Payload) != len(f.Payload) {
				t.Errorf("got payload cap %d, want %d (appending must not overwrite the next frame)", cap(f.Payload), len(f.Payload))
			}
			if re := AppendFrame(nil, f.Type, f.Session, f.Payload); !bytes.Equal(re, tc.enc) {
				t.Errorf("got re-encoded %x, want %x", re, tc.enc)
			}
		})
	}
}

func TestAppendHeader(t *testing.T) {
	got := AppendHeader([]byte{0xff}, TypeData, 0x0102030405060708, 3)
	want := []byte{0xff, 0, 0, 0, 12, byte(TypeData), 1, 2, 3, 4, 5, 6, 7, 8}
	if !bytes.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
}

func TestAppendFrameNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	payload := []byte("payload")
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendFrame(buf[:0], TypeDeliver, 1, payload)
	})
	if allocs != 0 {
		t.Errorf("got %v allocs per AppendFrame, want 0", allocs)
	}
}

// header builds a raw 13-byte header with an arbitrary length field.
func header(length uint32, t Type, session uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, byte(t))
	return binary.BigEndian.AppendUint64(b, session)
}

func TestParseErrors(t *testing.T) {
	full := AppendFrame(nil, TypeData, 1, []byte("hello"))
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		wantErr  error // nil: need more bytes (n == 0)
	}{
		{"empty", nil, 0, nil},
		{"partial_length", []byte{0, 0, 0}, 0, nil},
		{"length_only", full[:4], 0, nil},
		{"partial_header", full[:HeaderSize-1], 0, nil},
		{"header_only", full[:HeaderSize], 0, nil},
		{"partial_payload", full[:len(full)-1], 0, nil},
		{"length_0", header(0, TypeData, 1), 0, ErrShortFrame},
		{"length_8", header(8, TypeData, 1), 0, ErrShortFrame},
		{"length_8_short_buffer", header(8, TypeData, 1)[:4], 0, ErrShortFrame},
		{"too_large_default", header(MaxFrame+1, TypeData, 1)[:4], 0, ErrTooLarge},
		{"too_large_max_uint32", header(^uint32(0), TypeData, 1), 0, ErrTooLarge},
		{"too_large_custom", header(9+100, TypeData, 1), 9 + 99, ErrTooLarge},
		{"custom_over_max_clamped", header(MaxFrame+1, TypeData, 1), MaxFrame * 2, ErrTooLarge},
		{"type_0", header(9, 0, 1), 0, ErrUnknown},
		{"type_after_auth", header(9, TypeAuth+1, 1), 0, ErrUnknown},
		{"type_ff", header(9, 0xff, 1), 0, ErrUnknown},
		{"type_unknown_partial_frame", header(MaxFrame, 0x7f, 1)[:5], 0, ErrUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := Parse(tc.in, tc.maxFrame)
			if n != 0 {
				t.Errorf("got n %d, want 0", n)
			}
			if f.Type != 0 || f.Session != 0 || f.Payload != nil {
				t.Errorf("got frame %+v, want zero", f)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Errorf("got error %v, want nil (need more bytes)", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("got error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	// A frame exactly at the limit parses.
	p := make([]byte, 100-9)
	b := AppendFrame(nil, TypeData, 1, p)
	if _, n, err := Parse(b, 100); err != nil || n != len(b) {
		t.Errorf("got n %d, err %v; want n %d, nil", n, err, len(b))
	}
	if _, _, err := Parse(b, 99); !errors.Is(err, ErrTooLarge) {
		t.Errorf("got error %v, want %v", err, ErrTooLarge)
	}
	// MaxFrame itself is allowed with the default limit (header only is enough
	// to decide: Parse asks for more bytes).
	if _, n, err := Parse(header(MaxFrame, TypeData, 1), 0); err != nil || n != 0 {
		t.Errorf("got n %d, err %v; want 0, nil", n, err)
	}
}

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{TypeHello, "hello"}, {TypeHelloAck, "hello_ack"}, {TypeOpen, "open"},
		{TypeClose, "close"}, {TypeData, "data"}, {TypeDeliver, "deliver"},
		{TypeKick, "kick"}, {TypePing, "ping"}, {TypePong, "pong"},
		{TypeMulti, "multi"}, {TypeAuth, "auth"}, {0, "type(0x00)"}, {0xab, "type(0xab)"},
	}
	for _, tc := range tests {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Type(%d).String(): got %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	t.Run("hello", func(t *testing.T) {
		for _, h := range []Hello{{Min: 2, Max: 2, NodeID: "n"}, {Min: 1, Max: 255, NodeID: ""}, {Min: 255, Max: 255, NodeID: strings.Repeat("x", 255), Nonce: [NonceSize]byte{1, 2, 3}}} {
			f := mustParse(t, AppendHello(nil, TypePeerHello, h))
			got, err := ParseHello(f.Payload)
			if err != nil || got != h {
				t.Errorf("got %+v, %v; want %+v, nil", got, err, h)
			}
		}
	})
	t.Run("hello_ack", func(t *testing.T) {
		for _, a := range []HelloAck{{Version: 2, NodeID: "n"}, {Version: 2, NodeID: "l", MAC: []byte("0123456789abcdef0123456789abcdef")}} {
			f := mustParse(t, AppendHelloAck(nil, a))
			got, err := ParseHelloAck(f.Payload)
			if err != nil || got.Version != a.Version || got.NodeID != a.NodeID || got.Nonce != a.Nonce || !bytes.Equal(got.MAC, a.MAC) {
				t.Errorf("got %+v, %v; want %+v, nil", got, err, a)
			}
		}
	})
	t.Run("hello_v1_is_legacy", func(t *testing.T) {
		if _, err := ParseHello([]byte("\x01\x06conn-1")); !errors.Is(err, ErrLegacyHello) {
			t.Fatalf("got %v, want ErrLegacyHello", err)
		}
	})
	t.Run("hello_cut", func(t *testing.T) {
		h := Hello{Min: 2, Max: 2, NodeID: strings.Repeat("y", 300)}
		f := mustParse(t, AppendHello(nil, TypeHello, h))
		got, err := ParseHello(f.Payload)
		if err != nil {
			t.Fatalf("got error %v, want nil", err)
		}
		if want := h.NodeID[:255]; got.NodeID != want {
			t.Errorf("got node id of %d bytes, want %d", len(got.NodeID), len(want))
		}
	})
	t.Run("open", func(t *testing.T) {
		long := strings.Repeat("z", 255)
		for _, o := range []Open{{}, {User: "u", Device: "d", Remote: "[::1]:80"}, {User: long, Device: long, Remote: long}} {
			f := mustParse(t, AppendOpen(nil, 5, o))
			got, err := ParseOpen(f.Payload)
			if err != nil || got != o {
				t.Errorf("got %+v, %v; want %+v, nil", got, err, o)
			}
		}
	})
	t.Run("open_cut", func(t *testing.T) {
		long := strings.Repeat("a", 256) + "b"
		f := mustParse(t, AppendOpen(nil, 5, Open{User: long, Device: "d", Remote: long}))
		got, err := ParseOpen(f.Payload)
		want := Open{User: long[:255], Device: "d", Remote: long[:255]}
		if err != nil || got != want {
			t.Errorf("got %+v, %v; want %+v, nil", got, err, want)
		}
	})
	t.Run("close", func(t *testing.T) {
		for _, code := range []uint16{0, 1000, 4002, 0xffff} {
			f := mustParse(t, AppendClose(nil, 9, code))
			got, err := ParseClose(f.Payload)
			if err != nil || got != code {
				t.Errorf("got %d, %v; want %d, nil", got, err, code)
			}
		}
	})
	t.Run("ping", func(t *testing.T) {
		for _, nonce := range []uint64{0, 1, ^uint64(0)} {
			f := mustParse(t, AppendPing(nil, TypePong, nonce))
			got, err := ParsePing(f.Payload)
			if err != nil || got != nonce {
				t.Errorf("got %d, %v; want %d, nil", got, err, nonce)
			}
		}
	})
	t.Run("kick", func(t *testing.T) {
		for _, reason := range []string{"", "slow consumer", strings.Repeat("r", MaxKickReason)} {
			f := mustParse(t, AppendKick(nil, 9, 4002, reason))
			code, got, err := ParseKick(f.Payload)
			if err != nil || code != 4002 || string(got) != reason {
				t.Errorf("got %d, %q, %v; want 4002, %q, nil", code, got, err, reason)
			}
		}
	})
}

func mustParse(t *testing.T, b []byte) Frame {
	t.Helper()
	f, n, err := Parse(b, 0)
	if err != nil || n != len(b) {
		t.Fatalf("cannot parse frame: n %d of %d, err %v", n, len(b), err)
	}
	return f
}

func TestKickReasonCut(t *testing.T) {
	tests := []struct {
		name   string
		reason string
		want   string
	}{
		{"ascii_123", strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{"ascii_124", strings.Repeat("a", 124), strings.Repeat("a", 123)},
		{"ascii_1000", strings.Repeat("b", 1000), strings.Repeat("b", 123)},
		// 122 ASCII bytes then a 2-byte rune: cutting at 123 would split it.
		{"rune_split_2", strings.Repeat("a", 122) + "é", strings.Repeat("a", 122)},
		// 121 ASCII bytes then a 3-byte rune straddling the limit.
		{"rune_split_3", strings.Repeat("a", 121) + "€x", strings.Repeat("a", 121)},
		// 120 ASCII bytes then a 4-byte rune straddling the limit.
		{"rune_split_4", strings.Repeat("a", 120) + "😀x", strings.Repeat("a", 120)},
		// A rune ending exactly at the limit is kept.
		{"rune_fits", strings.Repeat("a", 120) + "€" + "tail", strings.Repeat("a", 120) + "€"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, AppendKick(nil, 1, 1008, tc.reason))
			code, got, err := ParseKick(f.Payload)
			if err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			if code != 1008 {
				t.Errorf("got code %d, want 1008", code)
			}
			if string(got) != tc.want {
				t.Errorf("got reason %q (%d bytes), want %q (%d bytes)", got, len(got), tc.want, len(tc.want))
			}
			if len(got) > MaxKickReason {
				t.Errorf("got reason of %d bytes, want at most %d", len(got), MaxKickReason)
			}
			if utf8.ValidString(tc.reason) && !utf8.Valid(got) {
				t.Errorf("got invalid UTF-8 reason %q from a valid one", got)
			}
		})
	}
}

func TestMulti(t *testing.T) {
	for _, n := range []int{1, 2, MaxMultiSessions} {
		sessions := make([]uint64, n)
		for i := range sessions {
			sessions[i] = uint64(i)*0x0101010101 + 1
		}
		data := []byte(`{"type":"msg","body":"hi"}`)
		f := mustParse(t, AppendMulti(nil, sessions, data))
		if f.Type != TypeMulti || f.Session != 0 {
			t.Errorf("n=%d: got type %v session %d, want multi 0", n, f.Type, f.Session)
		}
		m, err := ParseMulti(f.Payload)
		if err != nil {
			t.Fatalf("n=%d: got error %v, want nil", n, err)
		}
		if m.Count != n {
			t.Errorf("n=%d: got count %d", n, m.Count)
		}
		for i := range n {
			if got := m.Session(i); got != sessions[i] {
				t.Fatalf("n=%d: got session[%d] %d, want %d", n, i, got, sessions[i])
			}
		}
		if !bytes.Equal(m.Data, data) {
			t.Errorf("n=%d: got data %q, want %q", n, m.Data, data)
		}
	}
	// Empty data is allowed.
	m, err := ParseMulti(mustParse(t, AppendMulti(nil, []uint64{3}, nil)).Payload)
	if err != nil || m.Count != 1 || len(m.Data) != 0 || m.Session(0) != 3 {
		t.Errorf("got %+v, %v; want one session 3 and no data", m, err)
	}
}

func TestPayloadDecodeErrors(t *testing.T) {
	multi := func(count uint16, sessions int, tail string) []byte {
		b := binary.BigEndian.AppendUint16(nil, count)
		b = append(b, make([]byte, 8*sessions)...)
		return append(b, tail...)
	}
	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
	}{
		{"hello_empty", parseHello, nil},
		{"hello_1", parseHello, []byte{2}},
		{"hello_no_nonce", parseHello, []byte{2, 2, 1, 'a'}},
		{"hello_truncated_id", parseHello, append([]byte{2, 2, 3, 'a', 'b'}, make([]byte, NonceSize-2)...)},
		{"hello_trailing", parseHello, append([]byte{2, 2, 1, 'a', 'b'}, make([]byte, NonceSize)...)},
		{"hello_min_above_max", parseHello, append([]byte{3, 2, 0}, make([]byte, NonceSize)...)},
		{"hello_min_zero", parseHello, append([]byte{0, 2, 0}, make([]byte, NonceSize)...)},
		{"hello_ack_empty", parseHelloAck, nil},
		{"hello_ack_no_mac_len", parseHelloAck, append([]byte{2, 0}, make([]byte, NonceSize)...)},
		{"hello_ack_short_mac", parseHelloAck, append(append([]byte{2, 0}, make([]byte, NonceSize)...), 3, 1)},
		{"open_empty", parseOpen, nil},
		{"open_truncated_user", parseOpen, []byte{5, 'a'}},
		{"open_missing_device", parseOpen, []byte{1, 'a'}},
		{"open_missing_remote", parseOpen, []byte{1, 'a', 0}},
		{"open_truncated_remote", parseOpen, []byte{1, 'a', 0, 2, 'x'}},
		{"open_trailing", parseOpen, []byte{1, 'a', 0, 0, 'x'}},
		{"close_empty", parseClose, nil},
		{"close_1", parseClose, []byte{3}},
		{"close_3", parseClose, []byte{3, 0xe8, 0}},
		{"kick_empty", parseKick, nil},
		{"kick_1", parseKick, []byte{3}},
		{"kick_reason_124", parseKick, append([]byte{3, 0xe8}, strings.Repeat("r", 124)...)},
		{"ping_empty", parsePing, nil},
		{"ping_7", parsePing, make([]byte, 7)},
		{"ping_9", parsePing, make([]byte, 9)},
		{"multi_empty", parseMulti, nil},
		{"multi_1", parseMulti, []byte{0}},
		{"multi_zero_sessions", parseMulti, multi(0, 0, "data")},
		{"multi_truncated_sessions", parseMulti, multi(2, 1, "")},
		{"multi_truncated_session", parseMulti, multi(1, 0, "1234567")},
		{"multi_too_many", parseMulti, multi(MaxMultiSessions+1, MaxMultiSessions+1, "")},
		{"multi_max_uint16", parseMulti, multi(0xffff, 1, "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(tc.in); !errors.Is(err, ErrBadPayload) {
				t.Errorf("got error %v, want %v", err, ErrBadPayload)
			}
		})
	}
}

func parseHello(p []byte) error    { _, err := ParseHello(p); return err }
func parseHelloAck(p []byte) error { _, err := ParseHelloAck(p); return err }
func parseOpen(p []byte) error     { _, err := ParseOpen(p); return err }
func parseClose(p []byte) error    { _, err := ParseClose(p); return err }
func parseKick(p []byte) error     { _, _, err := ParseKick(p); return err }
func parsePing(p []byte) error     { _, err := ParsePing(p); return err }
func parseMulti(p []byte) error    { _, err := ParseMulti(p); return err }

// oneByteReader returns at most one byte per Read, so every frame arrives
// split at every byte boundary.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// stream returns every frame of frameCases plus a large one, concatenated.
func stream(large int) ([]byte, []frameCase) {
	cases := frameCases()
	big := bytes.Repeat([]byte("L"), large)
	cases = append(cases, frameCase{"large", AppendFrame(nil, TypeDeliver, 77, big), TypeDeliver, 77, big})
	cases = append(cases, frameCases()...) // frames after the growth
	var all []byte
	for _, c := range cases {
		all = append(all, c.enc...)
	}
	return all, cases
}

func readAll(t *testing.T, r *Reader, cases []frameCase) {
	t.Helper()
	for i, tc := range cases {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d (%s): got error %v, want nil", i, tc.name, err)
		}
		if f.Type != tc.typ || f.Session != tc.session || !bytes.Equal(f.Payload, tc.payload) {
			t.Fatalf("frame %d (%s): got %v/%d/%d bytes, want %v/%d/%d bytes", i, tc.name, f.Type, f.Session, len(f.Payload), tc.typ, tc.session, len(tc.payload))
		}
	}
	if f, err := r.Next(); err != io.EOF {
		t.Fatalf("got %+v, %v at the end, want io.EOF", f, err)
	}
	if got := r.Buffered(); got != 0 {
		t.Errorf("got %d buffered bytes at EOF, want 0", got)
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name    string
		large   int
		bufSize int
		oneByte bool
	}{
		{"one_byte_reads", 100, 0, true},
		{"one_byte_reads_growth", 10000, 4096, true},
		{"whole_stream", 100, 0, false},
		{"growth", 3 * 4096, 4096, false},
		{"growth_max_frame", MaxFrame - 9, 4096, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all, cases := stream(tc.large)
			var src io.Reader = bytes.NewReader(all)
			if tc.oneByte {
				src = &oneByteReader{b: all}
			}
			readAll(t, NewReader(src, tc.bufSize, 0), cases)
		})
	}
}

// chunkReader returns the stream in chunks of n bytes, to exercise
// compaction at every alignment.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(r.n, len(p), len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func TestReaderChunks(t *testing.T) {
	all, cases := stream(5000)
	for _, chunk := range []int{2, 3, 7, 13, 100, 4095, 4096, 4097} {
		readAll(t, NewReader(&chunkReader{b: all, n: chunk}, 4096, 0), cases)
	}
}

func TestReaderErrors(t *testing.T) {
	frame := AppendFrame(nil, TypeData, 1, []byte("abcdef"))
	tests := []struct {
		name     string
		in       []byte
		maxFrame int
		want     error
	}{
		{"eof_empty", nil, 0, io.EOF},
		{"eof_in_length", frame[:2], 0, io.ErrUnexpectedEOF},
		{"eof_in_header", frame[:HeaderSize-1], 0, io.ErrUnexpectedEOF},
		{"eof_in_payload", frame[:len(frame)-1], 0, io.ErrUnexpectedEOF},
		{"short_frame", header(8, TypeData, 1), 0, ErrShortFrame},
		{"too_large", header(1000, TypeData, 1), 999, ErrTooLarge},
		{"unknown", header(9, 0x7f, 1), 0, ErrUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				var src io.Reader = bytes.NewReader(tc.in)
				if oneByte {
					src = &oneByteReader{b: tc.in}
				}
				r := NewReader(src, 0, tc.maxFrame)
				if _, err := r.Next(); !errors.Is(err, tc.want) {
					t.Errorf("one byte %v: got error %v, want %v", oneByte, err, tc.want)
				}
			}
		})
	}
}

// emptyReads returns (0, nil) k times before each byte.
type emptyReads struct {
	b    []byte
	k, i int
}

func (r *emptyReads) Read(p []byte) (int, error) {
	if r.i < r.k {
		r.i++
		return 0, nil
	}
	r.i = 0
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:1], r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestReaderEmptyReads(t *testing.T) {
	frame := AppendPing(nil, TypePing, 5)
	r := NewReader(&emptyReads{b: frame, k: 3}, 0, 0)
	if f, err := r.Next(); err != nil || f.Type != TypePing {
		t.Fatalf("got %+v, %v; want a ping", f, err)
	}
	r = NewReader(&emptyReads{b: frame, k: 1000}, 0, 0)
	if _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("got error %v, want %v", err, io.ErrNoProgress)
	}
}

// errReader returns some data and then a non-EOF error.
type errReader struct {
	b   []byte
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestReaderPassesReadError(t *testing.T) {
	boom := errors.New("boom")
	frame := AppendPing(nil, TypePing, 5)
	r := NewReader(&errReader{b: append(frame, frame[:3]...), err: boom}, 0, 0)
	if _, err := r.Next(); err != nil {
		t.Fatalf("got error %v, want nil", err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Errorf("got error %v, want %v", err, boom)
	}
}
