package wsclient

import (
	"strings"
	"testing"
)

func TestParseIPRange(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"127.0.0.2", []string{"127.0.0.2"}, false},
		{"127.0.0.254-127.0.1.1", []string{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"}, false},
		{"127.0.0.2-127.0.0.3,10.0.0.1", []string{"127.0.0.2", "127.0.0.3", "10.0.0.1"}, false},
		{"127.0.0.3-127.0.0.2", nil, true},
		{"::1", nil, true},
		{"x", nil, true},
		{"10.0.0.0-10.1.0.0", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseIPRange(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIPRange(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		var gs []string
		for _, ip := range got {
			gs = append(gs, ip.String())
		}
		if strings.Join(gs, ",") != strings.Join(tt.want, ",") {
			t.Errorf("ParseIPRange(%q): got %v, want %v", tt.in, gs, tt.want)
		}
	}
}
