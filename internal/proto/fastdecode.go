package proto

import (
	"unicode/utf8"

	"github.com/parley-chat/parley/internal/record"
)

// decodeFast parses the common shape of the hot client frames (send, ack,
// read) without encoding/json: one flat object whose members are type, id,
// chat, to and body as plain strings (no escapes, no control characters,
// valid UTF-8) and seq as a plain unsigned integer, each at most once,
// keys spelled exactly so, and the id valid (record.ValidID). ok is false
// for anything else (other keys, escapes, null, floats, duplicates, an
// invalid id, malformed input), and Decode then runs decodeJSON, which
// decides. When ok is true the result is what decodeJSON would have
// produced (FuzzDecodeAgree checks this; FuzzDecodeFast checks it against
// plain encoding/json).
func decodeFast(b []byte) (in Inbound, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return in, false
	}
	i = skipSpace(b, i+1)
	var seen uint8
	if i < len(b) && b[i] == '}' {
		return in, false // {} is a missing type: leave the message to Decode
	}
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return in, false
		}
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return in, false
		}
		i = skipSpace(b, i+1)
		var bit uint8
		var dst *string
		switch string(key) {
		case "type":
			bit, dst = 1, &in.Type
		case "id":
			bit, dst = 2, &in.ID
		case "chat":
			bit, dst = 4, &in.Chat
		case "to":
			bit, dst = 8, &in.To
		case "body":
			bit = 16
		case "seq":
			bit = 32
		default:
			return in, false
		}
		if seen&bit != 0 {
			return in, false
		}
		seen |= bit
		if bit == 32 {
			n, j, ok := plainUint(b, i)
			if !ok {
				return in, false
			}
			in.Seq, i = n, j
		} else {
			v, j, ok := plainString(b, i)
			if !ok {
				return in, false
			}
			switch {
			case bit == 1 && string(v) == TypeSend: // the hot types, without an allocation
				in.Type = TypeSend
			case bit == 1 && string(v) == TypeAck:
				in.Type = TypeAck
			case dst != nil:
				*dst = string(v)
				if bit == 2 && !record.ValidID(in.ID) {
					return in, false // decodeJSON refuses it
				}
			default:
				body := string(v) // its own variable: only the body needs a heap cell
				in.Body = &body
			}
			i = j
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return in, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return in, jsonSpace(b[i+1:])
		default:
			return in, false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainString returns the contents of the JSON string at b[i] when it has
// no escapes and no control characters and is valid UTF-8, and the index
// after its closing quote.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			v := b[start:j]
			if !ascii && !utf8.Valid(v) {
				return nil, 0, false
			}
			return v, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			ascii = false
		}
	}
	return nil, 0, false
}

// plainUint parses the JSON number at b[i] when it is a non-negative
// integer without leading zeros, fraction or exponent that fits uint64.
func plainUint(b []byte, i int) (uint64, int, bool) {
	j := i
	var n uint64
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		d := uint64(b[j] - '0')
		if n > (1<<64-1-d)/10 {
			return 0, 0, false
		}
		n = n*10 + d
		j++
	}
	switch {
	case j == i, j-i > 1 && b[i] == '0':
		return 0, 0, false
	case j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E'):
		return 0, 0, false
	}
	return n, j, true
}
