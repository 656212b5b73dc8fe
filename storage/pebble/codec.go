package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/internal/record"
)

// Value encodings
//
// Every structured value starts with a format version byte so that the
// layout can evolve; decoders refuse versions they do not know. ChatID and
// Seq of a message are not repeated in the value: they are in its key.
//
//	message v1:
//	  version   1 byte  = 1
//	  kind      1 byte  record.MsgKind
//	  ts        varint  (zigzag) Unix milliseconds
//	  sender    uvarint length, bytes
//	  device    uvarint length, bytes
//	  requestID uvarint length, bytes
//	  body      the remaining bytes
//
//	chat v1:
//	  version   1 byte  = 1
//	  kind      1 byte  record.ChatKind
//	  createdAt varint  (zigzag) Unix milliseconds
//	  createdBy uvarint length, bytes
//	  name      the remaining bytes
//
//	push subscription v1 (user and device are in the key):
//	  version   1 byte  = 1
//	  createdAt varint  (zigzag) Unix milliseconds
//	  endpoint  uvarint length, bytes
//	  p256dh    uvarint length, bytes
//	  auth      the remaining bytes
//
//	seq (dedup rows, read markers, device cursors): 8 bytes big-endian.
//	push ledger expiry: 8 bytes big-endian Unix nanoseconds.
//
// Version history: 1 is the first and only version.
const (
	msgVersion      = 1
	chatVersion     = 1
	pushSubVersion  = 1
	settingsVersion = 1
	memberVersion   = 1
)

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("pebble: corrupt value")

