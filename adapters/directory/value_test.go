package directory

import (
	"strings"
	"testing"
)

func TestLocValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    locEntry
		want string
	}{
		{"plain", locEntry{Deadline: 1700000090000, Written: 1700000000000, Session: 42, Logic: "logic-1", Conn: "conn-2"}, "1:1700000090000:1700000000000:42:7:logic-1conn-2"},
		{"zeros", locEntry{}, "1:0:0:0:0:"},
		{"colons in ids", locEntry{Deadline: 5, Written: 4, Session: 3, Logic: "a:b", Conn: "c:d:"}, "1:5:4:3:3:a:bc:d:"},
		{"empty conn", locEntry{Deadline: 1, Written: 1, Session: 1, Logic: "l"}, "1:1:1:1:1:l"},
		{"max session", locEntry{Deadline: 1<<63 - 1, Written: 1, Session: 1<<64 - 1, Logic: "x", Conn: "y"}, "1:9223372036854775807:1:18446744073709551615:1:xy"},
		{"binary ids", locEntry{Deadline: 9, Written: 8, Session: 7, Logic: "\x00\xff", Conn: "\n"}, "1:9:8:7:2:\x00\xff\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendLocValue(nil, tt.e))
			if got != tt.want {
				t.Fatalf("encode: got %q, want %q", got, tt.want)
			}
			e, err := parseLocValue(got)
			if err != nil {
				t.Fatalf("decode %q: %v", got, err)
			}
			if e != tt.e {
				t.Fatalf("decode: got %+v, want %+v", e, tt.e)
			}
			ident := string(appendIdent(nil, tt.e.Logic, tt.e.Conn, tt.e.Session))
			if !strings.HasSuffix(got, ident) {
				t.Fatalf("value %q does not end with its ident %q", got, ident)
			}
		})
	}
}

func TestParseLocValueRejects(t *testing.T) {
	for _, v := range []string{
		"",
		"1",
		"1:",
		"2:1:1:1:1:lc",                    // unknown version
		"1:1:1:1:5:lc",                    // logic longer than the rest
		"1:01:1:1:1:lc",                   // leading zero
		"1:-1:1:1:1:lc",                   // sign
		"1:+1:1:1:1:lc",                   // sign
		"1:1::1:1:lc",                     // empty number
		"1:1:1:1:1",                       // no logic
		"1:1:1:1",                         // missing fields
		"1:9223372036854775808:1:1:1:lc",  // deadline overflows int64
		"1:1:1:18446744073709551616:1:lc", // session overflows uint64
		"1:1:1:1:99999999999999999999:lc", // length overflows
		"1:1 :1:1:1:lc",                   // space
	} {
		if e, err := parseLocValue(v); err == nil {
			t.Errorf("parseLocValue(%q) = %+v, want an error", v, e)
		}
	}
}

// FuzzParseLocValue: the decoder never panics, and whatever it accepts
// re-encodes to the same bytes (the encoding is canonical, which the Lua
// scripts rely on when they compare idents).
func FuzzParseLocValue(f *testing.F) {
	f.Add("1:1700000090000:1700000000000:42:7:logic-1conn-2")
	f.Add("1:0:0:0:0:")
	f.Add("1:5:4:3:3:a:bc:d:")
	f.Add("1:1:1:1:5:lc")
	f.Add("1:01:1:1:1:lc")
	f.Add("1:9223372036854775808:1:1:1:lc")
	f.Fuzz(func(t *testing.T, v string) {
		// Split input: a prefix alone must never decode to something that
		// re-encodes differently either.
		for _, s := range []string{v, v[:len(v)/2]} {
			e, err := parseLocValue(s)
			if err != nil {
				continue
			}
			if got := string(appendLocValue(nil, e)); got != s {
				t.Fatalf("parseLocValue(%q) = %+v re-encodes to %q", s, e, got)
			}
		}
	})
}

func BenchmarkLocValue(b *testing.B) {
	e := locEntry{Deadline: 1700000090000, Written: 1700000000000, Session: 42, Logic: "logic-1", Conn: "conn-2"}
	buf := appendLocValue(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = appendLocValue(buf[:0], e)
		if _, err := parseLocValue(string(buf)); err != nil {
			b.Fatal(err)
		}
	}
}
