package directory

import (
	"errors"
	"strconv"
)

// A location value is the text stored in the field <device> of the hash
// <prefix>loc:{<user>}. Layout (decimal numbers without sign or leading
// zeros; node ids are arbitrary bytes):
//
//	1:<deadline>:<written>:<session>:<len(logic)>:<logic><conn>
//	|  |          |         `------------- ident -------------'
//	|  |          `- unix ms the writer stored or refreshed it
//	|  `- unix ms after which readers ignore it (written + LocationTTL)
//	`- format version
//
// The ident names one session; Detach deletes the field only if its ident
// is still its own, and a Refresh never overwrites another live ident. The
// Lua scripts in scripts.go read the version, deadline and ident with the
// same rules (parseLua); change both together.
const locVersion = "1:"

// locEntry is one decoded location value.
type locEntry struct {
	Deadline int64 // unix ms
	Written  int64 // unix ms
	Session  uint64
	Logic    string
	Conn     string
}

var errBadValue = errors.New("malformed location value")

// appendIdent appends the ident of a session: session, logic length, logic
// and conn.
func appendIdent(dst []byte, logic, conn string, session uint64) []byte {
	dst = strconv.AppendUint(dst, session, 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(len(logic)), 10)
	dst = append(dst, ':')
	dst = append(dst, logic...)
	return append(dst, conn...)
}

// appendLocValue appends the encoding of e to dst.
func appendLocValue(dst []byte, e locEntry) []byte {
	dst = append(dst, locVersion...)
	dst = strconv.AppendInt(dst, e.Deadline, 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, e.Written, 10)
	dst = append(dst, ':')
	return appendIdent(dst, e.Logic, e.Conn, e.Session)
}

// parseLocValue decodes a location value. It accepts exactly what
// appendLocValue produces: re-encoding the result gives v back.
func parseLocValue(v string) (locEntry, error) {
	var e locEntry
	if len(v) < len(locVersion) || v[:len(locVersion)] != locVersion {
		return e, errBadValue
	}
	rest := v[len(locVersion):]
	var n uint64
	var ok bool
	if n, rest, ok = cutUint(rest, 1<<63-1); !ok {
		return e, errBadValue
	}
	e.Deadline = int64(n)
	if n, rest, ok = cutUint(rest, 1<<63-1); !ok {
		return e, errBadValue
	}
	e.Written = int64(n)
	if e.Session, rest, ok = cutUint(rest, 1<<64-1); !ok {
		return e, errBadValue
	}
	if n, rest, ok = cutUint(rest, 1<<31-1); !ok || n > uint64(len(rest)) {
		return e, errBadValue
	}
	e.Logic, e.Conn = rest[:n], rest[n:]
	return e, nil
}

// cutUint reads a canonical decimal number up to max followed by ':' and
// returns it with the text after the colon.
func cutUint(s string, max uint64) (uint64, string, bool) {
	i := 0
	var n uint64
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if n > (max-d)/10 {
			return 0, "", false
		}
		n = n*10 + d
	}
	if i == 0 || i == len(s) || s[i] != ':' || (i > 1 && s[0] == '0') {
		return 0, "", false
	}
	return n, s[i+1:], true
}
