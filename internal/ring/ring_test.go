package ring

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestOwnerBasics(t *testing.T) {
	if got := Owner("alice", nil); got != "" {
		t.Fatalf("empty ring: got %q, want \"\"", got)
	}
	if got := Owner("alice", []string{"n1"}); got != "n1" {
		t.Fatalf("one member: got %q, want n1", got)
	}
	a := []string{"n1", "n2", "n3"}
	b := []string{"n3", "n1", "n2"}
	for i := range 1000 {
		k := fmt.Sprintf("user-%d", i)
		if Owner(k, a) != Owner(k, b) {
			t.Fatalf("%s: owner depends on member order", k)
		}
	}
}

// TestOwnerSpreadAndStability checks the two properties routing needs:
// keys spread evenly, and removing a member moves only that member's keys.
func TestOwnerSpreadAndStability(t *testing.T) {
	members := []string{"logic-1", "logic-2", "logic-3", "logic-4"}
	const keys = 40000
	count := map[string]int{}
	owner := make([]string, keys)
	for i := range keys {
		owner[i] = Owner(fmt.Sprintf("chat-%d", i), members)
		count[owner[i]]++
	}
	want := float64(keys) / float64(len(members))
	for _, m := range members {
		if dev := math.Abs(float64(count[m])-want) / want; dev > 0.05 {
			t.Errorf("%s owns %d keys, want %.0f ±5%%", m, count[m], want)
		}
	}
	rest := slices.DeleteFunc(slices.Clone(members), func(m string) bool { return m == "logic-2" })
	for i := range keys {
		got := Owner(fmt.Sprintf("chat-%d", i), rest)
		if owner[i] != "logic-2" && got != owner[i] {
			t.Fatalf("chat-%d moved from %s to %s when logic-2 left", i, owner[i], got)
		}
	}
}

func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{2, 8, 32} {
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("logic-%d", i)
		}
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = Owner("dm:alice:bob", members)
			}
		})
	}
}
