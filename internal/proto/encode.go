package proto

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/parley-chat/parley/internal/record"
)

// AppendSent appends a sent frame: the message with the client's request id
// is durable at (chat, seq) with server timestamp ts (Unix ms).
func AppendSent(dst []byte, requestID, chat string, seq uint64, ts int64) []byte {
	dst = appendType(dst, TypeSent)
	dst = appendStrField(dst, "id", requestID)
	dst = appendStrField(dst, "chat", chat)
	dst = appendUintField(dst, "seq", seq)
	dst = appendIntField(dst, "ts", ts)
	return append(dst, '}')
}

// AppendMsg appends a msg frame delivering m.
func AppendMsg(dst []byte, m *record.Message) []byte {
	dst = appendType(dst, TypeMsg)
	return appendMsgFields(dst, m)
}

func appendMsgFields(dst []byte, m *record.Message) []byte {
	dst = appendStrField(dst, "chat", m.ChatID)
	dst = appendUintField(dst, "seq", m.Seq)
	dst = appendStrField(dst, "from", m.Sender)
	dst = appendStrField(dst, "device", m.Device)
	if m.RequestID != "" {
		dst = appendStrField(dst, "id", m.RequestID)
	}
	dst = appendIntField(dst, "ts", m.TS)
	dst = appendStrField(dst, "kind", m.Kind.String())
	dst = appendStrField(dst, "body", m.Body)
	return append(dst, '}')
}

// AppendMessageObject appends m as a JSON object without a type (as used in
// history pages).
func AppendMessageObject(dst []byte, m *record.Message) []byte {
	start := len(dst)
	dst = appendMsgFields(dst, m) // starts with ',"chat":'
	dst[start] = '{'
	return dst
}

// AppendReceipt appends a receipt frame: device of user has received every
// message of chat up to and including seq.
func AppendReceipt(dst []byte, chat, user, device string, seq uint64) []byte {
	dst = appendType(dst, TypeReceipt)
	dst = appendStrField(dst, "chat", chat)
	dst = appendStrField(dst, "user", user)
	dst = appendStrField(dst, "device", device)
	dst = appendUintField(dst, "seq", seq)
	dst = appendStrField(dst, "status", "delivered")
	return append(dst, '}')
}

// AppendError appends an error frame. requestID may be empty (no id
// field); when e.NullID is set the frame carries "id":null whatever
// requestID is.
func AppendError(dst []byte, requestID string, e *Error) []byte {
	dst = appendType(dst, TypeError)
	switch {
	case e.NullID:
		dst = append(dst, `,"id":null`...)
	case requestID != "":
		dst = appendStrField(dst, "id", requestID)
	}
	dst = appendStrField(dst, "code", e.Code)
	dst = appendStrField(dst, "message", e.Message)
	dst = append(dst, `,"retryable":`...)
	dst = strconv.AppendBool(dst, Retryable(e.Code))
	if e.RetryAfterMS > 0 {
		dst = appendIntField(dst, "retry_after_ms", e.RetryAfterMS)
	}
	return append(dst, '}')
}

// AppendHello appends the hello frame that opens every session.
func AppendHello(dst []byte, user, device string, session uint64, heartbeatMS int64) []byte {
	dst = appendType(dst, TypeHello)
	dst = appendIntField(dst, "protocol", Version)
	dst = appendStrField(dst, "user", user)
	dst = appendStrField(dst, "device", device)
	dst = appendStrField(dst, "session", strconv.FormatUint(session, 16))
	dst = appendIntField(dst, "heartbeat_ms", heartbeatMS)
	return append(dst, '}')
}

// AppendOK appends an ok frame for a request; chat and seq are omitted when
// empty or zero.
func AppendOK(dst []byte, requestID, chat string, seq uint64) []byte {
	dst = appendType(dst, TypeOK)
	dst = appendStrField(dst, "id", requestID)
	if chat != "" {
		dst = appendStrField(dst, "chat", chat)
	}
	if seq != 0 {
		dst = appendUintField(dst, "seq", seq)
	}
	return append(dst, '}')
}

