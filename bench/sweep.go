package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SweepConfig configures a sweep: one density run per point, each against
// freshly started servers so every "before" reading is a clean process.
type SweepConfig struct {
	Points    []int         // connection counts, ascending
	PerServer int           // connections per connsrv process; default 16000
	Base      Config        // URL and Servers are filled in per point
	Servers   ServerSpec    // Connsrvs and Dir are filled in per point
	OutDir    string        // report.md, report.json and density.svg go here
	Cooldown  time.Duration // pause between points (TIME_WAIT, scavenging); default 5s
}

// SweepPoint is one point's result.
type SweepPoint struct {
	Conns  int     `json:"conns"`
	Result *Result `json:"result"`
	Err    string  `json:"error,omitempty"`
}

// Sweep runs every point until one stops short (memory floor, errors or
// fewer than 99% established); the report is rewritten after each point.
func Sweep(ctx context.Context, sc SweepConfig, tok TokenFunc, log *slog.Logger, progress io.Writer) ([]SweepPoint, error) {
	if sc.PerServer <= 0 {
		sc.PerServer = 16000
	}
	if sc.Cooldown <= 0 {
		sc.Cooldown = 5 * time.Second
	}
	if err := os.MkdirAll(sc.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", sc.OutDir, err)
	}
	var points []SweepPoint
	for i, n := range sc.Points {
		if i > 0 {
			select {
			case <-time.After(sc.Cooldown):
			case <-ctx.Done():
				return points, ctx.Err()
			}
		}
		spec := sc.Servers
		spec.Connsrvs = (n + sc.PerServer - 1) / sc.PerServer
		spec.Dir = filepath.Join(sc.OutDir, fmt.Sprintf("servers-%d", n))
		if progress != nil {
			fmt.Fprintf(progress, "== %d connections: starting logic + %d connsrv processes on port %d\n", n, spec.Connsrvs, spec.Port)
		}
		pt := SweepPoint{Conns: n}
		set, err := StartServers(ctx, spec, log)
		if err != nil {
			pt.Err = err.Error()
			points = append(points, pt)
			_ = writeSweep(sc, points)
			return points, err
		}
		cfg := sc.Base
		cfg.Conns = n
		cfg.URL = set.URL
		cfg.Servers = set.Servers
		cfg.SourceNet = 16 + i%200 // fresh source addresses: no TIME_WAIT from the last point
		res, err := Run(ctx, cfg, tok, log, progress)
		set.Stop()
		pt.Result = res
		if err != nil {
			pt.Err = err.Error()
		}
		points = append(points, pt)
		if werr := writeSweep(sc, points); werr != nil {
			return points, werr
		}
		if progress != nil && res != nil && len(sc.Points) > 1 {
			_ = res.WriteMarkdown(progress)
		}
		if err != nil {
			return points, err
		}
		if res.StoppedBy != "" || res.Held < int64(float64(n)*0.99) {
			break
		}
	}
	return points, nil
}

// writeSweep writes report.md, report.json and density.svg.
func writeSweep(sc SweepConfig, points []SweepPoint) error {
	j, err := json.MarshalIndent(points, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode sweep: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sc.OutDir, "report.json"), j, 0o644); err != nil {
		return fmt.Errorf("cannot write report: %w", err)
	}
	var md strings.Builder
	WriteSweepMarkdown(&md, points)
	if err := os.WriteFile(filepath.Join(sc.OutDir, "report.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("cannot write report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(sc.OutDir, "density.svg"), []byte(SweepSVG(points)), 0o644); err != nil {
		return fmt.Errorf("cannot write plot: %w", err)
	}
	return nil
}

// sweepRow is the figures of one point used by the table and the plot.
type sweepRow struct {
	n, held                         float64
	connsrvRSS, connsrvHeap, logic  float64 // bytes per connection
	kernel, client                  float64 // bytes per connection
	cpuShare, cpuRoundUS, connsPerS float64
	procs                           int
}

func rowOf(p SweepPoint) (sweepRow, bool) {
	r := p.Result
	if r == nil || r.Held <= 0 {
		return sweepRow{}, false
	}
	cs, lg := r.Totals("connsrv"), r.Totals("logic")
	row := sweepRow{
		n: float64(p.Conns), held: float64(r.Held), procs: cs.Procs,
		connsrvRSS: r.PerConn(cs.AnonBefore, cs.AnonAfter), connsrvHeap: r.PerConn(cs.HeapBefore, cs.HeapAfter),
		logic: r.PerConn(lg.AnonBefore, lg.AnonAfter), kernel: r.KernelPerConn(),
		client: r.PerConn(0, float64(r.ClientRSS)), connsPerS: r.ConnsPerSec,
	}
	if r.HoldSec >= 1 {
		row.cpuShare = 100 * cs.CPUSec / r.HoldSec
	}
	if rounds := r.Rounds(); rounds > 0.5 {
		row.cpuRoundUS = 1e6 * cs.CPUSec / rounds / float64(r.Held)
	}
	return row, true
}

