package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Result is the outcome of one run. Latencies are in milliseconds.
type Result struct {
	Mode        string  `json:"mode"`
	Conns       int     `json:"conns"`
	Streams     int     `json:"streams"` // senders that ran (pairs, group) or chats (population)
	Fanout      int     `json:"fanout"`  // receivers per message (pairs, group)
	TargetRate  float64 `json:"target_rate"`
	WarmupSec   float64 `json:"warmup_s"`
	DurationSec float64 `json:"duration_s"`
	SetupSec    float64 `json:"setup_s"` // connecting (and creating groups)

	Sent         int64            `json:"sent"`         // messages sent (written, or queued while reconnecting), whole run
	Acked        int64            `json:"acked"`        // sent frames received
	Delivered    int64            `json:"delivered"`    // msg frames received (first copies), offline deliveries included
	SentRate     float64          `json:"sent_rate"`    // sends due in the window / duration
	DeliverRate  float64          `json:"deliver_rate"` // deliveries of window messages / duration
	Lost         int64            `json:"lost"`         // acked but never delivered within the grace period (per recipient)
	Unacked      int64            `json:"unacked"`      // sent but no sent frame (errors included)
	Duplicates   int64            `json:"duplicates"`   // one send delivered under two different (chat, seq): stored twice
	DupAcks      int64            `json:"dup_acks"`     // sent frames received twice
	OutOfOrder   int64            `json:"out_of_order"` // first copies of a (chat, seq) below a seq of the chat already received
	Retransmits  int64            `json:"retransmits"`  // msg frames for a (chat, seq) already received (server resends; dropped)
	Backlog      int64            `json:"backlog"`      // msg frames received before the first synced (history of a reused user prefix)
	AcksSent     int64            `json:"acks_sent"`    // ack frames written
	ErrorsByKind map[string]int64 `json:"errors"`

	Deliver Summary `json:"send_to_deliver"` // due time -> recipient's msg frame (recipient online)
	Ack     Summary `json:"send_to_sent"`    // due time -> sender's sent frame

	// Population mode.
	Population       *Population `json:"population,omitempty"`
	OfflineDelivered int64       `json:"offline_delivered,omitempty"` // delivered after the recipient came back
	Offline          *Summary    `json:"offline_delivery,omitempty"`  // due time -> msg frame after the reconnect
	Skipped          int64       `json:"skipped_offline,omitempty"`   // due while the sender was offline: not sent
	Resent           int64       `json:"resent,omitempty"`            // pending sends written again (reconnect, retryable error)
	Reconnects       int64       `json:"reconnects,omitempty"`
	ReconnectFails   int64       `json:"reconnect_failures,omitempty"`
	StormDrops       int64       `json:"storm_drops,omitempty"`

	// GenCPU is the generator's own CPU (user+system) over the measured
	// window.
	GenCPU GenCPU `json:"generator_cpu"`
	// ProcCPU: the watched processes (Config.WatchPIDs), in order.
	ProcCPU []ProcCPU `json:"process_cpu,omitempty"`

	Intervals []Interval `json:"intervals"`
}

// Population describes the model of a population run.
type Population struct {
	Users       int     `json:"users"`
	Chats       int     `json:"chats"`
	Groups      int     `json:"groups"`
	MeanGroup   float64 `json:"mean_group_size"`
	DailyTotal  float64 `json:"messages_per_day"` // the whole population's
	Compression float64 `json:"compression"`      // day seconds per run second
	ModelRate   float64 `json:"model_rate"`       // expected messages/s (the day's average)
	// With a day curve: the slice of the day the run plays, and the
	// model's rate at its start and its end (messages/s).
	DayFrom      string  `json:"day_from,omitempty"` // time of day, hh:mm
	DayTo        string  `json:"day_to,omitempty"`
	RateStart    float64 `json:"rate_start,omitempty"`
	RateEnd      float64 `json:"rate_end,omitempty"`
	OfflineShare float64 `json:"offline_share"`
	Top10Share   float64 `json:"top10_share"` // share of the daily messages sent by the top 10% of users
}

