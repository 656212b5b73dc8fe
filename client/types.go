package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/wsclient"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrClosed: the client was closed, or stopped for good because the
	// server refused the session (the error then also wraps a *CloseError
	// or *HandshakeError saying why).
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected: the connection dropped before the answer to a
	// request arrived. Retryable; a send may or may not have been stored
	// (retry with the same request id to find out).
	ErrDisconnected = errors.New("client: disconnected before the answer")
	// ErrTimeout: one attempt of a request got no answer within
	// Config.RequestTimeout. Retryable.
	ErrTimeout = errors.New("client: request timed out")
	// ErrProtocol: the server answered with a frame the client cannot use.
	// It is the WebSocket layer's sentinel too (a broken frame stream).
	ErrProtocol = wsclient.ErrProtocol
)

// Error codes the server sends in error frames (see internal/proto).
const (
	CodeBadRequest   = proto.CodeBadRequest
	CodeUnknownType  = proto.CodeUnknownType
	CodeNotMember    = proto.CodeNotMember
	CodeChatNotFound = proto.CodeChatNotFound
	CodeGroupFull    = proto.CodeGroupFull
	CodeTooLarge     = proto.CodeTooLarge
	CodeForbidden    = proto.CodeForbidden
	CodeRateLimited  = proto.CodeRateLimited
	CodeIDReused     = proto.CodeIDReused
	CodeOverloaded   = proto.CodeOverloaded
	CodeUnavailable  = proto.CodeUnavailable
	CodeInternal     = proto.CodeInternal
)

// Error is an error frame from the server. Use errors.As to get it.
type Error struct {
	Code       string        // one of the Code* constants
	Message    string        // human-readable detail
	Retryable  bool          // retrying the request (same id) may succeed
	RetryAfter time.Duration // server's hint for the next attempt; 0 if none
}

func (e *Error) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("parley: %s: %s (retry after %v)", e.Code, e.Message, e.RetryAfter)
	}
	return "parley: " + e.Code + ": " + e.Message
}

// CloseError is a WebSocket close frame received from the server: Code
// is, e.g., proto.CloseTokenExpired (4001), or 1005 when the frame
// carried no code (RFC 6455 section 7.1.5; before internal/wsclient the
// SDK reported 0).
type CloseError = wsclient.CloseError

// HandshakeError is a refused WebSocket upgrade (HTTP status other than
// 101): Status is, e.g., 401.
type HandshakeError = wsclient.HandshakeError

// Hello describes the current session, from the server's hello frame.
type Hello struct {
	Protocol  int
	User      string        // the authenticated user id
	Device    string        // the device id the server uses for this session
	Session   string        // server-assigned session id
	Heartbeat time.Duration // interval at which the client pings; 0 = none
}

// Message is a delivered message (a msg frame or an entry of a history
// page).
type Message struct {
	Chat      string
	Seq       uint64
	From      string // sender user id; may be "" for system messages
	Device    string // sender's device
	RequestID string // sender's request id; "" for system messages
	Time      time.Time
	Kind      string // "text" or "system"
	Body      string // text, or a JSON event for system messages
}

// IsSystem reports whether m is a server-generated event (membership
// change) rather than a user's text.
func (m Message) IsSystem() bool { return m.Kind == "system" }

// Sent is the server's confirmation that a send is durable.
type Sent struct {
	RequestID string // the request id (client generated, reused on retries)
	Chat      string // chat id (for SendTo, the 1-on-1 chat id)
	Seq       uint64 // the message's seq in the chat
	Time      time.Time
}

// Receipt says that a device of another member received every message of
// Chat up to and including Seq.
type Receipt struct {
	Chat   string
	User   string
	Device string
	Seq    uint64
	Status string // "delivered"
}

// UserPresence is one user's presence, from Presence or a push on change.
type UserPresence struct {
	User     string
	Online   bool
	LastSeen time.Time // zero when online or unknown
}

// ChatInfo is one entry of the user's chat list.
type ChatInfo struct {
	Chat    string   `json:"chat"`
	Kind    string   `json:"kind"` // "direct" or "group"
	Name    string   `json:"name,omitempty"`
	Members []string `json:"members,omitempty"`
	LastSeq uint64   `json:"last_seq"`
	ReadSeq uint64   `json:"read_seq"`
	Unread  uint64   `json:"unread"`
}

// HistoryQuery selects a page of history: with Before > 0 the messages with
// seq < Before, else with After > 0 or FromStart those with seq > After
// (FromStart alone: the oldest), else the newest. Limit is 1..200; zero
// means the server default (50). Pages are in ascending seq order.
type HistoryQuery struct {
	Before    uint64
	After     uint64
	FromStart bool
	Limit     int
}

// StateKind is the connection state.
type StateKind int

// Connection states.
const (
	StateConnected    StateKind = iota + 1 // a session is up
	StateReconnecting                      // the connection dropped; retrying with backoff
	StateClosed                            // closed by Close or stopped for good (see State.Err)
)

func (k StateKind) String() string {
	switch k {
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("state(%d)", int(k))
}

// State is a connection state change.
type State struct {
	Kind  StateKind
	Hello Hello // the session, when Kind is StateConnected
	// Synced is set on a second StateConnected value for the same session,
	// sent once the server's catch-up after the sync is complete and every
	// caught-up message was handed to Messages (see WaitSynced).
	Synced  bool
	Err     error // why the connection dropped or the client stopped; nil after Close
	Attempt int   // reconnect attempt number, when Kind is StateReconnecting
}

// Stats counts client events since Dial.
type Stats struct {
	Reconnects      uint64 // successful reconnects after a drop
	Syncs           uint64 // catch-ups completed (synced frames for our sync)
	DroppedReceipts uint64 // receipts dropped because Receipts() was full
	DroppedPresence uint64 // presence pushes dropped because PresenceEvents() was full
	Duplicates      uint64 // messages dropped because their (chat, seq) was already handed over (pushes and history)
	Retransmits     uint64 // msg frames pushed again by the server for a seq already received (a subset of Duplicates)
	Gaps            uint64 // gaps seen: a message arrived with seq > position+1
	GapsFilled      uint64 // gaps filled from history
	GapsSkipped     uint64 // gaps that could not be filled (logged at Warn)
	AcksSent        uint64 // ack frames written
	Goaways         uint64 // goaway frames obeyed
	Retries         uint64 // request retries
	Resyncs         uint64 // history resyncs after a server refused sync (older servers)
	TokenRefreshes  uint64 // tokens the server accepted in a refresh frame
}

// GoawayError is why a connection was closed when the server asked the
// client to reconnect (a goaway frame: draining, overload). The client
// waits RetryAfter (plus jitter, at most Config.Backoff.Max) and reconnects
// to URL, or to the current URL when URL is empty. It is the State.Err of
// the StateReconnecting that follows.
type GoawayError struct {
	RetryAfter time.Duration
	URL        string
}

func (e *GoawayError) Error() string {
	if e.URL != "" {
		return fmt.Sprintf("server asked to reconnect to %s after %v", e.URL, e.RetryAfter)
	}
	return fmt.Sprintf("server asked to reconnect after %v", e.RetryAfter)
}
