package main

import (
	"strings"
	"testing"
)

func TestParseDayCurve(t *testing.T) {
	ones := strings.TrimSuffix(strings.Repeat("1,", 24), ",")
	tests := []struct {
		in      string
		wantLen int
		wantErr bool
	}{
		{"", 0, false},
		{"flat", 0, false},
		{"typical", 24, false},
		{ones, 24, false},
		{"1,2,3", 0, true},
		{strings.Replace(ones, "1", "x", 1), 0, true},
	}
	for _, tt := range tests {
		got, err := parseDayCurve(tt.in)
		if (err != nil) != tt.wantErr || len(got) != tt.wantLen {
			t.Errorf("parseDayCurve(%q): got %d weights, %v; want %d, error %v", tt.in, len(got), err, tt.wantLen, tt.wantErr)
		}
	}
}
