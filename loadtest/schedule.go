package loadtest

import "time"

// Schedule is the open-loop send plan of one sender: message k is due at
// Start + k*Interval, whatever happened to earlier messages. Latency is
// measured from that due time, so a sender that falls behind (a blocked
// write, a slow server) shows up as latency instead of silently lowering
// the offered rate (coordinated omission).
type Schedule struct {
	Start    time.Time
	Interval time.Duration
}

// At returns the due time of message k.
func (s Schedule) At(k int) time.Time { return s.Start.Add(time.Duration(k) * s.Interval) }

// Count returns how many messages are due strictly before end.
func (s Schedule) Count(end time.Time) int {
	if !s.Start.Before(end) || s.Interval <= 0 {
		return 0
	}
	d := end.Sub(s.Start)
	n := int(d / s.Interval)
	if s.At(n).Before(end) {
		n++
	}
	return n
}

// Index returns the k whose due time is exactly at, or -1 when at is not
// on the schedule.
func (s Schedule) Index(at time.Time) int {
	if s.Interval <= 0 || at.Before(s.Start) {
		return -1
	}
	d := at.Sub(s.Start)
	if d%s.Interval != 0 {
		return -1
	}
	return int(d / s.Interval)
}

// Plan spreads a total open-loop rate (messages per second) over n senders
// starting at t0: each sender gets rate/n, and sender i is shifted by
// i/n of the interval so the aggregate stream is evenly spaced rather than
// n simultaneous bursts. It returns nil when n or rate is not positive.
func Plan(t0 time.Time, n int, rate float64) []Schedule {
	if n <= 0 || rate <= 0 {
		return nil
	}
	interval := time.Duration(float64(n) * float64(time.Second) / rate)
	if interval <= 0 {
		interval = 1
	}
	out := make([]Schedule, n)
	for i := range out {
		phase := time.Duration(int64(interval) * int64(i) / int64(n))
		out[i] = Schedule{Start: t0.Add(phase), Interval: interval}
	}
	return out
}
