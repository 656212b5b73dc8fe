package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/internal/record"
)

// Bits of the keys of a client frame, for duplicate detection.
const (
	keyType uint32 = 1 << iota
	keyID
	keyChat
	keyTo
	keyBody
	keySeq
	keyBefore
	keyAfter
	keyLimit
	keyName
	keyMembers
	keyUser
	keyRole
	keyUsers
	keyChats
	keyHideLastSeen
)

// keyBit returns the bit of the client-frame key k, spelled exactly as in
// Inbound's json tags, or 0 for any other key (including one that differs
// only in case).
func keyBit(k string) uint32 {
	switch k {
	case "type":
		return keyType
	case "id":
		return keyID
	case "chat":
		return keyChat
	case "to":
		return keyTo
	case "body":
		return keyBody
	case "seq":
		return keySeq
	case "before":
		return keyBefore
	case "after":
		return keyAfter
	case "limit":
		return keyLimit
	case "name":
		return keyName
	case "members":
		return keyMembers
	case "user":
		return keyUser
	case "role":
		return keyRole
	case "users":
		return keyUsers
	case "chats":
		return keyChats
	case "hide_last_seen":
		return keyHideLastSeen
	}
	return 0
}

// decodeJSON is Decode's fallback, which decides every frame the fast path
// leaves to it. encoding/json matches keys case-insensitively and lets the
// last of a repeated key win, so scanKeys first walks the object's keys
// exactly, and encoding/json then decodes the values (into the right
// fields, since the frame is refused unless every key is exact and
// unique). A frame that is not JSON is refused without an id; any other
// refusal carries the frame's id when it is valid, and sets NullID when
// the id is present but invalid (not a string, empty, too long, outside
// the alphabet, or repeated), so that the error frame never echoes it.
// decodeReference (in the tests) is the slow, obviously strict version
// that FuzzDecodeAgree compares it with.
func decodeJSON(b []byte) (Inbound, error) {
	var in Inbound
	if jsonSpace(b) {
		return in, Errorf(CodeBadRequest, "empty frame")
	}
	ks, ok := scanKeys(b)
	if !ok {
		if err := json.Unmarshal(b, new(json.RawMessage)); err != nil {
			return in, invalidJSON(err)
		}
		return in, Errorf(CodeBadRequest, "a frame must be a JSON object")
	}
	refused := ks.refused
	if err := json.Unmarshal(b[:ks.end], &in); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return Inbound{}, invalidJSON(err)
		}
		if refused == nil {
			refused = typeError(te)
		}
	}
	if refused == nil && !jsonSpace(b[ks.end:]) {
		refused = Errorf(CodeBadRequest, "trailing data after the JSON object")
	}
	if refused == nil && ks.chatKeys > len(in.Chats) {
		refused = Errorf(CodeBadRequest, "duplicate chat id in chats")
	}
	// The id is read from its own raw value: encoding/json may have filled
	// in.ID from "ID" or from the last of two ids.
	id, badID := parseID(ks.id)
	in.ID = id
	if badID || ks.dupID {
		in.ID = ""
		if refused == nil {
			refused = Errorf(CodeBadRequest, "id must be 1-%d bytes of [A-Za-z0-9-_.@]", record.MaxIDLen)
		}
		refused.NullID = true
	}
	if refused != nil {
		return in, refused
	}
	return finish(in)
}

// parseID returns the id whose raw JSON value is raw (nil when the key is
// absent), and whether it is present but invalid. null counts as absent,
// as for every field.
func parseID(raw []byte) (id string, bad bool) {
	switch {
	case raw == nil || string(raw) == "null":
		return "", false
	case len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0:
		id = string(raw[1 : len(raw)-1])
	default: // escapes, or not a string
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", true
		}
		id = s
	}
	if !record.ValidID(id) {
		return "", true
	}
	return id, false
}

// keyScan is what scanKeys learns about a frame's object.
type keyScan struct {
	end      int    // index after the object's closing brace
	seen     uint32 // the known keys present
	refused  *Error // the first unknown or repeated key
	id       []byte // the raw value of the first id; nil when absent
	dupID    bool   // id appears more than once
	chatKeys int    // members in the object value of the first chats
}

