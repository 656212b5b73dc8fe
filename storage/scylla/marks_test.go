package scylla

import (
	"fmt"
	"slices"
	"testing"
)

// TestCutMarks: batches hold whole partitions, at most marksPerBatch of
// them and marksBatchBytes in all; a partition above the byte budget goes
// alone (Cassandra refuses a multi-partition batch above 50 KiB).
func TestCutMarks(t *testing.T) {
	// stmts makes n partitions of rows statements of size bytes each.
	stmts := func(spec ...[3]int) []markStmt { // {partitions, rows, size}
		var out []markStmt
		p := 0
		for _, s := range spec {
			for range s[0] {
				for range s[1] {
					out = append(out, markStmt{pk: fmt.Sprintf("p%04d", p), size: s[2]})
				}
				p++
			}
		}
		return out
	}
	tests := []struct {
		name string
		in   []markStmt
		want []int
	}{
		{"none", nil, nil},
		{"one", stmts([3]int{1, 1, 50}), []int{0}},
		{"ten partitions, one batch", stmts([3]int{10, 2, 50}), []int{0}},
		{"eleven partitions, two batches", stmts([3]int{11, 1, 50}), []int{0, 10}},
		{"bytes cut before partitions", stmts([3]int{6, 1, 1000}), []int{0, 4}},
		{"a big partition alone", stmts([3]int{1, 1, 50}, [3]int{1, 2000, 50}, [3]int{10, 1, 50}), []int{0, 1, 2001}},
		{"a big partition first", stmts([3]int{1, 200, 50}, [3]int{3, 1, 50}), []int{0, 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := cutMarks(tc.in)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("cutMarks: got %v, want %v", got, tc.want)
			}
			// Never a partition split over two batches.
			for _, c := range got {
				if c > 0 && tc.in[c].pk == tc.in[c-1].pk {
					t.Fatalf("cut at %d splits partition %s", c, tc.in[c].pk)
				}
			}
		})
	}
}
