package proto

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Version is the client protocol version announced in the hello frame.
const Version = 1

// MinVersion is the oldest client protocol version this build still
// speaks (docs/protocol.md, "Compatibility"): a release that raises
// Version keeps the previous one for at least one release.
const MinVersion = 1

// SupportedVersion reports whether v, a client's ?protocol= value, names a
// version in MinVersion..Version.
func SupportedVersion(v string) bool {
	n, err := strconv.Atoi(v)
	return err == nil && n >= MinVersion && n <= Version
}

// Client frame types (client -> server).
const (
	TypeSend        = "send"         // post a message; answered by sent or error
	TypeAck         = "ack"          // device received everything up to seq in chat
	TypeRead        = "read"         // user read everything up to seq in chat
	TypeHistory     = "history"      // page through a chat's messages
	TypeChats       = "chats"        // list my chats
	TypeGroupCreate = "group_create" // create a group
	TypeGroupAdd    = "group_add"    // add a member
	TypeGroupRemove = "group_remove" // remove a member
	TypeGroupLeave  = "group_leave"  // leave a group
	TypeGroupRole   = "group_role"   // make a member admin, or an admin member
	TypeMembers     = "members"      // list a chat's members
	TypePresence    = "presence"     // ask for users' presence
	TypePing        = "ping"         // application-level heartbeat
	TypeSync        = "sync"         // start or resume delivery from the device's positions
	TypeSettings    = "settings"     // read or change my settings; answered by settings
)

// Server frame types (server -> client). history, chats, members and
// presence reuse the client type names for their answers.
const (
	TypeHello   = "hello"   // first frame of a session
	TypeSent    = "sent"    // a send is durable
	TypeMsg     = "msg"     // a message delivery
	TypeReceipt = "receipt" // a device of another member received up to seq
	TypeOK      = "ok"      // a request without its own answer type succeeded
	TypePong    = "pong"    // answer to ping
	TypeError   = "error"   // a request failed
	TypeSynced  = "synced"  // the catch-up started by sync is complete
	TypeGoaway  = "goaway"  // reconnect after retry_after_ms, to url if given
)

// Error codes carried by error frames.
const (
	CodeBadRequest   = "bad_request"    // malformed JSON, missing or invalid field
	CodeUnknownType  = "unknown_type"   // the frame type is not known
	CodeNotMember    = "not_member"     // the user is not a member of the chat
	CodeChatNotFound = "chat_not_found" // no such chat
	CodeGroupFull    = "group_full"     // the group has MaxGroupMembers members
	CodeTooLarge     = "too_large"      // a field exceeds its limit (body, name, members)
	CodeForbidden    = "forbidden"      // the operation is not allowed for this user
	CodeRateLimited  = "rate_limited"   // too many requests; retry after retry_after_ms
	CodeIDReused     = "id_reused"      // the request id names another message of this device; never retried
	CodeOverloaded   = "overloaded"     // the server is shedding load; retry with backoff
	CodeUnavailable  = "unavailable"    // the store or the logic tier is unreachable; retry
	CodeInternal     = "internal"       // unexpected server error; retry with backoff
)

// Retryable reports whether a client should retry a request that failed with
// code (with the same request id).
func Retryable(code string) bool {
	switch code {
	case CodeRateLimited, CodeOverloaded, CodeUnavailable, CodeInternal:
		return true
	}
	return false
}

// WebSocket close codes used by Parley (RFC 6455 range and 4000-4999 for
// application codes). Clients reconnect after any code except 1008, 4001 and
// 4005, which need user action (a new token) or mean a policy refusal.
const (
	CloseNormal         = 1000 // client asked to close
	CloseGoingAway      = 1001 // server shutting down or draining: reconnect elsewhere
	CloseProtocolError  = 1002 // WebSocket protocol violation (e.g. unmasked frame)
	CloseUnsupported    = 1003 // binary frames are not accepted
	CloseInvalidPayload = 1007 // text frame is not valid UTF-8
	ClosePolicy         = 1008 // policy violation
	CloseTooBig         = 1009 // frame or message larger than the configured limit
	CloseInternal       = 1011 // unexpected server error
	CloseServiceRestart = 1012 // the logic tier link was lost: reconnect with backoff
	CloseIdle           = 4000 // no frame or pong within the idle timeout
	CloseTokenExpired   = 4001 // the token expired; reconnect with a fresh token
	CloseSlowConsumer   = 4002 // the client did not read fast enough
	CloseOverloaded     = 4003 // server overloaded; reconnect with backoff
	CloseReplaced       = 4004 // too many connections for this user
	CloseAuthFailed     = 4005 // the session's credentials were refused
)

