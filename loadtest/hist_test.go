package loadtest

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketOf(t *testing.T) {
	tests := []struct {
		v    int64
		want int
	}{
		{0, 0}, {1, 1}, {255, 255}, {256, 256}, {257, 256}, {258, 257},
		{511, 383}, {512, 384}, {1023, 511}, {1024, 512},
	}
	for _, tt := range tests {
		if got := bucketOf(tt.v); got != tt.want {
			t.Errorf("bucketOf(%d): got %d, want %d", tt.v, got, tt.want)
		}
	}
	// Every bucket's bounds map back to it, and buckets tile the line.
	prevHi := int64(-1)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d: got lo %d, want %d", i, lo, prevHi+1)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: bounds map to %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if hi == math.MaxInt64 {
			break
		}
		prevHi = hi
	}
	if got := bucketOf(math.MaxInt64); got >= histBuckets {
		t.Fatalf("bucketOf(MaxInt64): got %d, want < %d", got, histBuckets)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		q      float64
		want   int64
	}{
		{"empty", nil, 0.5, 0},
		{"single", []int64{42}, 0.99, 42},
		{"exact small", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.5, 5},
		{"exact small p90", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9},
		{"max", []int64{1, 2, 1000000}, 1, 1000000},
		{"negative is zero", []int64{-5}, 0.5, 0},
		{"q0 is min", []int64{7, 9000}, 0, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			if got := h.Quantile(tt.q); got != tt.want {
				t.Errorf("Quantile(%v): got %d, want %d", tt.q, got, tt.want)
			}
		})
	}
}

// TestHistogramError checks the relative error bound against exact
// quantiles of a wide random sample.
func TestHistogramError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(math.Exp(r.Float64() * 25)) // 1 ns .. ~72 s, log-uniform
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/subCount {
			t.Errorf("q=%v: got %d, want %d within %.2f%% (off by %.3f%%)", q, got, exact, 100.0/subCount, rel*100)
		}
	}
	if h.Count() != uint64(len(vals)) || h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
		t.Errorf("got count %d max %d min %d, want %d %d %d", h.Count(), h.Max(), h.Min(), len(vals), vals[len(vals)-1], vals[0])
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := int64(1); i <= 1000; i++ {
		if i%2 == 0 {
			a.Record(i * 1000)
		} else {
			b.Record(i * 1000)
		}
		all.Record(i * 1000)
	}
	a.Merge(&b)
	if a.Summarize() != all.Summarize() {
		t.Errorf("got %+v, want %+v", a.Summarize(), all.Summarize())
	}
	a.Reset()
	if a.Count() != 0 || a.Quantile(0.5) != 0 {
		t.Errorf("after Reset: got count %d, want 0", a.Count())
	}
}
