package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/bench"
)

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	d := bench.Default()
	t := addToolFlags(fs)
	fs.IntVar(&d.Conns, "conns", d.Conns, "idle connections to open and hold (above one process's open-files limit, bench starts client processes)")
	fs.DurationVar(&d.Hold, "hold", d.Hold, "how long to hold all connections before the after readings (longer than the heartbeat interval to see heartbeat CPU)")
	pids := fs.String("server-pid", "", "server process ids, comma-separated, for RSS and CPU from /proc (empty: skip)")
	metrics := fs.String("metrics-url", "", "the servers' /metrics URLs, comma-separated in -server-pid order (default: the logic tier's /metrics from logic.admin_listen, right for standalone; \"none\" to skip)")
	role := fs.String("role", "standalone", "role of the -server-pid processes in the report: standalone, connsrv or logic")
	fs.StringVar(&d.SourceIPs, "source-ips", d.SourceIPs, "spread connections over local addresses, e.g. 127.0.0.2-127.0.0.50 (default: 4 per client process from 127.16.x.1-4)")
	fs.IntVar(&d.DialConcurrency, "dial-concurrency", d.DialConcurrency, "connections set up at once, over all client processes")
	fs.DurationVar(&d.DialTimeout, "dial-timeout", d.DialTimeout, "bound on one connection setup (TCP, upgrade, hello, synced)")
	fs.BoolVar(&d.Sync, "sync", d.Sync, "send sync after hello and wait for synced before counting a connection (as real clients do)")
	fs.StringVar(&d.UserPrefix, "user-prefix", d.UserPrefix, "prefix of generated user ids (default: random per run)")
	fs.IntVar(&d.PerProc, "per-proc", d.PerProc, "most connections per client process (default: open-files limit minus 64)")
	fs.IntVar(&d.ClientNice, "client-nice", d.ClientNice, "nice value of client processes, so they cannot starve the servers on a shared box (0: none)")
	fs.Int64Var(&d.MemFloor, "mem-floor", d.MemFloor, "stop the ramp when MemAvailable falls below this many bytes")
	spawn := fs.Int("spawn", 0, "start a logic node and this many connsrv processes sharing one port (SO_REUSEPORT) for the run; -1 = one per -per-server connections")
	sweep := fs.String("sweep", "", "run one measurement per count, e.g. 10k,50k,100k,250k,500k,1M, each against fresh servers (implies -spawn -1); writes -out/report.md, report.json and density.svg")
	perServer := fs.Int("per-server", 16000, "with -spawn -1 or -sweep: connections per connsrv process (below its open-files limit, with room for SO_REUSEPORT's uneven spread)")
	port := fs.Int("port", 18600, "with -spawn/-sweep: the shared WebSocket port; logic uses port+1 (link) and port+2 (HTTP), connsrv i serves /metrics on port+10+i")
	out := fs.String("out", "bench-report", "with -sweep: report directory")
	gogc := fs.String("connsrv-gogc", "", "with -spawn/-sweep: GOGC environment variable of the connsrv processes, over any runtime.gc_percent (they get -set runtime.gc_percent=50 first, as configs/connsrv.yaml ships, which a -set of yours overrides)")
	connsrvNice := fs.Int("connsrv-nice", 0, "with -spawn/-sweep: add this to the connsrv processes' nice value, so that dozens of them on a few cores leave the one logic node its share (in a fleet it has its own cores) (0: none)")
	worker := fs.Bool("worker", false, "internal: run as a client process (spec on stdin, stats on stdout)")
	done, err := t.setup(fs, args)
	if err != nil || done {
		return err
	}
	defer t.stop()
	tok := bench.TokenFunc(devTokens(t.cfg.Auth))
	if *worker {
		return bench.Worker(t.ctx, os.Stdin, os.Stdout, tok)
	}
	d.URL = *t.url
	d.HeartbeatInterval = time.Duration(t.cfg.Connsrv.HeartbeatInterval)
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find the parley binary for client processes: %w", err)
	}
	// Client processes run this binary with the same configuration.
	d.Worker = append([]string{exe, "bench", "-worker"}, configArgs(args)...)

	if *sweep != "" || *spawn != 0 {
		points := []int{d.Conns}
		if *sweep != "" {
			if points, err = parseCounts(*sweep); err != nil {
				return err
			}
		}
		sc := bench.SweepConfig{Points: points, PerServer: *perServer, Base: d, OutDir: *out,
			Servers: bench.ServerSpec{Exe: exe, ConfigArgs: configArgs(args), Port: *port, LinkPort: *port + 1,
				LogicHTTP: *port + 2, HTTPBase: *port + 10}}
		if *connsrvNice < 0 || *connsrvNice > 19 {
			return fmt.Errorf("-connsrv-nice must be in 0..19, got %d", *connsrvNice)
		}
		sc.Servers.ConnsrvNice = *connsrvNice
		sc.Servers.ConnsrvArgs = []string{"-set", "runtime.gc_percent=50"}
		if *gogc != "" {
			sc.Servers.Env = []string{"GOGC=" + *gogc}
		}
		if *spawn > 0 {
			sc.PerServer = (d.Conns + *spawn - 1) / *spawn
		}
		if *sweep == "" {
			dir, err := os.MkdirTemp("", "parley-bench-")
			if err != nil {
				return fmt.Errorf("cannot create a report directory: %w", err)
			}
			sc.OutDir = dir
			defer fmt.Fprintf(os.Stderr, "server logs: %s\n", dir)
		}
		pts, err := bench.Sweep(t.ctx, sc, tok, t.log, t.progress)
		if *sweep == "" {
			if len(pts) == 0 || pts[0].Result == nil {
				return err
			}
			return t.report(pts[0].Result, err, pts[0].Result.WriteMarkdown)
		}
		if len(pts) > 0 {
			fmt.Printf("\nreport: %s\n\n", filepath.Join(*out, "report.md"))
			bench.WriteSweepMarkdown(os.Stdout, pts)
		}
		return err
	}

	var mu []string
	switch *metrics {
	case "":
		if t.cfg.Logic.AdminListen != "" {
			mu = []string{"http://" + t.cfg.Logic.AdminListen + "/metrics"}
		}
	case "none":
	default:
		mu = strings.Split(*metrics, ",")
	}
	if *pids != "" {
		for i, s := range strings.Split(*pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || pid <= 0 {
				return fmt.Errorf("-server-pid: %q is not a process id", s)
			}
			srv := bench.Server{Name: fmt.Sprintf("%s-%d", *role, i+1), Role: *role, PID: pid}
			if i < len(mu) {
				srv.MetricsURL = mu[i]
			}
			d.Servers = append(d.Servers, srv)
		}
	} else if len(mu) > 0 {
		d.Servers = []bench.Server{{Name: *role, Role: *role, MetricsURL: mu[0]}}
	}
	res, err := bench.Run(t.ctx, d, tok, t.log, t.progress)
	if res == nil {
		return err
	}
	return t.report(res, err, res.WriteMarkdown)
}

// configArgs keeps the -config and -set arguments of args, for processes
// bench starts with the same configuration.
func configArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") {
			continue
		}
		key, _, hasVal := strings.Cut(name, "=")
		if key != "config" && key != "set" {
			continue
		}
		out = append(out, a)
		if !hasVal && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

// parseCounts parses "10k,50k,1M" into ascending counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mult := 1
		switch {
		case strings.HasSuffix(f, "k"), strings.HasSuffix(f, "K"):
			mult, f = 1000, f[:len(f)-1]
		case strings.HasSuffix(f, "M"), strings.HasSuffix(f, "m"):
			mult, f = 1000000, f[:len(f)-1]
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-sweep: %q is not a connection count", f)
		}
		if len(out) > 0 && n*mult <= out[len(out)-1] {
			return nil, fmt.Errorf("-sweep: counts must ascend, %d after %d", n*mult, out[len(out)-1])
		}
		out = append(out, n*mult)
	}
	return out, nil
}
