package main

import (
	"flag"

	"github.com/parley-chat/parley/bench"
)

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	d := bench.Default()
	t := addToolFlags(fs)
	fs.IntVar(&d.Conns, "conns", d.Conns, "idle connections to open and hold (one process holds at most its open-files limit minus 64)")
	fs.DurationVar(&d.Hold, "hold", d.Hold, "how long to hold all connections before the after readings")
	fs.IntVar(&d.ServerPID, "server-pid", d.ServerPID, "server process id, for its RSS from /proc (0: skip)")
	metrics := fs.String("metrics-url", "", "server /metrics with go_memstats_* (default: the logic tier's /metrics from logic.http_listen, right for standalone; \"none\" to skip)")
	fs.StringVar(&d.SourceIPs, "source-ips", d.SourceIPs, "spread connections over local addresses, e.g. 127.0.0.2-127.0.0.50")
	fs.IntVar(&d.DialConcurrency, "dial-concurrency", d.DialConcurrency, "connections set up at once")
	fs.DurationVar(&d.DialTimeout, "dial-timeout", d.DialTimeout, "bound on one connection setup (TCP, upgrade, hello)")
	fs.BoolVar(&d.Sync, "sync", d.Sync, "send sync after hello and wait for synced before counting a connection (as real clients do)")
	fs.StringVar(&d.UserPrefix, "user-prefix", d.UserPrefix, "prefix of generated user ids (default: random per run)")
	done, err := t.setup(fs, args)
	if err != nil || done {
		return err
	}
	defer t.stop()
	d.URL = *t.url
	switch *metrics {
	case "":
		d.MetricsURL = "http://" + t.cfg.Logic.HTTPListen + "/metrics"
	case "none":
	default:
		d.MetricsURL = *metrics
	}
	res, err := bench.Run(t.ctx, d, bench.TokenFunc(devTokens(t.cfg.Auth)), t.log, t.progress)
	if res == nil {
		return err
	}
	return t.report(res, err, res.WriteMarkdown)
}
