package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/parley-chat/parley/internal/proto"
)

// serverFrame is any server frame; which fields are set depends on Type.
// Unknown fields are ignored so that newer servers can add fields.
type serverFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"` // request id (answers), sender's request id (msg)

	// hello
	Protocol    int    `json:"protocol"`
	Session     string `json:"session"`
	HeartbeatMS int64  `json:"heartbeat_ms"`

	// msg, sent, receipt, ok, history, members
	Chat   string `json:"chat"`
	Seq    uint64 `json:"seq"`
	TS     int64  `json:"ts"`
	From   string `json:"from"`
	Device string `json:"device"`
	Kind   string `json:"kind"`
	Body   string `json:"body"`
	User   string `json:"user"`
	Status string `json:"status"`

	Messages []wireMessage  `json:"messages"`
	More     bool           `json:"more"`
	Chats    []ChatInfo     `json:"chats"`
	Members  []string       `json:"members"`
	Admins   []string       `json:"admins"`
	Creator  string         `json:"creator"`
	Users    []wirePresence `json:"users"`

	// settings
	HideLastSeen *bool `json:"hide_last_seen"`

	// error
	Code         string `json:"code"`
	Message      string `json:"message"`
	Retryable    bool   `json:"retryable"`
	RetryAfterMS int64  `json:"retry_after_ms"`

	// goaway
	URL string `json:"url"`
}

type wireMessage struct {
	Chat   string `json:"chat"`
	Seq    uint64 `json:"seq"`
	From   string `json:"from"`
	Device string `json:"device"`
	ID     string `json:"id"`
	TS     int64  `json:"ts"`
	Kind   string `json:"kind"`
	Body   string `json:"body"`
}

type wirePresence struct {
	User     string `json:"user"`
	Online   bool   `json:"online"`
	LastSeen int64  `json:"last_seen"`
}

// decodeServerFrame parses and checks one server frame. It never panics;
// every failure wraps ErrProtocol.
func decodeServerFrame(b []byte) (*serverFrame, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("cannot decode server frame: %w: empty frame", ErrProtocol)
	}
	f := new(serverFrame)
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("cannot decode server frame: %w: %v", ErrProtocol, err)
	}
	bad := func(what string) (*serverFrame, error) {
		return nil, fmt.Errorf("cannot decode %s frame: %w: %s", f.Type, ErrProtocol, what)
	}
	switch f.Type {
	case "":
		return bad("missing type")
	case proto.TypeHello:
		if f.User == "" {
			return bad("missing user")
		}
		if f.HeartbeatMS < 0 {
			return bad("negative heartbeat_ms")
		}
	case proto.TypeMsg:
		if f.Chat == "" || f.Seq == 0 {
			return bad("missing chat or seq")
		}
	case proto.TypeSent:
		if f.ID == "" || f.Chat == "" || f.Seq == 0 {
			return bad("missing id, chat or seq")
		}
	case proto.TypeReceipt:
		if f.Chat == "" || f.User == "" || f.Seq == 0 {
			return bad("missing chat, user or seq")
		}
	case proto.TypeGoaway:
		if f.RetryAfterMS < 0 {
			return bad("negative retry_after_ms")
		}
		if f.URL != "" {
			if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
				return bad("url must be a ws:// or wss:// url")
			}
		}
	case proto.TypeError:
		if f.Code == "" {
			return bad("missing code")
		}
		if f.RetryAfterMS < 0 {
			return bad("negative retry_after_ms")
		}
	case proto.TypeHistory:
		for i := range f.Messages {
			if f.Messages[i].Seq == 0 {
				return bad("history message without seq")
			}
			if f.Messages[i].Chat == "" {
				f.Messages[i].Chat = f.Chat
			}
		}
	case proto.TypeSettings:
		if f.ID == "" || f.HideLastSeen == nil {
			return bad("missing id or hide_last_seen")
		}
	case proto.TypeOK, proto.TypeChats, proto.TypeMembers:
		if f.ID == "" {
			return bad("missing id")
		}
	}
	return f, nil
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func (w *wireMessage) message() Message {
	return Message{Chat: w.Chat, Seq: w.Seq, From: w.From, Device: w.Device,
		RequestID: w.ID, Time: msTime(w.TS), Kind: w.Kind, Body: w.Body}
}

func (f *serverFrame) message() Message {
	return Message{Chat: f.Chat, Seq: f.Seq, From: f.From, Device: f.Device,
		RequestID: f.ID, Time: msTime(f.TS), Kind: f.Kind, Body: f.Body}
}

func (f *serverFrame) err() *Error {
	return &Error{Code: f.Code, Message: f.Message,
		Retryable:  f.Retryable || proto.Retryable(f.Code),
		RetryAfter: time.Duration(f.RetryAfterMS) * time.Millisecond}
}

func (f *serverFrame) presence() []UserPresence {
	out := make([]UserPresence, len(f.Users))
	for i, u := range f.Users {
		out[i] = UserPresence{User: u.User, Online: u.Online, LastSeen: msTime(u.LastSeen)}
	}
	return out
}