// appendMessage appends the value encoding of m to b.
func appendMessage(b []byte, m *record.Message) []byte {
	b = append(b, msgVersion, byte(m.Kind))
	b = binary.AppendVarint(b, m.TS)
	b = appendString(b, m.Sender)
	b = appendString(b, m.Device)
	b = appendString(b, m.RequestID)
	return append(b, m.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeMessage decodes a message value stored under (chat, seq). It never
// panics, whatever v holds. The returned strings share one allocation.
func decodeMessage(chat string, seq uint64, v []byte) (record.Message, error) {
	m := record.Message{ChatID: chat, Seq: seq}
	if len(v) < 2 {
		return m, fmt.Errorf("cannot decode message %s/%d: %w: %d bytes", chat, seq, errCorrupt, len(v))
	}
	if v[0] != msgVersion {
		return m, fmt.Errorf("cannot decode message %s/%d: %w: unknown version %d", chat, seq, errCorrupt, v[0])
	}
	m.Kind = record.MsgKind(v[1])
	s := string(v) // one allocation backs every string field
	d := decoder{s: s, off: 2}
	m.TS = d.varint()
	m.Sender = d.str()
	m.Device = d.str()
	m.RequestID = d.str()
	if d.err != nil {
		return m, fmt.Errorf("cannot decode message %s/%d: %w", chat, seq, d.err)
	}
	m.Body = s[d.off:]
	return m, nil
}

// appendChat appends the value encoding of c to b.
func appendChat(b []byte, c *record.Chat) []byte {
	b = append(b, chatVersion, byte(c.Kind))
	b = binary.AppendVarint(b, c.CreatedAt)
	b = appendString(b, c.CreatedBy)
	return append(b, c.Name...)
}

// decodeChat decodes the chat value stored under id. It never panics.
func decodeChat(id string, v []byte) (record.Chat, error) {
	c := record.Chat{ID: id}
	if len(v) < 2 {
		return c, fmt.Errorf("cannot decode chat %s: %w: %d bytes", id, errCorrupt, len(v))
	}
	if v[0] != chatVersion {
		return c, fmt.Errorf("cannot decode chat %s: %w: unknown version %d", id, errCorrupt, v[0])
	}
	c.Kind = record.ChatKind(v[1])
	s := string(v)
	d := decoder{s: s, off: 2}
	c.CreatedAt = d.varint()
	c.CreatedBy = d.str()
	if d.err != nil {
		return c, fmt.Errorf("cannot decode chat %s: %w", id, d.err)
	}
	c.Name = s[d.off:]
	return c, nil
}

// appendPushSub appends the value encoding of sub to b.
func appendPushSub(b []byte, sub *record.PushSubscription) []byte {
	b = append(b, pushSubVersion)
	b = binary.AppendVarint(b, sub.CreatedAt)
	b = appendString(b, sub.Endpoint)
	b = appendString(b, sub.P256dh)
	return append(b, sub.Auth...)
}

// decodePushSub decodes the push subscription stored under (user, device).
// It never panics.
func decodePushSub(user, device string, v []byte) (record.PushSubscription, error) {
	sub := record.PushSubscription{User: user, Device: device}
	if len(v) < 1 {
		return sub, fmt.Errorf("cannot decode push subscription %s/%s: %w: empty", user, device, errCorrupt)
	}
	if v[0] != pushSubVersion {
		return sub, fmt.Errorf("cannot decode push subscription %s/%s: %w: unknown version %d", user, device, errCorrupt, v[0])
	}
	s := string(v)
	d := decoder{s: s, off: 1}
	sub.CreatedAt = d.varint()
	sub.Endpoint = d.str()
	sub.P256dh = d.str()
	if d.err != nil {
		return sub, fmt.Errorf("cannot decode push subscription %s/%s: %w", user, device, d.err)
	}
	sub.Auth = s[d.off:]
	return sub, nil
}

func appendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

func decodeSeq(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("cannot decode seq: %w: %d bytes, want 8", errCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// decoder reads varints and length-prefixed strings from s; the first error
// sticks and makes later reads return zero values.
type decoder struct {
	s   string
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	var shift uint
	for i := 0; d.off+i < len(d.s); i++ {
		if i == binary.MaxVarintLen64 {
			break
		}
		c := d.s[d.off+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break // overflows 64 bits
			}
			d.off += i + 1
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.err = fmt.Errorf("%w: bad varint at offset %d", errCorrupt, d.off)
	return 0
}

func (d *decoder) varint() int64 {
	ux := d.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.off) {
		d.err = fmt.Errorf("%w: string of %d bytes at offset %d overruns %d-byte value", errCorrupt, n, d.off, len(d.s))
		return ""
	}
	v := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

// Bits of the flags byte of a settings value.
const settingHideLastSeen = 1 << 0

// appendSettings appends the value encoding of st to b: the version and a
// flags byte.
func appendSettings(b []byte, st record.UserSettings) []byte {
	var flags byte
	if st.HideLastSeen {
		flags |= settingHideLastSeen
	}
	return append(b, settingsVersion, flags)
}

// decodeSettings decodes the settings stored for user. Flags it does not
// know are ignored (a later version may add some). It never panics.
func decodeSettings(user string, v []byte) (record.UserSettings, error) {
	if len(v) < 2 {
		return record.UserSettings{}, fmt.Errorf("cannot decode settings of %s: %w: %d bytes", user, errCorrupt, len(v))
	}
	if v[0] != settingsVersion {
		return record.UserSettings{}, fmt.Errorf("cannot decode settings of %s: %w: unknown version %d", user, errCorrupt, v[0])
	}
	return record.UserSettings{HideLastSeen: v[1]&settingHideLastSeen != 0}, nil
}

// appendMember appends the value encoding of a member row to b: the
// version, the role and the join seq (uvarint).
func appendMember(b []byte, m record.Member) []byte {
	b = append(b, memberVersion, byte(m.Role))
	return binary.AppendUvarint(b, m.Joined)
}

// decodeMember decodes the member row of user. An empty value is a row
// written before roles were stored (RoleUnset, joined 0). A role it does
// not know is returned as is (the logic tier reads it as member). It
// never panics.
func decodeMember(user string, v []byte) (record.Member, error) {
	m := record.Member{User: user}
	if len(v) == 0 {
		return m, nil
	}
	if len(v) < 3 || v[0] != memberVersion {
		return m, fmt.Errorf("cannot decode member %s: %w: %d bytes, version %d", user, errCorrupt, len(v), v[0])
	}
	m.Role = record.Role(v[1])
	n, size := binary.Uvarint(v[2:])
	if size <= 0 || 2+size != len(v) {
		return m, fmt.Errorf("cannot decode member %s: %w: bad join seq", user, errCorrupt)
	}
	m.Joined = n
	return m, nil
}
