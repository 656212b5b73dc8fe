package tierlink

import (
	"encoding/binary"
	"fmt"

	"github.com/parley-chat/parley/internal/record"
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

// AppendFanout appends a Fanout frame handing m to the sessions of users
// in the layout of link version v: from VersionMessageFields the message
// encoding (AppendMessage), before it the fixed layout of version 2.
// users must hold 1 to MaxPeerUsers entries (the caller splits larger
// sets).
func AppendFanout(dst []byte, v uint8, users []PeerUser, m *record.Message) []byte {
	if v < VersionMessageFields {
		return appendFanoutV2(dst, users, m)
	}
	dst = AppendHeader(dst, TypeFanout, 0, usersLen(users)+messageLen(m))
	dst = appendUsers(dst, users)
	return AppendMessage(dst, m)
}

// ParseFanout decodes a Fanout payload of link version v into users
// (reused) and a message. The message's strings are copies.
func ParseFanout(p []byte, v uint8, users []PeerUser) ([]PeerUser, record.Message, error) {
	users, rest, err := parseUsers(p, users)
	if err != nil {
		return users, record.Message{}, err
	}
	if v < VersionMessageFields {
		m, err := parseFanoutV2(rest)
		return users, m, err
	}
	m, err := ParseMessage(rest)
	return users, m, err
}

// The message encoding of the peer link (from VersionMessageFields):
//
//	seq u64 | ts i64 | kind u8 | chat len u16 | chat
//	| sender len u8 | sender | device len u8 | device | request id len u8 | request id
//	| body len u32 | body
//	| fields: zero or more of (tag u8 | len u16 | value)
//
// Fields make room for what a message gains later: a sender adds one under
// a new tag, and a reader skips the tags it does not know, so a new field
// needs no new link version unless older nodes must not ignore it. No tag
// is defined yet; tag 0 is reserved.
//
// messageHeadFixed is the fixed part of the head both layouts share:
// seq, ts, kind, the chat id's length and the three string lengths.
const messageHeadFixed = 8 + 8 + 1 + 2 + 3

func messageHeadLen(m *record.Message) int {
	return messageHeadFixed + len(m.ChatID) + len(cut255(m.Sender)) + len(cut255(m.Device)) + len(cut255(m.RequestID))
}

func messageLen(m *record.Message) int { return messageHeadLen(m) + 4 + len(m.Body) }

// appendMessageHead appends what both layouts start with: seq u64 |
// ts i64 | kind u8 | chat len u16 | chat | sender, device and request id
// (len u8 each, cut at 255).
func appendMessageHead(dst []byte, m *record.Message) []byte {
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.TS))
	dst = append(dst, byte(m.Kind))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.ChatID)))
	dst = append(dst, m.ChatID...)
	for _, s := range []string{m.Sender, m.Device, m.RequestID} {
		s = cut255(s)
		dst = append(dst, byte(len(s)))
		dst = append(dst, s...)
	}
	return dst
}

// parseMessageHead decodes the head appendMessageHead writes and returns
// what follows it.
func parseMessageHead(p []byte) (m record.Message, rest []byte, err error) {
	if len(p) < 8+8+1+2 {
		return m, nil, fmt.Errorf("%w: message of %d bytes", ErrBadPayload, len(p))
	}
	m.Seq = binary.BigEndian.Uint64(p)
	m.TS = int64(binary.BigEndian.Uint64(p[8:]))
	m.Kind = record.MsgKind(p[16])
	cl := int(binary.BigEndian.Uint16(p[17:]))
	rest = p[19:]
	if cl == 0 || cl > MaxChatID || len(rest) < cl {
		return m, nil, fmt.Errorf("%w: message chat id of %d bytes", ErrBadPayload, cl)
	}
	m.ChatID, rest = string(rest[:cl]), rest[cl:]
	var ok bool
	if m.Sender, rest, ok = str8(rest); !ok {
		return m, nil, fmt.Errorf("%w: message sender", ErrBadPayload)
	}
	if m.Device, rest, ok = str8(rest); !ok {
		return m, nil, fmt.Errorf("%w: message device", ErrBadPayload)
	}
	if m.RequestID, rest, ok = str8(rest); !ok {
		return m, nil, fmt.Errorf("%w: message request id", ErrBadPayload)
	}
	return m, rest, nil
}

// AppendMessage appends the peer link's encoding of m (chat id at most
// MaxChatID bytes; sender, device and request id cut at 255).
func AppendMessage(dst []byte, m *record.Message) []byte {
	dst = appendMessageHead(dst, m)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Body)))
	return append(dst, m.Body...)
}

// ParseMessage decodes the peer link's encoding of a message, skipping
// fields it does not know.
func ParseMessage(p []byte) (record.Message, error) {
	m, rest, err := parseMessageHead(p)
	if err != nil {
		return m, err
	}
	if len(rest) < 4 || uint64(len(rest)-4) < uint64(binary.BigEndian.Uint32(rest)) {
		return m, fmt.Errorf("%w: message body", ErrBadPayload)
	}
	bl := int(binary.BigEndian.Uint32(rest))
	m.Body, rest = string(rest[4:4+bl]), rest[4+bl:]
	for len(rest) > 0 {
		if len(rest) < 3 {
			return m, fmt.Errorf("%w: message field header of %d bytes", ErrBadPayload, len(rest))
		}
		n := int(binary.BigEndian.Uint16(rest[1:]))
		if len(rest)-3 < n {
			return m, fmt.Errorf("%w: message field %d of %d bytes, %d left", ErrBadPayload, rest[0], n, len(rest)-3)
		}
		rest = rest[3+n:] // no field is known yet: every tag is skipped
	}
	return m, nil
}

// appendFanoutV2 is the Fanout layout of link version 2: users, the
// message head, then the body (the rest). It goes when MinVersion
// reaches VersionMessageFields.
func appendFanoutV2(dst []byte, users []PeerUser, m *record.Message) []byte {
	dst = AppendHeader(dst, TypeFanout, 0, usersLen(users)+messageHeadLen(m)+len(m.Body))
	dst = appendUsers(dst, users)
	dst = appendMessageHead(dst, m)
	return append(dst, m.Body...)
}

// parseFanoutV2 decodes the message of a version-2 Fanout.
func parseFanoutV2(p []byte) (record.Message, error) {
	m, rest, err := parseMessageHead(p)
	if err != nil {
		return m, err
	}
	m.Body = string(rest)
	return m, nil
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
