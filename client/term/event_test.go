package term

import "testing"

func TestDescribeEvent(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"event":"created","by":"alice","name":"trip","members":["alice","bob"]}`, `alice created group "trip" with alice, bob`},
		{`{"event":"member_added","by":"alice","user":"dave"}`, "alice added dave"},
		{`{"event":"member_removed","by":"alice","user":"dave"}`, "alice removed dave"},
		{`{"event":"member_left","by":"carol","user":"carol"}`, "carol left"},
		{`{"event":"member_left","by":"carol","user":"carol","promoted":"dave"}`, "carol left; dave is now admin"},
		{`{"event":"role_changed","by":"alice","user":"dave","role":"admin"}`, "alice made dave admin"},
		{`{"event":"renamed"}`, `system: {"event":"renamed"}`},
		{`not json`, "system: not json"},
	}
	for _, tt := range tests {
		if got := describeEvent(tt.body); got != tt.want {
			t.Errorf("describeEvent(%s): got %q, want %q", tt.body, got, tt.want)
		}
	}
}