// WriteSweepMarkdown writes the sweep as one markdown table.
func WriteSweepMarkdown(w io.Writer, points []SweepPoint) {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	p("| target | held | connsrv procs | conns/s (ramp) | connsrv RssAnon/conn | connsrv heap/conn | logic RssAnon/conn | kernel slab/conn (both ends) | client RssAnon/conn | connsrv CPU at idle (%% of a core) | connsrv CPU per heartbeat round per conn | errors | stopped |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, pt := range points {
		row, ok := rowOf(pt)
		if !ok {
			p("| %d | 0 | | | | | | | | | | | %s |\n", pt.Conns, pt.Err)
			continue
		}
		r := pt.Result
		var nerr int64
		for _, v := range r.ErrorsByKind {
			nerr += v
		}
		round := "—"
		if row.cpuRoundUS > 0 {
			round = fmt.Sprintf("%.2f µs", row.cpuRoundUS)
		}
		stopped := r.StoppedBy
		if pt.Err != "" {
			stopped = strings.TrimSpace(stopped + " " + pt.Err)
		}
		share := "—"
		if r.HoldSec >= 1 {
			share = fmt.Sprintf("%.1f%%", row.cpuShare)
		}
		p("| %d | %d | %d | %.0f | %.0f B | %.0f B | %.0f B | %.0f B | %.0f B | %s | %s | %d | %s |\n",
			pt.Conns, r.Held, row.procs, row.connsPerS, row.connsrvRSS, row.connsrvHeap, row.logic, row.kernel, row.client, share, round, nerr, stopped)
	}
}

// SweepSVG plots bytes per connection (left) and connsrv CPU per heartbeat
// round per connection (right) against the connection count (log scale).
func SweepSVG(points []SweepPoint) string {
	var rows []sweepRow
	for _, p := range points {
		if r, ok := rowOf(p); ok {
			rows = append(rows, r)
		}
	}
	var b strings.Builder
	const W, H = 960, 480
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", W, H)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	mem := []series{
		{"connsrv RssAnon", "#1f77b4", func(r sweepRow) float64 { return r.connsrvRSS }},
		{"connsrv Go heap", "#2ca02c", func(r sweepRow) float64 { return r.connsrvHeap }},
		{"logic RssAnon", "#ff7f0e", func(r sweepRow) float64 { return r.logic }},
		{"kernel slab (both loopback ends)", "#d62728", func(r sweepRow) float64 { return r.kernel }},
	}
	cpu := []series{{"connsrv CPU per heartbeat round", "#9467bd", func(r sweepRow) float64 { return r.cpuRoundUS }}}
	panel(&b, rows, 60, 40, 380, 300, "bytes per idle connection", "B", mem)
	panel(&b, rows, 560, 40, 360, 300, "CPU per heartbeat round per connection", "µs", cpu)
	b.WriteString("</svg>\n")
	return b.String()
}

type series struct {
	name, color string
	y           func(sweepRow) float64
}

// panel draws one chart with a log10 x axis (connections) and a linear y
// axis from zero.
func panel(b *strings.Builder, rows []sweepRow, x0, y0, w, h float64, title, unit string, ss []series) {
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" font-weight="bold">%s</text>`+"\n", x0, y0-15, title)
	fmt.Fprintf(b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", x0, y0, w, h)
	if len(rows) == 0 {
		fmt.Fprintf(b, `<text x="%.0f" y="%.0f">no data</text>`+"\n", x0+10, y0+20)
		return
	}
	lo, hi := math.Log10(rows[0].n), math.Log10(rows[len(rows)-1].n)
	if hi-lo < 1 {
		lo, hi = math.Floor(lo), math.Floor(lo)+1
	}
	ymax := 0.0
	for _, r := range rows {
		for _, s := range ss {
			ymax = max(ymax, s.y(r))
		}
	}
	ymax = niceCeil(ymax)
	xp := func(n float64) float64 { return x0 + w*(math.Log10(n)-lo)/(hi-lo) }
	yp := func(v float64) float64 { return y0 + h - h*v/ymax }
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			x0, x0+w, yp(v), yp(v), x0-5, yp(v)+4, fmtNum(v)+" "+unit)
	}
	for _, r := range rows {
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n", xp(r.n), y0+h+16, fmtNum(r.n))
	}
	fmt.Fprintf(b, `<text x="%.0f" y="%.0f" text-anchor="middle">idle connections (log scale)</text>`+"\n", x0+w/2, y0+h+34)
	for k, s := range ss {
		var pts []string
		for _, r := range rows {
			if v := s.y(r); v > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xp(r.n), yp(v)))
			}
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		for _, p := range pts {
			xy := strings.Split(p, ",")
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], s.color)
		}
		ly := y0 + h + 52 + float64(k)*16
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			x0, x0+20, ly-4, ly-4, s.color, x0+26, ly, s.name)
	}
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6 && math.Mod(v, 1e6) == 0:
		return fmt.Sprintf("%.0fM", v/1e6)
	case v >= 1e3 && math.Mod(v, 1e3) == 0:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}
