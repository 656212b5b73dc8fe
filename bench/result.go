package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// ProcSnapshot is one server process's reading.
type ProcSnapshot struct {
	RSS      int64   `json:"rss_bytes"`           // VmRSS (0 without a PID)
	Anon     int64   `json:"rss_anon_bytes"`      // RssAnon: VmRSS without file pages (the binary)
	HeapIn   float64 `json:"heap_inuse_bytes"`    // go_memstats_heap_inuse_bytes
	HeapLive float64 `json:"heap_live_est_bytes"` // go_gc_heap_live_bytes: live heap at the last GC (older servers: go_memstats_next_gc_bytes / 2, right at GOGC=100)
	Stacks   float64 `json:"stack_inuse_bytes"`   // go_memstats_stack_inuse_bytes
	Gorout   float64 `json:"goroutines"`          // go_goroutines
	Conns    float64 `json:"conns"`               // parley_connsrv_connections_open (connsrv only)
}

// Snapshot is one reading of every server and of the host.
type Snapshot struct {
	Servers  []ProcSnapshot `json:"servers"`
	Sockstat Sockstat       `json:"sockstat"`      // kernel TCP sockets, whole host
	Slab     int64          `json:"slab_bytes"`    // /proc/meminfo Slab: kernel objects (sockets, files, epoll items), whole host
	MemAvail int64          `json:"mem_available"` // /proc/meminfo MemAvailable
	Time     time.Time      `json:"time"`
}

// ServerResult is one server's before and after readings.
type ServerResult struct {
	Server
	Before     ProcSnapshot `json:"before"`
	After      ProcSnapshot `json:"after"`
	HoldCPUSec float64      `json:"hold_cpu_s"` // user+system CPU during the hold
	RampCPUSec float64      `json:"ramp_cpu_s"` // user+system CPU from the first dial to the end of the ramp
	Nice       int          `json:"nice"`       // the process's nice value at the after reading
}

// Result is the outcome of a density run.
type Result struct {
	Target           int              `json:"target"`
	ClientProcs      int              `json:"client_procs"` // 0: clients ran in the bench process
	Established      int64            `json:"established"`  // reached hello (and synced)
	Held             int64            `json:"held"`         // still open at the after reading
	RampSec          float64          `json:"ramp_s"`       // first dial to last establishment
	ConnsPerSec      float64          `json:"conns_per_s"`  // established / ramp
	PeakConnsPerSec  float64          `json:"peak_conns_per_s"`
	HoldSec          float64          `json:"hold_s"`
	HeartbeatSec     float64          `json:"heartbeat_s"`   // server's heartbeat interval (0: unknown)
	PingsInHold      int64            `json:"pings_in_hold"` // server pings the clients answered during the hold
	StoppedBy        string           `json:"stopped_by,omitempty"`
	ErrorsByKind     map[string]int64 `json:"errors"`
	Before           Snapshot         `json:"before"`
	After            Snapshot         `json:"after"`
	Servers          []ServerResult   `json:"servers"`
	RampClientCPUSec float64          `json:"ramp_client_cpu_s"` // all client processes' CPU until the end of the ramp
	ClientRSS        int64            `json:"client_rss_bytes"`  // all client processes together, after
	ClientHeap       int64            `json:"client_heap_bytes"` // their Go heap and stacks in use, after
	Notes            []string         `json:"notes,omitempty"`
}

// PerConn returns (after - before) / held, or 0 without held conns.
func (r *Result) PerConn(before, after float64) float64 {
	if r.Held <= 0 {
		return 0
	}
	return (after - before) / float64(r.Held)
}

// RoleTotals sums the servers of one role ("" = all).
type RoleTotals struct {
	Procs                 int
	RSSBefore, RSSAfter   float64
	AnonBefore, AnonAfter float64
	HeapBefore, HeapAfter float64
	LiveBefore, LiveAfter float64
	CPUSec                float64
	RampCPUSec            float64
}

// Totals sums the servers whose role is role ("" = every server).
func (r *Result) Totals(role string) RoleTotals {
	var t RoleTotals
	for _, s := range r.Servers {
		if role != "" && s.Role != role {
			continue
		}
		t.Procs++
		t.RSSBefore += float64(s.Before.RSS)
		t.RSSAfter += float64(s.After.RSS)
		t.AnonBefore += float64(s.Before.Anon)
		t.AnonAfter += float64(s.After.Anon)
		t.HeapBefore += s.Before.HeapIn
		t.HeapAfter += s.After.HeapIn
		t.LiveBefore += s.Before.HeapLive
		t.LiveAfter += s.After.HeapLive
		t.CPUSec += s.HoldCPUSec
		t.RampCPUSec += s.RampCPUSec
	}
	return t
}