// scanKeys walks the JSON object at the start of b (after whitespace) and
// checks its keys: each must be a known key spelled exactly (compared
// after unescaping) and appear once. It checks only the structure it needs
// to find the members: ok is false for input it cannot walk, which is not
// a JSON object; input it walks may still be invalid JSON, which
// encoding/json then refuses.
func scanKeys(b []byte) (ks keyScan, ok bool) {
	i := skipSpace(b, 0)
	ks.end, ok = walkObject(b, i, func(key, val []byte) bool {
		var bit uint32
		if bytes.IndexByte(key, '\\') < 0 {
			bit = keyBit(string(key[1 : len(key)-1])) // no allocation
		} else if k, ok := unquoteKey(key); ok {
			bit = keyBit(k)
		} else {
			return false
		}
		switch {
		case bit == 0:
			if ks.refused == nil {
				k, _ := unquoteKey(key)
				ks.refused = Errorf(CodeBadRequest, "unknown field %q", trunc(k, 32))
			}
		case ks.seen&bit != 0:
			if ks.refused == nil {
				k, _ := unquoteKey(key)
				ks.refused = Errorf(CodeBadRequest, "duplicate field %q", k)
			}
			ks.dupID = ks.dupID || bit == keyID
		case bit == keyID:
			ks.id = val
		case bit == keyChats && len(val) > 0 && val[0] == '{':
			if _, ok := walkObject(val, 0, func(_, _ []byte) bool { ks.chatKeys++; return true }); !ok {
				return false
			}
		}
		ks.seen |= bit
		return true
	})
	return ks, ok
}

// unquoteKey returns the string value of the quoted JSON string key.
func unquoteKey(key []byte) (string, bool) {
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key[1 : len(key)-1]), true
	}
	var s string
	return s, json.Unmarshal(key, &s) == nil
}

// walkObject walks the JSON object at b[i], calls visit with the raw key
// (quotes included) and the raw value of each member, and returns the
// index after the closing brace. ok is false when b[i:] does not start
// with something shaped like an object or visit returns false. Values are
// skipped, not checked.
func walkObject(b []byte, i int, visit func(key, val []byte) bool) (end int, ok bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		j, ok := skipJSONString(b, i)
		if !ok {
			return 0, false
		}
		key := b[i:j]
		i = skipSpace(b, j)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		j, ok = skipValue(b, i)
		if !ok || !visit(key, b[i:j]) {
			return 0, false
		}
		i = skipSpace(b, j)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}

// skipJSONString returns the index after the JSON string at b[i].
func skipJSONString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index after the JSON value at b[i]: a string, an
// object or array (brackets counted, strings skipped), or a run of other
// bytes up to a delimiter.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipJSONString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, ok := skipJSONString(b, i)
				if !ok {
					return 0, false
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	}
	j := i
	for j < len(b) {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, j > i
		}
		j++
	}
	return j, j > i
}

// typeError words a value of the wrong JSON type in the protocol's terms
// (encoding/json's message names Go types and struct fields).
func typeError(te *json.UnmarshalTypeError) *Error {
	field := "a field"
	name, _, _ := strings.Cut(te.Field, ".") // chats.<chat id>: a chats value
	if name != "" {
		field = strconv.Quote(name)
	}
	switch name {
	case "members", "users":
		return Errorf(CodeBadRequest, "%s must be an array of strings", field)
	case "chats":
		return Errorf(CodeBadRequest, "%s must be an object of chat ids to non-negative integers", field)
	}
	want := "of another type"
	t := te.Type
	if t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil {
		switch t.Kind() {
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "a non-negative integer"
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			want = "an integer in range"
		case reflect.String:
			want = "a string"
		case reflect.Slice:
			want = "an array of strings"
		case reflect.Map:
			want = "an object"
		}
	}
	return Errorf(CodeBadRequest, "%s must be %s, not %s", field, want, trunc(te.Value, 40))
}

// invalidJSON is the refusal of a frame that is not JSON.
func invalidJSON(err error) *Error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return Errorf(CodeBadRequest, "invalid JSON: unexpected end of frame")
	}
	return Errorf(CodeBadRequest, "invalid JSON: %s", trimErr(err))
}

// trunc returns s cut to at most n bytes, for error messages.
func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
