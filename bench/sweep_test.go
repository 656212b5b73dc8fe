package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSweepReport(t *testing.T) {
	mk := func(n int, held int64, hold float64, stopped string) SweepPoint {
		r := &Result{Target: n, Held: held, HoldSec: hold, ConnsPerSec: 1000, PingsInHold: held, StoppedBy: stopped,
			Before: Snapshot{Slab: 1 << 20}, After: Snapshot{Slab: 1<<20 + held*10000}}
		r.Servers = []ServerResult{
			{Server: Server{Role: "connsrv"}, Before: ProcSnapshot{Anon: 1 << 20}, After: ProcSnapshot{Anon: 1<<20 + held*1200, HeapIn: float64(held * 900)}, HoldCPUSec: float64(held) * 20e-6},
			{Server: Server{Role: "logic"}, Before: ProcSnapshot{Anon: 1 << 20}, After: ProcSnapshot{Anon: 1<<20 + held*700}},
		}
		return SweepPoint{Conns: n, Result: r}
	}
	pts := []SweepPoint{mk(10000, 10000, 35, ""), mk(100000, 100000, 35, ""), mk(1000000, 250000, 0.01, "errors: x")}
	var b strings.Builder
	WriteSweepMarkdown(&b, pts)
	md := b.String()
	for _, want := range []string{"| 10000 | 10000 | 1 | 1000 | 1200 B | 900 B | 700 B | 10000 B |", "| 20.00 µs |", "| — | 20.00 µs | 0 | errors: x |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	svg := SweepSVG(pts)
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 5 || !strings.Contains(svg, "1M") {
		t.Errorf("unexpected svg:\n%s", svg)
	}
	if _, err := json.Marshal(pts); err != nil {
		t.Fatal(err)
	}
}