// Rounds is how many heartbeat rounds the hold saw: pings answered per
// held connection.
func (r *Result) Rounds() float64 {
	if r.Held <= 0 {
		return 0
	}
	return float64(r.PingsInHold) / float64(r.Held)
}

// KernelPerConn is the host's Slab growth per held connection (both
// loopback ends: the client's socket and the server's).
func (r *Result) KernelPerConn() float64 {
	return r.PerConn(float64(r.Before.Slab), float64(r.After.Slab))
}

// roles lists the servers' roles in order of first appearance.
func (r *Result) roles() []string {
	var roles []string
	for _, s := range r.Servers {
		if !slices.Contains(roles, s.Role) {
			roles = append(roles, s.Role)
		}
	}
	return roles
}

// snapshot reads every server and the host; failures become notes.
func snapshot(ctx context.Context, servers []Server, notes *[]string) Snapshot {
	s := Snapshot{Time: time.Now(), Servers: make([]ProcSnapshot, len(servers))}
	note := func(err error) {
		if !slices.Contains(*notes, err.Error()) {
			*notes = append(*notes, err.Error())
		}
	}
	for i, srv := range servers {
		p := &s.Servers[i]
		if srv.PID > 0 {
			rss, err := ReadRSS(srv.PID)
			if err != nil {
				note(err)
			}
			p.RSS = rss
			p.Anon, _ = ReadRssAnon(srv.PID)
		}
		if srv.MetricsURL != "" {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := ScrapeMetrics(sctx, srv.MetricsURL)
			cancel()
			if err != nil {
				note(err)
				continue
			}
			p.HeapIn = m["go_memstats_heap_inuse_bytes"]
			p.HeapLive = m["go_gc_heap_live_bytes"]
			if _, ok := m["go_gc_heap_live_bytes"]; !ok {
				// A server without it: estimate from the GC goal,
				// right only at the default GOGC=100.
				p.HeapLive = m["go_memstats_next_gc_bytes"] / 2
			}
			p.Stacks = m["go_memstats_stack_inuse_bytes"]
			p.Gorout = m["go_goroutines"]
			p.Conns = m["parley_connsrv_connections_open"]
		}
	}
	if st, err := ReadSockstat(); err != nil {
		note(err)
	} else {
		s.Sockstat = st
	}
	if mi, err := ReadMeminfo(); err != nil {
		note(err)
	} else {
		s.Slab, s.MemAvail = mi.Slab, mi.Available
	}
	return s
}

