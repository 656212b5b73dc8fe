package tierlink

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzMaxFrame keeps the Reader's buffer small while fuzzing.
const fuzzMaxFrame = 1 << 16

// parseAll parses b frame by frame, as a Reader over b must.
func parseAll(b []byte, maxFrame int) (frames []Frame, rest int, err error) {
	for {
		f, n, err := Parse(b, maxFrame)
		if err != nil || n == 0 {
			return frames, len(b), err
		}
		frames = append(frames, f)
		b = b[n:]
	}
}

// twoChunks returns a then b, one Read each.
type twoChunks struct{ chunks [][]byte }

func (r *twoChunks) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

func FuzzParse(f *testing.F) {
	var all []byte
	for _, tc := range frameCases() {
		f.Add(tc.enc, uint16(len(tc.enc)/2))
		all = append(all, tc.enc...)
	}
	f.Add(all, uint16(len(all)/3))
	f.Add(header(8, TypeData, 1), uint16(2))
	f.Add(header(MaxFrame+1, TypeData, 1), uint16(5))
	f.Add(header(9, 0x7f, 1), uint16(0))
	f.Add(AppendFrame(nil, TypeData, 1, []byte("abc"))[:10], uint16(4))
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		f, n, err := Parse(b, fuzzMaxFrame)
		switch {
		case err != nil:
			if n != 0 {
				t.Fatalf("got n %d with error %v, want 0", n, err)
			}
		case n == 0:
			if len(b) >= 4 && len(b) >= 4+int(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])) {
				t.Fatalf("got n 0 for a complete frame of %d bytes", len(b))
			}
		default:
			if n > len(b) || n < HeaderSize {
				t.Fatalf("got n %d for %d bytes", n, len(b))
			}
			if re := AppendFrame(nil, f.Type, f.Session, f.Payload); !bytes.Equal(re, b[:n]) {
				t.Fatalf("got re-encoded %x, want %x", re, b[:n])
			}
		}

		// A Reader over the input split in two must see the same frames.
		want, rest, wantErr := parseAll(b, fuzzMaxFrame)
		s := int(split) % (len(b) + 1)
		in := bytes.Clone(b)
		r := NewReader(&twoChunks{chunks: [][]byte{in[:s], in[s:]}}, 0, fuzzMaxFrame)
		for i, w := range want {
			got, err := r.Next()
			if err != nil {
				t.Fatalf("frame %d: got error %v, want nil", i, err)
			}
			if got.Type != w.Type || got.Session != w.Session || !bytes.Equal(got.Payload, w.Payload) {
				t.Fatalf("frame %d: got %v/%d/%x, want %v/%d/%x", i, got.Type, got.Session, got.Payload, w.Type, w.Session, w.Payload)
			}
		}
		_, err = r.Next()
		switch {
		case wantErr != nil:
			for _, sentinel := range []error{ErrShortFrame, ErrTooLarge, ErrUnknown} {
				if errors.Is(wantErr, sentinel) && !errors.Is(err, sentinel) {
					t.Fatalf("got error %v at the end, want %v", err, wantErr)
				}
			}
		case rest > 0:
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("got error %v with %d bytes left, want %v", err, rest, io.ErrUnexpectedEOF)
			}
		default:
			if err != io.EOF {
				t.Fatalf("got error %v at a frame boundary, want %v", err, io.EOF)
			}
		}
	})
}

// Payload kinds for FuzzPayloads.
const (
	fuzzHello = iota
	fuzzHelloAck
	fuzzOpen
	fuzzClose
	fuzzKick
	fuzzPing
	fuzzMulti
	fuzzKinds
)

// payloadOf strips the header from a frame built by an Append function.
func payloadOf(frame []byte) []byte { return frame[HeaderSize:] }

func FuzzPayloads(f *testing.F) {
	for _, tc := range frameCases() {
		for k := range fuzzKinds {
			f.Add(uint8(k), tc.payload)
		}
	}
	f.Add(uint8(fuzzMulti), []byte{0xff, 0xff, 1, 2, 3})
	f.Add(uint8(fuzzOpen), []byte{1, 'a', 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, kind uint8, p []byte) {
		// Every decoder must cope with every input; only the round trip
		// check depends on kind.
		h, errHello := ParseHello(p)
		ha, errHelloAck := ParseHelloAck(p)
		o, errOpen := ParseOpen(p)
		code, errClose := ParseClose(p)
		kcode, reason, errKick := ParseKick(p)
		nonce, errPing := ParsePing(p)
		m, errMulti := ParseMulti(p)

		var re []byte
		var err error
		switch kind % fuzzKinds {
		case fuzzHello:
			err = errHello
			if errors.Is(err, ErrLegacyHello) {
				return
			}
			re = payloadOf(AppendHello(nil, TypeHello, h))
		case fuzzHelloAck:
			err = errHelloAck
			re = payloadOf(AppendHelloAck(nil, ha))
		case fuzzOpen:
			err = errOpen
			re = payloadOf(AppendOpen(nil, 1, o))
		case fuzzClose:
			err = errClose
			re = payloadOf(AppendClose(nil, 1, code))
		case fuzzKick:
			err = errKick
			re = payloadOf(AppendKick(nil, 1, kcode, string(reason)))
		case fuzzPing:
			err = errPing
			re = payloadOf(AppendPing(nil, TypePing, nonce))
		case fuzzMulti:
			err = errMulti
			if err == nil {
				if m.Count < 1 || m.Count > MaxMultiSessions {
					t.Fatalf("got count %d", m.Count)
				}
				sessions := make([]uint64, m.Count)
				for i := range sessions {
					sessions[i] = m.Session(i)
				}
				re = payloadOf(AppendMulti(nil, sessions, m.Data))
			}
		}
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("got error %v, want %v", err, ErrBadPayload)
			}
			return
		}
		if !bytes.Equal(re, p) {
			t.Fatalf("kind %d: got re-encoded %x, want %x", kind%fuzzKinds, re, p)
		}
	})
}