// Inbound is a decoded client frame. Which fields are set depends on Type.
type Inbound struct {
	Type    string   `json:"type"`
	ID      string   `json:"id,omitempty"`      // request id; required for requests that get an answer
	Chat    string   `json:"chat,omitempty"`    // chat id
	To      string   `json:"to,omitempty"`      // send: recipient user id for a 1-on-1 chat (instead of chat)
	Body    *string  `json:"body,omitempty"`    // send: message text
	Seq     uint64   `json:"seq,omitempty"`     // ack, read
	Before  uint64   `json:"before,omitempty"`  // history: messages with seq < before
	After   *uint64  `json:"after,omitempty"`   // history: messages with seq > after, oldest first (0: from the start)
	Limit   int      `json:"limit,omitempty"`   // history: page size, 1..200 (default 50)
	Name    string   `json:"name,omitempty"`    // group_create
	Members []string `json:"members,omitempty"` // group_create: initial members besides the creator
	User    string   `json:"user,omitempty"`    // group_add, group_remove, group_role
	Role    string   `json:"role,omitempty"`    // group_role: "admin" or "member"
	Users   []string `json:"users,omitempty"`   // presence
	// HideLastSeen is settings' change of the hide-last-seen setting;
	// absent leaves it as it is.
	HideLastSeen *bool `json:"hide_last_seen,omitempty"`
	// Chats is sync's resume state: the highest seq the device already has
	// (contiguously) per chat id.
	Chats map[string]uint64 `json:"chats,omitempty"`
}

// Error is a client-visible error: it becomes an error frame.
type Error struct {
	Code         string
	Message      string
	RetryAfterMS int64
	// NullID makes the error frame carry "id":null instead of the request
	// id: Decode sets it when the frame's id was present but invalid, so
	// that an invalid id is never echoed back.
	NullID bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrEmpty is returned by Decode for an empty frame.
var ErrEmpty = errors.New("proto: empty frame")

// Decode parses one client frame. It never panics; every failure is an
// *Error with CodeBadRequest or CodeUnknownType. The rules are those of
// docs/protocol.md ("Client → server frames"): one JSON object, keys
// spelled exactly as in Inbound's json tags (a key that differs only in
// case is an unknown key), no key twice, and an id, when present, of 1 to
// record.MaxIDLen bytes of [A-Za-z0-9-_.@] (record.ValidID) whatever the
// frame type. On failure the returned Inbound carries the frame's id when
// it is valid, so the error frame can name the request; when the id is
// present but invalid, the id is empty and the *Error has NullID set.
//
// The common frames take a fast path (decodeFast) that accepts only input
// the fallback (decodeJSON) decodes to the same frame; FuzzDecodeAgree
// checks that the two agree.
func Decode(b []byte) (Inbound, error) {
	if in, ok := decodeFast(b); ok {
		return finish(in)
	}
	return decodeJSON(b)
}

// finish checks the type of a decoded frame.
func finish(in Inbound) (Inbound, error) {
	switch in.Type {
	case TypeSend, TypeAck, TypeRead, TypeHistory, TypeChats, TypeGroupCreate, TypeGroupAdd,
		TypeGroupRemove, TypeGroupLeave, TypeGroupRole, TypeMembers, TypePresence, TypePing, TypeSync, TypeSettings:
	case "":
		return in, Errorf(CodeBadRequest, "missing type")
	default:
		return in, Errorf(CodeUnknownType, "unknown frame type %q", trunc(in.Type, 32))
	}
	return in, nil
}

// jsonSpace reports whether b holds only JSON whitespace.
func jsonSpace(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// AppendString appends s as a JSON string literal. Invalid UTF-8 is
// replaced with U+FFFD, so the output is always valid JSON.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendField(dst []byte, name string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}

func appendStrField(dst []byte, name, v string) []byte {
	return AppendString(appendField(dst, name), v)
}

func appendUintField(dst []byte, name string, v uint64) []byte {
	return strconv.AppendUint(appendField(dst, name), v, 10)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	return strconv.AppendInt(appendField(dst, name), v, 10)
}

func appendType(dst []byte, t string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, t...)
	return append(dst, '"')
}
