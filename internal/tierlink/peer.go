package tierlink

import (
	"encoding/binary"
	"fmt"
)

// Limits of the logic-to-logic frames.
const (
	// MaxPeerUsers is the most users one Fanout or Users frame may name.
	MaxPeerUsers = 4096
	// MaxChatID is the longest chat id a Fanout message may carry.
	MaxChatID = 1024
)

// FlagPush on a Fanout or Users entry asks the receiving node to emit a
// push event when it holds no session of the user.
const FlagPush uint8 = 1

// PeerUser is one entry of a Fanout or Users frame.
type PeerUser struct {
	User  string
	Flags uint8
}

// Message is the stored message a Fanout frame carries. It mirrors Parley's
// message record without importing it (this package is a leaf).
type Message struct {
	Chat      string
	Seq       uint64
	TS        int64
	Kind      uint8
	Sender    string
	Device    string
	RequestID string
	Body      string
}

// AppendForward appends a Forward frame: the client frame of (user, device)
// sent to the node that owns its chat, under token.
func AppendForward(dst []byte, token uint64, user, device string, frame []byte) []byte {
	user, device = cut255(user), cut255(device)
	dst = AppendHeader(dst, TypeForward, token, 2+len(user)+len(device)+len(frame))
	dst = append(dst, byte(len(user)))
	dst = append(dst, user...)
	dst = append(dst, byte(len(device)))
	dst = append(dst, device...)
	return append(dst, frame...)
}

// ParseForward decodes a Forward payload. frame aliases p.
func ParseForward(p []byte) (user, device string, frame []byte, err error) {
	user, rest, ok := str8(p)
	if !ok {
		return "", "", nil, fmt.Errorf("%w: forward user", ErrBadPayload)
	}
	device, rest, ok = str8(rest)
	if !ok {
		return "", "", nil, fmt.Errorf("%w: forward device", ErrBadPayload)
	}
	return user, device, rest, nil
}

// AppendReply appends a Reply frame answering the request sent under token.
// seq is the message's seq when frame is its "sent" answer, else 0.
func AppendReply(dst []byte, token, seq uint64, frame []byte) []byte {
	dst = AppendHeader(dst, TypeReply, token, 8+len(frame))
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return append(dst, frame...)
}

// ParseReply decodes a Reply payload. frame aliases p.
func ParseReply(p []byte) (seq uint64, frame []byte, err error) {
	if len(p) < 8 {
		return 0, nil, fmt.Errorf("%w: reply of %d bytes", ErrBadPayload, len(p))
	}
	return binary.BigEndian.Uint64(p), p[8:], nil
}

// AppendFanout appends a Fanout frame handing m to the sessions of users.
// users must hold 1 to MaxPeerUsers entries (the caller splits larger sets).
func AppendFanout(dst []byte, users []PeerUser, m *Message) []byte {
	n := usersLen(users) + 8 + 8 + 1 + 2 + len(m.Chat) + 3 + len(cut255(m.Sender)) + len(cut255(m.Device)) + len(cut255(m.RequestID)) + len(m.Body)
	dst = AppendHeader(dst, TypeFanout, 0, n)
	dst = appendUsers(dst, users)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.TS))
	dst = append(dst, m.Kind)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Chat)))
	dst = append(dst, m.Chat...)
	for _, s := range []string{m.Sender, m.Device, m.RequestID} {
		s = cut255(s)
		dst = append(dst, byte(len(s)))
		dst = append(dst, s...)
	}
	return append(dst, m.Body...)
}

// ParseFanout decodes a Fanout payload into users (reused) and a message.
func ParseFanout(p []byte, users []PeerUser) ([]PeerUser, Message, error) {
	users, rest, err := parseUsers(p, users)
	if err != nil {
		return users, Message{}, err
	}
	var m Message
	if len(rest) < 8+8+1+2 {
		return users, m, fmt.Errorf("%w: fanout message of %d bytes", ErrBadPayload, len(rest))
	}
	m.Seq = binary.BigEndian.Uint64(rest)
	m.TS = int64(binary.BigEndian.Uint64(rest[8:]))
	m.Kind = rest[16]
	cl := int(binary.BigEndian.Uint16(rest[17:]))
	rest = rest[19:]
	if cl == 0 || cl > MaxChatID || len(rest) < cl {
		return users, m, fmt.Errorf("%w: fanout chat id of %d bytes", ErrBadPayload, cl)
	}
	m.Chat, rest = string(rest[:cl]), rest[cl:]
	var ok bool
	if m.Sender, rest, ok = str8(rest); !ok {
		return users, m, fmt.Errorf("%w: fanout sender", ErrBadPayload)
	}
	if m.Device, rest, ok = str8(rest); !ok {
		return users, m, fmt.Errorf("%w: fanout device", ErrBadPayload)
	}
	if m.RequestID, rest, ok = str8(rest); !ok {
		return users, m, fmt.Errorf("%w: fanout request id", ErrBadPayload)
	}
	m.Body = string(rest)
	return users, m, nil
}

// AppendUsers appends a Users frame delivering one server frame to every
// session of users (1 to MaxPeerUsers entries).
func AppendUsers(dst []byte, users []PeerUser, frame []byte) []byte {
	dst = AppendHeader(dst, TypeUsers, 0, usersLen(users)+len(frame))
	dst = appendUsers(dst, users)
	return append(dst, frame...)
}

// ParseUsers decodes a Users payload into users (reused); frame aliases p.
func ParseUsers(p []byte, users []PeerUser) ([]PeerUser, []byte, error) {
	return parseUsers(p, users)
}

func usersLen(users []PeerUser) int {
	n := 2
	for _, u := range users {
		n += 2 + len(cut255(u.User))
	}
	return n
}

func appendUsers(dst []byte, users []PeerUser) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(users)))
	for _, u := range users {
		s := cut255(u.User)
		dst = append(dst, u.Flags, byte(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

func parseUsers(p []byte, users []PeerUser) ([]PeerUser, []byte, error) {
	users = users[:0]
	if len(p) < 2 {
		return users, nil, fmt.Errorf("%w: user list of %d bytes", ErrBadPayload, len(p))
	}
	n := int(binary.BigEndian.Uint16(p))
	if n == 0 || n > MaxPeerUsers {
		return users, nil, fmt.Errorf("%w: user list of %d entries", ErrBadPayload, n)
	}
	p = p[2:]
	for range n {
		if len(p) < 1 {
			return users, nil, fmt.Errorf("%w: user list truncated", ErrBadPayload)
		}
		flags := p[0]
		u, rest, ok := str8(p[1:])
		if !ok || u == "" {
			return users, nil, fmt.Errorf("%w: user list entry", ErrBadPayload)
		}
		users = append(users, PeerUser{User: u, Flags: flags})
		p = rest
	}
	return users, p, nil
}

// str8 reads a string prefixed by its length in one byte.
func str8(p []byte) (string, []byte, bool) {
	if len(p) < 1 || len(p) < 1+int(p[0]) {
		return "", p, false
	}
	n := int(p[0])
	return string(p[1 : 1+n]), p[1+n:], true
}