// GenCPU is the generator process's CPU use over the measured window.
type GenCPU struct {
	Seconds   float64 `json:"seconds"`    // user + system
	Cores     float64 `json:"cores"`      // seconds per second of window
	PerMsgUs  float64 `json:"us_per_msg"` // per message sent in the window
	PerDelvUs float64 `json:"us_per_delivery"`
}

// ProcCPU is a watched server process's CPU over the measured window.
type ProcCPU struct {
	Name      string  `json:"name"`
	PID       int     `json:"pid"`
	Seconds   float64 `json:"seconds"` // user + system
	Cores     float64 `json:"cores"`
	PerMsgUs  float64 `json:"us_per_msg"`
	PerDelvUs float64 `json:"us_per_delivery"`
}

// Interval is one row of the report over time. Rates are per second;
// latencies (ms) are of deliveries that arrived in the interval to online
// recipients.
type Interval struct {
	At               float64 `json:"t_s"` // end, seconds from the start of sending
	Phase            string  `json:"phase"`
	Sent             float64 `json:"sent_per_s"`
	Delivered        float64 `json:"delivered_per_s"`
	OfflineDelivered float64 `json:"offline_delivered_per_s"`
	P50              float64 `json:"p50_ms"`
	P99              float64 `json:"p99_ms"`
	P999             float64 `json:"p999_ms"`
	Max              float64 `json:"max_ms"`
	AckP99           float64 `json:"sent_p99_ms"`
	Errors           int64   `json:"errors"`
	Online           int64   `json:"online"`
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
		Intervals:   r.intervals,
	}
	if r.model == nil && len(live) > 0 {
		res.Fanout = len(live[0].members) - 1
	}
	for _, s := range live {
		n := int(s.sent.Load())
		if r.model != nil {
			n = len(s.senders)
		}
		s.mu.Lock()
		for k := range n {
			if !s.acked.has(k) {
				res.Unacked++
				continue
			}
			for mi, c := range s.members {
				if (r.model == nil && mi == 0) || (r.model != nil && int(s.senders[k]) == mi) {
					continue // the sender
				}
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
	if r.cpuEnd > 0 {
		res.GenCPU.Seconds = (r.cpuEnd - r.cpuStart).Seconds()
		res.GenCPU.Cores = res.GenCPU.Seconds / r.cfg.Duration.Seconds()
		if st.sentWin > 0 {
			res.GenCPU.PerMsgUs = res.GenCPU.Seconds * 1e6 / float64(st.sentWin)
		}
		if st.deliveredWin > 0 {
			res.GenCPU.PerDelvUs = res.GenCPU.Seconds * 1e6 / float64(st.deliveredWin)
		}
	}
	if len(r.watchEnd) == len(r.watch) && len(r.watchStart) == len(r.watch) {
		for i, w := range r.watch {
			pc := ProcCPU{Name: w.name, PID: w.pid, Seconds: (r.watchEnd[i] - r.watchStart[i]).Seconds()}
			pc.Cores = pc.Seconds / r.cfg.Duration.Seconds()
			if st.sentWin > 0 {
				pc.PerMsgUs = pc.Seconds * 1e6 / float64(st.sentWin)
			}
			if st.deliveredWin > 0 {
				pc.PerDelvUs = pc.Seconds * 1e6 / float64(st.deliveredWin)
			}
			res.ProcCPU = append(res.ProcCPU, pc)
		}
	}
	if m := r.model; m != nil {
		off := st.offline.Summarize()
		res.Offline = &off
		res.OfflineDelivered, res.Skipped, res.Resent = st.offDelivered, st.skipped, st.resent
		res.Reconnects, res.ReconnectFails, res.StormDrops = st.reconnects, st.reconnectFails, st.stormDrops
		res.TargetRate = m.rate
		res.Population = m.describe(r.cfg)
	}
	return res
}

// describe summarises the model.
func (m *model) describe(cfg Config) *Population {
	p := &Population{Users: len(m.daily), Chats: len(m.chats), Compression: m.compression, ModelRate: m.rate, OfflineShare: cfg.OfflineShare}
	if m.curve != nil {
		end := cfg.Warmup + cfg.Duration
		clock := func(at time.Duration) string {
			d := m.dayTime(at)
			return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60)
		}
		p.DayFrom, p.DayTo = clock(0), clock(end)
		p.RateStart, p.RateEnd = m.rate*m.activity(0), m.rate*m.activity(end)
	}
	var members int
	for _, c := range m.chats {
		if c.group {
			p.Groups++
			members += len(c.members)
		}
	}
	if p.Groups > 0 {
		p.MeanGroup = float64(members) / float64(p.Groups)
	}
	d := slices.Clone(m.daily)
	slices.Sort(d)
	var total, top float64
	for i, x := range d {
		total += x
		if i >= len(d)-len(d)/10 {
			top += x
		}
	}
	p.DailyTotal = total
	if total > 0 {
		p.Top10Share = top / total
	}
	return p
}

// measureCPU samples the process's CPU time at the window's start and end.
func (r *run) measureCPU(ctx context.Context) {
	for i, at := range []time.Time{r.winStart, r.winEnd} {
		t := time.NewTimer(time.Until(at))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		if i == 0 {
			r.cpuStart = processCPU()
			r.watchStart = watchCPU(r.watch)
		} else {
			r.cpuEnd = processCPU()
			r.watchEnd = watchCPU(r.watch)
		}
	}
}

// processCPU returns the user+system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// progress records one Interval every ReportInterval, printing it to w
// (when not nil), until ctx is done.
func (r *run) progress(ctx context.Context, w io.Writer) {
	tick := time.NewTicker(r.cfg.ReportInterval)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			iv := r.st.takeInterval()
			sec := now.Sub(last).Seconds()
			last = now
			phase := "warmup"
			if !now.Before(r.winStart) {
				phase = "measure"
			}
			if !now.Before(r.winEnd) {
				phase = "drain"
			}
			if now.Before(r.t0) {
				phase = "setup"
			}
			d, a := iv.deliver.Summarize(), iv.ack.Summarize()
			row := Interval{
				At: now.Sub(r.t0).Seconds(), Phase: phase,
				Sent: float64(iv.sent) / sec, Delivered: float64(iv.delivered) / sec, OfflineDelivered: float64(iv.offDelivered) / sec,
				P50: d.P50, P99: d.P99, P999: d.P999, Max: d.Max, AckP99: a.P99, Errors: iv.errs,
			}
			if r.model != nil {
				row.Online = r.online.Load()
			}
			r.intervals = append(r.intervals, row)
			if w == nil {
				continue
			}
			fmt.Fprintf(w, "%6.1fs %-7s sent %6.0f/s delivered %6.0f/s deliver p50 %7.2fms p99 %8.2fms p99.9 %8.2fms | sent p99 %8.2fms | errors %d",
				row.At, phase, row.Sent, row.Delivered, row.P50, row.P99, row.P999, row.AckP99, row.Errors)
			if r.model != nil {
				fmt.Fprintf(w, " | offline-delivered %5.0f/s online %d", row.OfflineDelivered, row.Online)
			}
			fmt.Fprintln(w)
		}
	}
}