// WriteMarkdown writes the result as markdown tables.
func (r *Result) WriteMarkdown(w io.Writer) error {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	procs := "in the bench process"
	if r.ClientProcs > 0 {
		procs = fmt.Sprintf("in %d client processes", r.ClientProcs)
	}
	p("## bench: %d idle connections (%s) held %.0fs\n\n", r.Target, procs, r.HoldSec)
	if r.StoppedBy != "" {
		p("**stopped: %s**\n\n", r.StoppedBy)
	}
	p("| ramp-up | value |\n|---|---|\n")
	p("| established / target | %d / %d |\n", r.Established, r.Target)
	p("| held at the end | %d |\n", r.Held)
	p("| ramp time | %.2f s |\n", r.RampSec)
	p("| connections/s (mean over the ramp) | %.0f |\n", r.ConnsPerSec)
	p("| connections/s (best second) | %.0f |\n", r.PeakConnsPerSec)
	if r.Established > 0 {
		for _, role := range r.roles() {
			t := r.Totals(role)
			p("| %s CPU during the ramp | %.2f s (%.0f µs per connection) |\n", role, t.RampCPUSec, 1e6*t.RampCPUSec/float64(r.Established))
		}
		p("| client CPU during the ramp | %.2f s (%.0f µs per connection) |\n", r.RampClientCPUSec, 1e6*r.RampClientCPUSec/float64(r.Established))
	}
	p("\n")
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	p("| server cost | procs | before | after | per connection |\n|---|---|---|---|---|\n")
	roles := r.roles()
	for _, role := range roles {
		t := r.Totals(role)
		p("| %s RSS anonymous (RssAnon) | %d | %s | %s | %.0f B |\n", role, t.Procs, mib(t.AnonBefore), mib(t.AnonAfter), r.PerConn(t.AnonBefore, t.AnonAfter))
		p("| %s RSS with file pages (VmRSS) | %d | %s | %s | %.0f B |\n", role, t.Procs, mib(t.RSSBefore), mib(t.RSSAfter), r.PerConn(t.RSSBefore, t.RSSAfter))
		if t.HeapAfter > 0 {
			p("| %s Go heap in use | %d | %s | %s | %.0f B |\n", role, t.Procs, mib(t.HeapBefore), mib(t.HeapAfter), r.PerConn(t.HeapBefore, t.HeapAfter))
			p("| %s Go live heap at last GC (est.) | %d | %s | %s | %.0f B |\n", role, t.Procs, mib(t.LiveBefore), mib(t.LiveAfter), r.PerConn(t.LiveBefore, t.LiveAfter))
		}
	}
	p("| kernel slab, host (both ends of each loopback connection) | | %s | %s | %.0f B |\n", mib(float64(r.Before.Slab)), mib(float64(r.After.Slab)), r.KernelPerConn())
	p("| kernel TCP buffer memory, host (sockstat mem) | | %s | %s | %.0f B |\n", mib(float64(r.Before.Sockstat.MemBytes())), mib(float64(r.After.Sockstat.MemBytes())),
		r.PerConn(float64(r.Before.Sockstat.MemBytes()), float64(r.After.Sockstat.MemBytes())))
	p("| TCP sockets in use, host | | %d | %d | %.2f |\n", r.Before.Sockstat.InUse, r.After.Sockstat.InUse,
		r.PerConn(float64(r.Before.Sockstat.InUse), float64(r.After.Sockstat.InUse)))
	p("| client RSS anonymous (all client processes), after | %d | | %s | %.0f B |\n", max(1, r.ClientProcs), mib(float64(r.ClientRSS)), r.PerConn(0, float64(r.ClientRSS)))
	p("| client Go heap + stacks in use, after | %d | | %s | %.0f B |\n\n", max(1, r.ClientProcs), mib(float64(r.ClientHeap)), r.PerConn(0, float64(r.ClientHeap)))
	p("Per connection = (after − before) / held. RssAnon is the process's private memory; VmRSS adds the pages of the binary it has touched, which every process running the same binary shares.\n\n")
	p("| server CPU during the hold (%.0fs) | CPU s | share of one core | per heartbeat round |\n|---|---|---|---|\n", r.HoldSec)
	rounds := r.Rounds()
	for _, role := range roles {
		t := r.Totals(role)
		perRound := "—"
		if rounds > 0.5 {
			perRound = fmt.Sprintf("%.0f ms (%.2f µs per connection)", 1000*t.CPUSec/rounds, 1e6*t.CPUSec/rounds/float64(r.Held))
		}
		p("| %s | %.2f | %.1f%% | %s |\n", role, t.CPUSec, 100*t.CPUSec/max(r.HoldSec, 1e-9), perRound)
	}
	hb := "unknown"
	if r.HeartbeatSec > 0 {
		hb = fmt.Sprintf("%.0fs", r.HeartbeatSec)
	}
	p("\nHeartbeat interval %s; pings answered during the hold: %d (%.2f rounds).\n", hb, r.PingsInHold, rounds)
	if len(r.Servers) > 1 {
		p("\n| process | role | pid | conns | RssAnon after | RssAnon per conn | heap per conn | hold CPU s |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Servers {
			per, heap := "—", "—"
			if s.After.Conns > 0 {
				per = fmt.Sprintf("%.0f B", float64(s.After.Anon-s.Before.Anon)/s.After.Conns)
				heap = fmt.Sprintf("%.0f B", (s.After.HeapIn-s.Before.HeapIn)/s.After.Conns)
			}
			p("| %s | %s | %d | %.0f | %s | %s | %s | %.2f |\n", s.Name, s.Role, s.PID, s.After.Conns, mib(float64(s.After.Anon)), per, heap, s.HoldCPUSec)
		}
	}
	if len(r.ErrorsByKind) > 0 {
		p("\n| error | count |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(r.ErrorsByKind)) {
			p("| %s | %d |\n", k, r.ErrorsByKind[k])
		}
	} else {
		p("\nno errors\n")
	}
	for _, n := range r.Notes {
		p("\nnote: %s\n", n)
	}
	return nil
}
