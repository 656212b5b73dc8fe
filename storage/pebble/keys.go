package pebble

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Key layout
//
// All rows live in one Pebble keyspace. The first byte of a key names the
// table; ids follow, each terminated by a 0x00 byte. Ids never contain 0x00
// (record validates them; the store refuses ids with 0x00 or empty ids), and
// 0x00 sorts below every other byte, so the prefix "<table><id>\x00" of one
// id never covers another id that merely starts with the same characters:
// "g:a\x00..." < "g:a2\x00..." and the range ["g:a\x00", "g:a\x01") holds only
// rows of "g:a". Sequence numbers are 8-byte big-endian so that byte order is
// numeric order.
//
//	table    key                                     value
//	'm' msg  'm' chat 00 seq(8, BE)                  message (see codec.go)
//	'k' dup  'k' chat 00 sender 00 device/requestID  seq(8, BE) (bare requestID if written before dedup was scoped per device)
//	'c' chat 'c' chat                                chat meta (see codec.go)
//	'b' mem  'b' chat 00 user                        role and join seq (see codec.go; empty if written before roles)
//	'u' list 'u' user 00 chat                        empty
//	'r' read 'r' user 00 chat                        read seq(8, BE)
//	'd' cur  'd' user 00 device 00 chat              delivery seq(8, BE)
//	'e' ccur 'e' chat 00 user 00 device              delivery seq(8, BE) (same value as 'd', by chat)
//	's' push 's' user 00 device                      push subscription (see codec.go)
//	'p' set  'p' user                                user settings (see codec.go)
//	'l' ldgr 'l' key                                 expiry, Unix ns (8, BE)
//	'x' lexp 'x' expiry(8, BE) key                   empty (the ledger by expiry, for the sweep)
//	'z' meta 'z' name                                a store-wide setting (dedupFormatKey)
//
// Consequences:
//   - LastSeq is one reverse seek (Last) within ['m' chat 00, 'm' chat 01).
//   - A history page is one bounded range scan, forwards for After, backwards
//     for Before and for the newest page.
//   - Members is a prefix scan of 'b' chat 00, naturally in ascending user
//     order; UserChats is a prefix scan of 'u' user 00 followed by point
//     reads of chat meta, read marker and last seq for each chat.
//   - PushSubscriptions is a prefix scan of 's' user 00.
//   - A push ledger row ('l') whose expiry has passed counts as absent; the
//     sweep walks 'x' from its start up to now and deletes both rows of
//     every expired entry, so the ledger does not grow without bound.
//   - A dedup row stores only the seq; the message itself is read from its
//     'm' row. Both rows are written in the same batch.
//
// Membership is stored twice ('b' and 'u'), always changed together in one
// batch, so the two directions never disagree.
const (
	tableMessage  = 'm'
	tableDedup    = 'k'
	tableChat     = 'c'
	tableMember   = 'b'
	tableList     = 'u'
	tableRead     = 'r'
	tableCursor   = 'd'
	tableChatCur  = 'e'
	tablePushSub  = 's'
	tableSettings = 'p'
	tableLedger   = 'l'
	tableLedgerX  = 'x'
	tableMeta     = 'z'
)

const sep = 0x00

// checkID rejects ids that would make keys ambiguous.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("invalid %s: empty", what)
	}
	if strings.IndexByte(id, sep) >= 0 {
		return fmt.Errorf("invalid %s %q: contains a NUL byte", what, id)
	}
	return nil
}

// keyBuilder appends keys to a reusable buffer.
func appendID(b []byte, id string) []byte {
	b = append(b, id...)
	return append(b, sep)
}

// msgPrefix returns 'm' chat 00, the lower bound of the chat's messages.
func msgPrefix(b []byte, chat string) []byte {
	b = append(b, tableMessage)
	return appendID(b, chat)
}

// msgKey returns 'm' chat 00 seq.
func msgKey(b []byte, chat string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(msgPrefix(b, chat), seq)
}

// prefixEnd returns the exclusive upper bound of all keys starting with a
// prefix that ends in the separator: the separator is replaced by 0x01.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	end[len(end)-1] = sep + 1
	return end
}

// seqOfMsgKey returns the seq of a message key with the given prefix length.
func seqOfMsgKey(key []byte, prefixLen int) (uint64, bool) {
	if len(key) != prefixLen+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[prefixLen:]), true
}

func dedupKey(b []byte, chat, sender, requestID string) []byte {
	b = append(b, tableDedup)
	b = appendID(b, chat)
	b = appendID(b, sender)
	return append(b, requestID...)
}

func chatKey(b []byte, chat string) []byte {
	b = append(b, tableChat)
	return append(b, chat...)
}

func memberPrefix(b []byte, chat string) []byte {
	b = append(b, tableMember)
	return appendID(b, chat)
}

func memberKey(b []byte, chat, user string) []byte {
	return append(memberPrefix(b, chat), user...)
}

func listPrefix(b []byte, user string) []byte {
	b = append(b, tableList)
	return appendID(b, user)
}

func listKey(b []byte, user, chat string) []byte {
	return append(listPrefix(b, user), chat...)
}

func readKey(b []byte, user, chat string) []byte {
	b = append(b, tableRead)
	b = appendID(b, user)
	return append(b, chat...)
}

// chatCursorPrefix returns 'e' chat 00.
func chatCursorPrefix(b []byte, chat string) []byte {
	b = append(b, tableChatCur)
	return appendID(b, chat)
}

// chatCursorKey returns 'e' chat 00 user 00 device.
func chatCursorKey(b []byte, chat, user, device string) []byte {
	b = appendID(chatCursorPrefix(b, chat), user)
	return append(b, device...)
}

func cursorKey(b []byte, user, device, chat string) []byte {
	b = append(b, tableCursor)
	b = appendID(b, user)
	b = appendID(b, device)
	return append(b, chat...)
}

func pushSubPrefix(b []byte, user string) []byte {
	b = append(b, tablePushSub)
	return appendID(b, user)
}

// pushSubKey returns 's' user 00 device.
func pushSubKey(b []byte, user, device string) []byte {
	return append(pushSubPrefix(b, user), device...)
}

// ledgerKey returns 'l' key.
func ledgerKey(b []byte, key string) []byte {
	b = append(b, tableLedger)
	return append(b, key...)
}

// ledgerExpiryKey returns 'x' expiry(8, BE) key.
func ledgerExpiryKey(b []byte, expiry uint64, key string) []byte {
	b = append(b, tableLedgerX)
	b = binary.BigEndian.AppendUint64(b, expiry)
	return append(b, key...)
}
