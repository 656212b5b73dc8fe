package logic

import (
	"unicode/utf8"

	"github.com/parley-chat/parley/internal/proto"
)

// displayUnsafe reports the first rune of s that must not appear in text
// the server stores and shows to other users (group names; not message
// bodies): invalid UTF-8, a C0 control (U+0000-U+001F), DEL, a C1 control
// (U+0080-U+009F), a bidi embedding or override (U+202A-U+202E), a bidi
// isolate (U+2066-U+2069) or a directional mark (U+200E, U+200F, U+061C).
// Such runes let a name hide or reorder what other members see (e.g.
// U+202E turns "exe.txt" around). It returns the rune's byte offset and
// the rune (utf8.RuneError for invalid UTF-8), or ok when s is clean.
func displayUnsafe(s string) (at int, r rune, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return i, rune(c), false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1,
			r >= 0x80 && r <= 0x9f,
			r >= 0x202a && r <= 0x202e,
			r >= 0x2066 && r <= 0x2069,
			r == 0x200e, r == 0x200f, r == 0x061c:
			return i, r, false
		}
		i += n
	}
	return 0, 0, true
}

// checkDisplayText returns a bad_request error naming field when s holds
// a rune displayUnsafe refuses, nil otherwise.
func checkDisplayText(field, s string) error {
	at, r, ok := displayUnsafe(s)
	switch {
	case ok:
		return nil
	case r == utf8.RuneError:
		return proto.Errorf(proto.CodeBadRequest, "%s: invalid UTF-8 at byte %d", field, at)
	}
	return proto.Errorf(proto.CodeBadRequest, "%s: control or bidi-override character %U at byte %d", field, r, at)
}
