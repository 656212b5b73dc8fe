package loadtest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Result is the outcome of one run. Latencies are in milliseconds.
type Result struct {
	Mode        string  `json:"mode"`
	Conns       int     `json:"conns"`
	Streams     int     `json:"streams"` // senders that ran
	Fanout      int     `json:"fanout"`  // receivers per message
	TargetRate  float64 `json:"target_rate"`
	WarmupSec   float64 `json:"warmup_s"`
	DurationSec float64 `json:"duration_s"`
	SetupSec    float64 `json:"setup_s"` // connecting (and creating groups)

	Sent         int64            `json:"sent"`         // sends written, whole run
	Acked        int64            `json:"acked"`        // sent frames received
	Delivered    int64            `json:"delivered"`    // msg frames received (first copies)
	SentRate     float64          `json:"sent_rate"`    // sends due in the window / duration
	DeliverRate  float64          `json:"deliver_rate"` // deliveries of window messages / duration
	Lost         int64            `json:"lost"`         // acked but never delivered within the grace period (per recipient)
	Unacked      int64            `json:"unacked"`      // written but no sent frame (errors included)
	Duplicates   int64            `json:"duplicates"`   // one send delivered under two different (chat, seq): stored twice
	DupAcks      int64            `json:"dup_acks"`     // sent frames received twice
	OutOfOrder   int64            `json:"out_of_order"` // first copies of a (chat, seq) below a seq of the chat already received
	Retransmits  int64            `json:"retransmits"`  // msg frames for a (chat, seq) already received (server resends; dropped)
	Backlog      int64            `json:"backlog"`      // msg frames received before synced (history of a reused user prefix)
	AcksSent     int64            `json:"acks_sent"`    // ack frames written
	ErrorsByKind map[string]int64 `json:"errors"`

	Deliver Summary `json:"send_to_deliver"` // due time -> recipient's msg frame
	Ack     Summary `json:"send_to_sent"`    // due time -> sender's sent frame
}

func (r *run) result(live []*stream, setup time.Duration) *Result {
	res := &Result{
		Mode:        r.cfg.Mode,
		Conns:       len(r.conns),
		Streams:     len(live),
		TargetRate:  r.cfg.Rate,
		WarmupSec:   r.cfg.Warmup.Seconds(),
		DurationSec: r.cfg.Duration.Seconds(),
		SetupSec:    setup.Seconds(),
	}
	if len(live) > 0 {
		res.Fanout = len(live[0].receivers)
	}
	for _, s := range live {
		n := int(s.sent.Load())
		s.mu.Lock()
		for k := range n {
			if !s.acked.has(k) {
				res.Unacked++
				continue
			}
			for _, c := range s.receivers {
				c.mu.Lock()
				rx := c.got[s.idx]
				if rx == nil || !rx.got.has(k) {
					res.Lost++
				}
				c.mu.Unlock()
			}
		}
		s.mu.Unlock()
	}
	st := &r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	res.Sent, res.Acked, res.Delivered = st.sent, st.acked, st.delivered
	res.Duplicates, res.DupAcks, res.OutOfOrder = st.dups, st.dupAcks, st.ooo
	res.Retransmits, res.Backlog, res.AcksSent = st.retransmits, st.backlog, st.acksSent
	res.SentRate = float64(st.sentWin) / r.cfg.Duration.Seconds()
	res.DeliverRate = float64(st.deliveredWin) / r.cfg.Duration.Seconds()
	res.ErrorsByKind = maps.Clone(st.errs)
	res.Deliver = st.deliver.Summarize()
	res.Ack = st.ack.Summarize()
	return res
}

// WriteText writes a human-readable summary (markdown tables) to w.
func (res *Result) WriteText(w io.Writer) error {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	p("## loadtest %s: %d conns, %d senders x %d recipients, target %.0f msg/s, %.0fs (+%.0fs warmup)\n\n",
		res.Mode, res.Conns, res.Streams, res.Fanout, res.TargetRate, res.DurationSec, res.WarmupSec)
	p("| metric | value |\n|---|---|\n")
	p("| setup (connect, sync%s) | %.2f s |\n", map[bool]string{true: ", create groups", false: ""}[res.Mode == ModeGroup], res.SetupSec)
	p("| offered sends (window) | %.0f msg/s |\n", res.SentRate)
	p("| delivered (window) | %.0f msg/s |\n", res.DeliverRate)
	p("| sent / acked / delivered (whole run) | %d / %d / %d |\n", res.Sent, res.Acked, res.Delivered)
	p("| lost (acked, not delivered) | %d |\n", res.Lost)
	p("| unacked | %d |\n", res.Unacked)
	p("| duplicates / dup acks / out of order | %d / %d / %d |\n", res.Duplicates, res.DupAcks, res.OutOfOrder)
	p("| retransmits received (dropped by (chat, seq)) | %d |\n", res.Retransmits)
	p("| acks sent | %d |\n", res.AcksSent)
	if res.Backlog > 0 {
		p("| backlog before synced (not counted) | %d |\n", res.Backlog)
	}
	p("\n")
	p("| latency (ms) | count | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		s    Summary
	}{{"send→deliver", res.Deliver}, {"send→sent", res.Ack}} {
		s := row.s
		p("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", row.name, s.Count, s.P50, s.P90, s.P99, s.P999, s.Max, s.Mean)
	}
	if len(res.ErrorsByKind) > 0 {
		p("\n| error | count |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(res.ErrorsByKind)) {
			p("| %s | %d |\n", k, res.ErrorsByKind[k])
		}
	} else {
		p("\nno errors\n")
	}
	return nil
}
