package loadtest

import (
	"slices"
	"testing"
	"time"
)

func TestScheduleCount(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		s    Schedule
		end  time.Time
		want int
	}{
		{"before start", Schedule{t0, time.Second}, t0.Add(-time.Second), 0},
		{"at start", Schedule{t0, time.Second}, t0, 0},
		{"just after start", Schedule{t0, time.Second}, t0.Add(1), 1},
		{"exact multiple excludes end", Schedule{t0, time.Second}, t0.Add(3 * time.Second), 3},
		{"between", Schedule{t0, time.Second}, t0.Add(3*time.Second + 1), 4},
		{"zero interval", Schedule{t0, 0}, t0.Add(time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.s.Count(tt.end); got != tt.want {
				t.Errorf("Count: got %d, want %d", got, tt.want)
			}
			for k := 0; k < tt.want; k++ {
				if !tt.s.At(k).Before(tt.end) {
					t.Errorf("At(%d) = %v is not before end %v", k, tt.s.At(k), tt.end)
				}
			}
			if tt.want > 0 && tt.s.At(tt.want).Before(tt.end) {
				t.Errorf("At(%d) is before end: Count too small", tt.want)
			}
		})
	}
}

func TestScheduleIndex(t *testing.T) {
	s := Schedule{time.Unix(0, 0), 250 * time.Millisecond}
	for k := range 10 {
		if got := s.Index(s.At(k)); got != k {
			t.Errorf("Index(At(%d)): got %d, want %d", k, got, k)
		}
	}
	if got := s.Index(s.At(3).Add(1)); got != -1 {
		t.Errorf("Index(off schedule): got %d, want -1", got)
	}
}

func TestPlan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name         string
		n            int
		rate         float64
		window       time.Duration
		wantInterval time.Duration
		wantTotal    int
	}{
		{"1000 senders 2000/s", 1000, 2000, 10 * time.Second, 500 * time.Millisecond, 20000},
		{"one sender", 1, 100, time.Second, 10 * time.Millisecond, 100},
		{"more senders than rate", 10, 5, 4 * time.Second, 2 * time.Second, 20},
		{"none", 0, 100, time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Plan(t0, tt.n, tt.rate)
			if len(plan) != tt.n {
				t.Fatalf("got %d schedules, want %d", len(plan), tt.n)
			}
			total := 0
			var due []time.Time
			for _, s := range plan {
				if s.Interval != tt.wantInterval {
					t.Errorf("got interval %v, want %v", s.Interval, tt.wantInterval)
				}
				c := s.Count(t0.Add(tt.window))
				total += c
				for k := range c {
					due = append(due, s.At(k))
				}
			}
			if total != tt.wantTotal {
				t.Errorf("got %d messages in %v, want %d", total, tt.window, tt.wantTotal)
			}
			// The aggregate is evenly spaced: the largest gap between
			// consecutive due times is at most one aggregate interval (+1ns rounding).
			slices.SortFunc(due, func(a, b time.Time) int { return a.Compare(b) })
			if len(due) > 1 {
				want := time.Duration(float64(time.Second)/tt.rate) + 1
				for i := 1; i < len(due); i++ {
					if gap := due[i].Sub(due[i-1]); gap > want {
						t.Fatalf("gap %d: got %v, want at most %v", i, gap, want)
					}
				}
			}
		})
	}
}
