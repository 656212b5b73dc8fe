package loadtest

import (
	"os"
	"slices"
	"testing"
)

func TestParseWatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []watched
		ok   bool
	}{
		{"", nil, true},
		{"cassandra=12,logic-1=34", []watched{{"cassandra", 12}, {"logic-1", 34}}, true},
		{" a=1 , ", []watched{{"a", 1}}, true},
		{"a", nil, false},
		{"a=x", nil, false},
		{"=3", nil, false},
		{"a=-1", nil, false},
	} {
		got, err := parseWatch(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseWatch(%q): got %v, %v, want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if d := procStatCPU(os.Getpid()); d < 0 {
		t.Fatalf("procStatCPU(self): got %v", d)
	}
}
