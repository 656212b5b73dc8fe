package bench

import (
	"os"
	"strings"
	"testing"
)

func TestParseRssAnon(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"VmRSS:\t 43016 kB\nRssAnon:\t  8120 kB\nRssFile:\t 34896 kB\n", 8120 * 1024, false},
		{"VmRSS: 1 kB\n", 0, true},
		{"RssAnon: 5 pages\n", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseRssAnon(strings.NewReader(tt.in))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseRssAnon(%q): got %d, %v, want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if v, err := ReadRssAnon(os.Getpid()); err != nil || v <= 0 {
		t.Errorf("ReadRssAnon(self): got %d, %v", v, err)
	}
}

func TestParseMeminfo(t *testing.T) {
	in := "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   23000000 kB\nSlab:             307200 kB\n"
	got, err := ParseMeminfo(strings.NewReader(in))
	if err != nil || got.Available != 23000000*1024 || got.Slab != 307200*1024 {
		t.Errorf("got %+v, %v", got, err)
	}
	for _, bad := range []string{"MemTotal: 1 kB\n", "Slab: 1 kB\n", "MemAvailable: x kB\nSlab: 1 kB\n"} {
		if _, err := ParseMeminfo(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseMeminfo(%q): got nil error", bad)
		}
	}
	if m, err := ReadMeminfo(); err != nil || m.Available <= 0 || m.Slab <= 0 {
		t.Errorf("ReadMeminfo: got %+v, %v", m, err)
	}
}

func TestParseStatCPU(t *testing.T) {
	// utime 250 and stime 50 ticks (fields 14 and 15); the name has a
	// space and a parenthesis.
	in := "1234 (par ley)) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 8 0 100 2000000 3000 18446744073709551615"
	got, err := ParseStatCPU(in)
	if err != nil || got != 3.0 {
		t.Errorf("got %v, %v, want 3.0", got, err)
	}
	for _, bad := range []string{"no paren", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 x 50"} {
		if _, err := ParseStatCPU(bad); err == nil {
			t.Errorf("ParseStatCPU(%q): got nil error", bad)
		}
	}
	if _, err := ReadCPUSeconds(os.Getpid()); err != nil {
		t.Errorf("ReadCPUSeconds(self): %v", err)
	}
}

func TestParseStatNice(t *testing.T) {
	// priority 27 and nice 7 are fields 18 and 19.
	in := "1234 (par ley)) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 50 0 0 27 7 8 0 100 2000000 3000 18446744073709551615"
	if got, err := ParseStatNice(in); err != nil || got != 7 {
		t.Errorf("got %v, %v, want 7", got, err)
	}
	for _, bad := range []string{"no paren", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", "1 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x 17"} {
		if _, err := ParseStatNice(bad); err == nil {
			t.Errorf("ParseStatNice(%q): got nil error", bad)
		}
	}
	if _, err := ReadNice(os.Getpid()); err != nil {
		t.Errorf("ReadNice(self): %v", err)
	}
}
