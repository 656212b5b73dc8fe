package adminauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAllowed(t *testing.T) {
	tok := strings.Repeat("t", 32)
	for _, tc := range []struct {
		header, token string
		want          bool
	}{
		{"", "", true},
		{"Bearer " + tok, tok, true},
		{"bearer  " + tok + " ", tok, true},
		{"", tok, false},
		{"Bearer wrong", tok, false},
		{"Basic " + tok, tok, false},
		{"Bearer" + tok, tok, false},
	} {
		if got := Allowed(tc.header, tc.token); got != tc.want {
			t.Errorf("Allowed(%q, %q): got %v, want %v", tc.header, tc.token, got, tc.want)
		}
	}
}

func TestCheckAndLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		open          bool
	}{
		{"127.0.0.1:1", "", false},
		{"[::1]:1", "", false},
		{"localhost:1", "", false},
		{"", "", false},
		{"0.0.0.0:1", "", true},
		{":1", "", true},
		{"10.0.0.1:1", "", true},
		{"10.0.0.1:1", "x", false},
	} {
		if err := Check(tc.listen, tc.token); errors.Is(err, ErrOpen) != tc.open {
			t.Errorf("Check(%q, %q): got %v, want open=%v", tc.listen, tc.token, err, tc.open)
		}
	}
}

func TestLoad(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(f, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := Load("connsrv", "metrics_token", "", f); err != nil || tok != strings.Repeat("k", 40) {
		t.Fatalf("file: got %q, %v", tok, err)
	}
	if _, err := Load("connsrv", "metrics_token", "x", f); err == nil {
		t.Fatal("both set: got nil, want an error")
	}
	if _, err := Load("connsrv", "metrics_token", "short", ""); err == nil || !strings.Contains(err.Error(), "connsrv.metrics_token") {
		t.Fatalf("short: got %v", err)
	}
	if tok, err := Load("connsrv", "metrics_token", "", ""); err != nil || tok != "" {
		t.Fatalf("none: got %q, %v", tok, err)
	}
}

// TestBearer: the scheme in any case (RFC 7235), any spaces after it.
func TestBearer(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"bEaReR abc", "abc", true},
		{"Bearer    abc  ", "abc", true},
		{"Bearer ", "", true},
		{"Bearer", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"", "", false},
		{" Bearer abc", "", false},
	}
	for _, tc := range tests {
		got, ok := Bearer(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Bearer(%q): got %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
