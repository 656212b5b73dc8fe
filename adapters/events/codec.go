package events

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/internal/record"
)

// The record value is the JSON of record.PushEvent with its field tags:
//
//	{"recipient":"u1","chat":"c1","seq":42,"sender":"u2","preview":"hi","ts":1700000000000}
//
// Decoders ignore unknown fields (a newer producer may add some) and
// require a recipient, a chat and a seq: an event without them cannot be
// delivered and goes to the dead-letter topic.

// maxValueLen bounds a record value we decode: an event is a few hundred
// bytes (the preview is at most 100 bytes of text).
const maxValueLen = 64 << 10

// errInvalid marks a value that is not a usable push event.
var errInvalid = errors.New("events: invalid push event")

// encode returns the record value of ev.
func encode(ev record.PushEvent) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("cannot encode push event: %w", err)
	}
	return b, nil
}

// decode parses a record value.
func decode(b []byte) (record.PushEvent, error) {
	var ev record.PushEvent
	if len(b) > maxValueLen {
		return ev, fmt.Errorf("%w: value is %d bytes, limit %d", errInvalid, len(b), maxValueLen)
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		return record.PushEvent{}, fmt.Errorf("%w: %v", errInvalid, err)
	}
	switch {
	case ev.Recipient == "":
		return record.PushEvent{}, fmt.Errorf("%w: no recipient", errInvalid)
	case ev.ChatID == "":
		return record.PushEvent{}, fmt.Errorf("%w: no chat", errInvalid)
	case ev.Seq == 0:
		return record.PushEvent{}, fmt.Errorf("%w: no seq", errInvalid)
	}
	return ev, nil
}