// AppendPong appends a pong frame.
func AppendPong(dst []byte, requestID string, ts int64) []byte {
	dst = appendType(dst, TypePong)
	if requestID != "" {
		dst = appendStrField(dst, "id", requestID)
	}
	dst = appendIntField(dst, "ts", ts)
	return append(dst, '}')
}

// AppendHistory appends a history answer.
func AppendHistory(dst []byte, requestID, chat string, msgs []record.Message, more bool) []byte {
	dst = appendType(dst, TypeHistory)
	dst = appendStrField(dst, "id", requestID)
	dst = appendStrField(dst, "chat", chat)
	dst = append(dst, `,"messages":[`...)
	for i := range msgs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendMessageObject(dst, &msgs[i])
	}
	dst = append(dst, `],"more":`...)
	dst = strconv.AppendBool(dst, more)
	return append(dst, '}')
}

// ChatInfo is one entry of a chats answer.
type ChatInfo struct {
	Chat    string   `json:"chat"`
	Kind    string   `json:"kind"`
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members,omitempty"` // direct chats: both users
	LastSeq uint64   `json:"last_seq"`
	ReadSeq uint64   `json:"read_seq"`
	Unread  uint64   `json:"unread"`
}

// PresenceInfo is one user's presence.
type PresenceInfo struct {
	User     string `json:"user"`
	Online   bool   `json:"online"`
	LastSeen int64  `json:"last_seen,omitempty"` // Unix ms; 0 when unknown or online
}

// Marshal encodes one of the less frequent answers (chats, members,
// presence) with encoding/json. v must marshal to an object (a nil pointer,
// a slice or a scalar is an error); Marshal adds "type" (and "id" when
// non-empty) in front of v's own fields.
func Marshal(typ, requestID string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot marshal %s answer: %w", typ, err)
	}
	if len(body) < 2 || body[0] != '{' {
		return nil, fmt.Errorf("cannot marshal %s answer: %T does not encode to a JSON object", typ, v)
	}
	out := append(make([]byte, 0, len(body)+64), `{"type":`...)
	out = AppendString(out, typ)
	if requestID != "" {
		out = appendStrField(out, "id", requestID)
	}
	if len(body) > 2 { // more than "{}"
		out = append(out, ',')
		out = append(out, body[1:]...)
	} else {
		out = append(out, '}')
	}
	return out, nil
}

// ChatsAnswer is the body of a chats answer.
type ChatsAnswer struct {
	Chats []ChatInfo `json:"chats"`
}

// SettingsAnswer is the body of a settings answer: the user's settings
// after the request.
type SettingsAnswer struct {
	HideLastSeen bool `json:"hide_last_seen"`
}

// MembersAnswer is the body of a members answer. Admins and Creator are
// set for groups only.
type MembersAnswer struct {
	Chat    string   `json:"chat"`
	Members []string `json:"members"`
	Admins  []string `json:"admins,omitempty"`  // members with the admin or creator role, sorted
	Creator string   `json:"creator,omitempty"` // the creator, while a member
}

// PresenceAnswer is the body of a presence answer or push.
type PresenceAnswer struct {
	Users []PresenceInfo `json:"users"`
}

// AppendSynced appends the synced frame that ends the catch-up started by
// the sync request requestID.
func AppendSynced(dst []byte, requestID string) []byte {
	dst = appendType(dst, TypeSynced)
	if requestID != "" {
		dst = appendStrField(dst, "id", requestID)
	}
	return append(dst, '}')
}

// AppendGoaway appends a goaway frame: reconnect after retryAfterMS, to url
// when it is not empty.
func AppendGoaway(dst []byte, retryAfterMS int64, url string) []byte {
	dst = appendType(dst, TypeGoaway)
	dst = appendIntField(dst, "retry_after_ms", retryAfterMS)
	if url != "" {
		dst = appendStrField(dst, "url", url)
	}
	return append(dst, '}')
}