// WriteText writes a human-readable report (markdown tables) to w: the
// summary, latencies, errors and the report over time.
func (res *Result) WriteText(w io.Writer) error {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	if pop := res.Population; pop != nil {
		p("## loadtest population: %d users, %d chats (%d groups, mean size %.1f), model %.0f msg/s (a day compressed %.0fx), %.0fs (+%.0fs warmup)\n\n",
			pop.Users, pop.Chats, pop.Groups, pop.MeanGroup, pop.ModelRate, pop.Compression, res.DurationSec, res.WarmupSec)
		if pop.DayFrom != "" {
			p("Day curve: the run plays %s to %s of the users' day; the model's rate goes from %.0f to %.0f msg/s (the day's average is %.0f).\n\n",
				pop.DayFrom, pop.DayTo, pop.RateStart, pop.RateEnd, pop.ModelRate)
		}
	} else {
		p("## loadtest %s: %d conns, %d senders x %d recipients, target %.0f msg/s, %.0fs (+%.0fs warmup)\n\n",
			res.Mode, res.Conns, res.Streams, res.Fanout, res.TargetRate, res.DurationSec, res.WarmupSec)
	}
	p("| metric | value |\n|---|---|\n")
	p("| setup (connect, sync%s) | %.2f s |\n", map[bool]string{true: ", create groups", false: ""}[res.Mode != ModePairs], res.SetupSec)
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
	if pop := res.Population; pop != nil {
		p("| messages per day (all users) / top 10%% users' share | %.0f / %.0f%% |\n", pop.DailyTotal, 100*pop.Top10Share)
		p("| delivered after the recipient came back (offline) | %d |\n", res.OfflineDelivered)
		p("| skipped (sender offline when due) | %d |\n", res.Skipped)
		p("| resent (after a reconnect or retryable error) | %d |\n", res.Resent)
		p("| reconnects / failed attempts | %d / %d |\n", res.Reconnects, res.ReconnectFails)
		if res.StormDrops > 0 {
			p("| reconnect storm: connections dropped | %d |\n", res.StormDrops)
		}
	}
	if c := res.GenCPU; c.Seconds > 0 {
		p("| generator CPU (window) | %.2f cores, %.1f µs/msg sent, %.1f µs/delivery |\n", c.Cores, c.PerMsgUs, c.PerDelvUs)
	}
	for _, c := range res.ProcCPU {
		p("| %s CPU (pid %d, window) | %.2f cores, %.1f µs/msg sent, %.1f µs/delivery |\n", c.Name, c.PID, c.Cores, c.PerMsgUs, c.PerDelvUs)
	}
	p("\n")
	p("| latency (ms) | count | p50 | p90 | p99 | p99.9 | max | mean |\n|---|---|---|---|---|---|---|---|\n")
	rows := []struct {
		name string
		s    Summary
	}{{"send→deliver", res.Deliver}, {"send→sent", res.Ack}}
	if res.Offline != nil {
		rows = append(rows, struct {
			name string
			s    Summary
		}{"send→deliver, offline recipient", *res.Offline})
	}
	for _, row := range rows {
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
	if len(res.Intervals) > 0 {
		p("\n### over time\n\n| t (s) | phase | sent/s | delivered/s | offline delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | sent p99 ms | errors | online |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, iv := range res.Intervals {
			p("| %.1f | %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %d |\n",
				iv.At, iv.Phase, iv.Sent, iv.Delivered, iv.OfflineDelivered, iv.P50, iv.P99, iv.P999, iv.Max, iv.AckP99, iv.Errors, iv.Online)
		}
	}
	return nil
}

// watched is a server process named in Config.WatchPIDs.
type watched struct {
	name string
	pid  int
}

// parseWatch parses "name=pid,name=pid".
func parseWatch(s string) ([]watched, error) {
	var out []watched
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, p, ok := strings.Cut(f, "=")
		pid, err := strconv.Atoi(p)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, fmt.Errorf("%q is not name=pid", f)
		}
		out = append(out, watched{name, pid})
	}
	return out, nil
}

// watchCPU returns each watched process's user+system CPU time (0 when it
// cannot be read).
func watchCPU(ws []watched) []time.Duration {
	out := make([]time.Duration, len(ws))
	for i, w := range ws {
		out[i] = procStatCPU(w.pid)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times on Linux (100
// on every architecture Go runs Linux on).
const clockTicks = 100

// procStatCPU reads utime+stime (fields 14 and 15) of /proc/PID/stat.
func procStatCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count fields after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * time.Second / clockTicks
}
