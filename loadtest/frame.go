package loadtest

import (
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// frame is the subset of a server frame the generator reads. Its byte
// slices point into the parsed message (valid until the connection's next
// read) or, for strings with escapes, into fresh memory.
type frame struct {
	typ, id, chat, kind, body, code []byte
	seq                             uint64
	retryAfter                      int64 // retry_after_ms
}

var (
	errFrameSyntax = errors.New("loadtest: malformed server frame")
	errFrameType   = errors.New("loadtest: server frame field of the wrong type")
)

// parseFrame decodes the top-level fields of one JSON object that the
// generator needs, without reflection or allocation on the common path
// (encoding/json was a fifth of the generator's CPU under load). Other
// fields, nested objects and arrays are skipped. Keys match exactly (the
// server writes them lowercase); a repeated key keeps its last value. It
// checks the syntax of what it reads, not of every skipped byte.
func parseFrame(b []byte, f *frame) error {
	*f = frame{}
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errFrameSyntax
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errFrameSyntax
		}
		key, j, err := readString(b, i)
		if err != nil {
			return err
		}
		i = skipWS(b, j)
		if i >= len(b) || b[i] != ':' {
			return errFrameSyntax
		}
		i = skipWS(b, i+1)
		if i >= len(b) {
			return errFrameSyntax
		}
		var dst *[]byte
		switch string(key) {
		case "type":
			dst = &f.typ
		case "id":
			dst = &f.id
		case "chat":
			dst = &f.chat
		case "kind":
			dst = &f.kind
		case "body":
			dst = &f.body
		case "code":
			dst = &f.code
		case "seq", "retry_after_ms":
			if b[i] == 'n' {
				if i, err = skipValue(b, i); err != nil {
					return err
				}
				break
			}
			n, j, neg, err := readInt(b, i)
			if err != nil {
				return err
			}
			if key[0] == 's' {
				if neg {
					return errFrameType
				}
				f.seq = n
			} else {
				f.retryAfter = int64(n)
				if neg {
					f.retryAfter = -f.retryAfter
				}
			}
			i = j
		default:
			if i, err = skipValue(b, i); err != nil {
				return err
			}
		}
		if dst != nil {
			switch b[i] {
			case '"':
				s, j, err := readString(b, i)
				if err != nil {
					return err
				}
				*dst, i = s, j
			case 'n':
				if i, err = skipValue(b, i); err != nil {
					return err
				}
			default:
				return errFrameType
			}
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return errFrameSyntax
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return nil
		default:
			return errFrameSyntax
		}
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// readString reads the string starting at b[i] == '"'. It returns the
// content (a sub-slice of b when it has no escapes) and the index after the
// closing quote.
func readString(b []byte, i int) ([]byte, int, error) {
	start := i + 1
	for j := start; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[start:j:j], j + 1, nil
		case c == '\\':
			return unescape(b, start)
		case c < 0x20:
			return nil, 0, errFrameSyntax
		}
	}
	return nil, 0, errFrameSyntax
}

// unescape decodes a string with escapes starting at b[start] (after the
// quote) into new memory, as encoding/json does (bad surrogates become
// U+FFFD).
func unescape(b []byte, start int) ([]byte, int, error) {
	out := make([]byte, 0, 32)
	for j := start; j < len(b); {
		c := b[j]
		switch {
		case c == '"':
			return out, j + 1, nil
		case c < 0x20:
			return nil, 0, errFrameSyntax
		case c != '\\':
			out = append(out, c)
			j++
			continue
		}
		if j+1 >= len(b) {
			return nil, 0, errFrameSyntax
		}
		switch e := b[j+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(b, j+2)
			if !ok {
				return nil, 0, errFrameSyntax
			}
			j += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(-1), false
				if j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
					r2, ok2 = hex4(b, j+2)
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					j += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return nil, 0, errFrameSyntax
		}
		j += 2
	}
	return nil, 0, errFrameSyntax
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// readInt reads an integer literal (no fraction or exponent: the fields
// read are integers) starting at b[i].
func readInt(b []byte, i int) (n uint64, next int, neg bool, err error) {
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n > (1<<63-1)/10 {
			return 0, 0, false, errFrameType
		}
		n = n*10 + uint64(b[i]-'0')
	}
	if i == start || (b[start] == '0' && i-start > 1) {
		return 0, 0, false, errFrameSyntax
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false, errFrameType
	}
	return n, i, neg, nil
}

// skipValue skips one JSON value starting at b[i] and returns the index
// after it. Nested values are skipped by bracket depth, strings honouring
// escapes.
func skipValue(b []byte, i int) (int, error) {
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			j := i + 1
			for ; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return 0, errFrameSyntax
			}
			i = j + 1
		case '{', '[':
			depth++
			i++
			continue
		case '}', ']':
			if depth == 0 {
				return 0, errFrameSyntax
			}
			depth--
			i++
		case 't', 'f', 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if i+len(lit) > len(b) || string(b[i:i+len(lit)]) != lit {
				return 0, errFrameSyntax
			}
			i += len(lit)
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return 0, errFrameSyntax
			}
			i++
			continue
		default:
			if c != '-' && (c < '0' || c > '9') {
				return 0, errFrameSyntax
			}
			for i < len(b) && (b[i] == '-' || b[i] == '+' || b[i] == '.' || b[i] == 'e' || b[i] == 'E' || (b[i] >= '0' && b[i] <= '9')) {
				i++
			}
		}
		if depth == 0 {
			return i, nil
		}
	}
	return 0, errFrameSyntax
}
