package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/parley-chat/parley/bench"
)

func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	d := bench.Default()
	url := fs.String("url", "", "WebSocket URL of a connection node (default: from connsrv.listen in the config)")
	fs.IntVar(&d.Conns, "conns", d.Conns, "idle connections to open and hold (one process holds at most its open-files limit minus 64)")
	fs.DurationVar(&d.Hold, "hold", d.Hold, "how long to hold all connections before the after readings")
	fs.IntVar(&d.ServerPID, "server-pid", d.ServerPID, "server process id, for its RSS from /proc (0: skip)")
	metrics := fs.String("metrics-url", "", "server /metrics with go_memstats_* (default: the logic tier's /metrics from logic.http_listen, right for standalone; \"none\" to skip)")
	fs.StringVar(&d.SourceIPs, "source-ips", d.SourceIPs, "spread connections over local addresses, e.g. 127.0.0.2-127.0.0.50")
	fs.IntVar(&d.DialConcurrency, "dial-concurrency", d.DialConcurrency, "connections set up at once")
	fs.DurationVar(&d.DialTimeout, "dial-timeout", d.DialTimeout, "bound on one connection setup (TCP, upgrade, hello)")
	fs.BoolVar(&d.Sync, "sync", d.Sync, "send sync after hello and wait for synced before counting a connection (as real clients do)")
	fs.StringVar(&d.UserPrefix, "user-prefix", d.UserPrefix, "prefix of generated user ids (default: random per run)")
	asJSON := fs.Bool("json", false, "print the result as JSON on stdout (progress stays on stderr)")
	quiet := fs.Bool("q", false, "no progress lines")
	cfg, done, err := loadConfig(fs, args, "configs/standalone.yaml", func(c *fileConfig) error { return c.Auth.Validate() })
	if err != nil || done {
		return err
	}
	log, err := newLogger(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	d.URL = *url
	if d.URL == "" {
		d.URL = wsURLFromListen(cfg.Connsrv.Listen)
	}
	switch *metrics {
	case "":
		d.MetricsURL = "http://" + cfg.Logic.HTTPListen + "/metrics"
	case "none":
	default:
		d.MetricsURL = *metrics
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	res, err := bench.Run(ctx, d, bench.TokenFunc(devTokens(cfg.Auth)), log, progress)
	if res == nil {
		return err
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Println()
	return res.WriteMarkdown(os.Stdout)
}
