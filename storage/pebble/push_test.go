package pebble

import (
	"testing"
	"time"
)

// TestLedgerSweep: the sweep deletes expired ledger entries (both rows) and
// leaves live ones, so the ledger does not grow without bound.
func TestLedgerSweep(t *testing.T) {
	s := openMem(t)
	ctx := t.Context()
	now := time.Now()
	base := uint64(now.UnixNano())
	tests := []struct {
		key    string
		expiry uint64
	}{
		{"old/1", base - 3},
		{"old/2", base - 2},
		{"old/3", base - 1},
		{"live/1", base + uint64(time.Hour)},
	}
	for _, tc := range tests {
		if first, err := s.markPushed(tc.key, base-10, tc.expiry); err != nil || !first {
			t.Fatalf("markPushed(%q): got %v, %v, want true", tc.key, first, err)
		}
	}
	if n, err := s.sweepLedger(base, 2); err != nil || n != 2 {
		t.Fatalf("sweepLedger(limit 2): got %d, %v, want 2", n, err)
	}
	if n, err := s.sweepLedger(base, 100); err != nil || n != 1 {
		t.Fatalf("sweepLedger: got %d, %v, want 1", n, err)
	}
	if n, err := s.sweepLedger(base, 100); err != nil || n != 0 {
		t.Fatalf("sweepLedger again: got %d, %v, want 0", n, err)
	}
	for _, tc := range tests {
		_, err := s.get(ledgerKey(nil, tc.key), nil)
		if gone := err != nil; gone != (tc.key != "live/1") {
			t.Fatalf("ledger row %q: got gone=%v (%v)", tc.key, gone, err)
		}
	}
	// A swept key is new again; the live one is still taken.
	for key, want := range map[string]bool{"old/1": true, "live/1": false} {
		if first, err := s.MarkPushed(ctx, key, time.Hour); err != nil || first != want {
			t.Fatalf("MarkPushed(%q) after sweep: got %v, %v, want %v", key, first, err, want)
		}
	}
}
