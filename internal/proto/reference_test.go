package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/parley-chat/parley/internal/record"
)

// decodeReference is the slow, obviously strict decoder that decodeJSON
// must agree with (FuzzDecodeAgree): it walks the object token by token
// with encoding/json, finds each key's field by an exact match on Inbound's
// json tags (by reflection, independent of keyBit), decodes each value on
// its own, and refuses unknown and repeated keys, repeated chat ids in
// chats and invalid ids. Its messages differ from decodeJSON's; its codes,
// ids and NullID must not.
func decodeReference(b []byte) (Inbound, error) {
	var in Inbound
	if jsonSpace(b) {
		return in, Errorf(CodeBadRequest, "empty frame")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil {
		return in, invalidJSON(err)
	} else if tok != json.Delim('{') {
		return in, Errorf(CodeBadRequest, "a frame must be a JSON object")
	}
	var (
		seen    = map[string]bool{}
		id      *string // nil when absent or null
		badID   bool
		refused *Error
	)
	refuse := func(e *Error) {
		if refused == nil {
			refused = e
		}
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Inbound{}, invalidJSON(err)
		}
		key := tok.(string)
		dst := refField(&in, key)
		var raw json.RawMessage
		chats := false
		switch {
		case dst == nil:
			refuse(Errorf(CodeBadRequest, "unknown field %q", key))
			dst = &raw
		case seen[key]:
			refuse(Errorf(CodeBadRequest, "duplicate field %q", key))
			badID = badID || key == "id"
			dst = &raw
		case key == "id":
			dst = &id
		case key == "chats":
			dst, chats = &raw, true
		}
		seen[key] = true
		if err := dec.Decode(dst); err != nil {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) {
				return Inbound{}, invalidJSON(err)
			}
			refuse(Errorf(CodeBadRequest, "invalid %s: %s", key, trimErr(err)))
			badID = badID || key == "id"
			continue
		}
		if chats {
			if e := refChats(raw, &in.Chats); e != nil {
				refuse(e)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return Inbound{}, invalidJSON(err)
	}
	if !jsonSpace(b[dec.InputOffset():]) {
		refuse(Errorf(CodeBadRequest, "trailing data"))
	}
	badID = badID || id != nil && !record.ValidID(*id)
	if id != nil && !badID {
		in.ID = *id
	}
	if badID {
		refuse(Errorf(CodeBadRequest, "invalid id"))
		refused.NullID = true
	}
	if refused != nil {
		return in, refused
	}
	return finish(in)
}

// refField returns a pointer to the field of in whose json tag is exactly
// k, or nil.
func refField(in *Inbound, k string) any {
	v := reflect.ValueOf(in).Elem()
	for i := range v.NumField() {
		if name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); name == k {
			return v.Field(i).Addr().Interface()
		}
	}
	return nil
}

// refChats decodes chats, refusing a repeated chat id.
func refChats(raw json.RawMessage, m *map[string]uint64) *Error {
	if err := json.Unmarshal(raw, m); err != nil {
		return Errorf(CodeBadRequest, "invalid chats: %s", trimErr(err))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	keys := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return Errorf(CodeBadRequest, "invalid chats: %s", trimErr(err))
		}
		if k := tok.(string); keys[k] {
			return Errorf(CodeBadRequest, "duplicate chat %q", k)
		} else {
			keys[k] = true
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return Errorf(CodeBadRequest, "invalid chats: %s", trimErr(err))
		}
	}
	return nil
}
