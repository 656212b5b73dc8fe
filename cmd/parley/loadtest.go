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
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/loadtest"
)

// wsURLFromListen turns a connsrv listen address (gnet form
// "tcp://127.0.0.1:8080") into a WebSocket URL.
func wsURLFromListen(listen string) string {
	host := strings.TrimPrefix(listen, "tcp://")
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	return "ws://" + host + "/ws"
}

// devTokens signs tokens locally with the configured secret.
func devTokens(a auth.Config) func(user, device string) (string, error) {
	return func(user, device string) (string, error) {
		return auth.Issue(a, user, device, 2*time.Hour, time.Now())
	}
}

func runLoadtest(args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	d := loadtest.Default()
	url := fs.String("url", "", "WebSocket URL of a connection node (default: from connsrv.listen in the config)")
	fs.StringVar(&d.Mode, "mode", d.Mode, "workload: pairs (1-on-1) or group")
	fs.IntVar(&d.Pairs, "pairs", d.Pairs, "pairs mode: number of 1-on-1 pairs (2 connections each)")
	fs.IntVar(&d.Groups, "groups", d.Groups, "group mode: number of groups")
	fs.IntVar(&d.GroupSize, "group-size", d.GroupSize, "group mode: members per group, sender included")
	fs.Float64Var(&d.Rate, "rate", d.Rate, "total offered send rate, messages/s (open loop)")
	fs.DurationVar(&d.Duration, "duration", d.Duration, "measured window (max 10m)")
	fs.DurationVar(&d.Warmup, "warmup", d.Warmup, "sending before measuring starts")
	fs.DurationVar(&d.Grace, "grace", d.Grace, "wait for outstanding acks and deliveries before counting them lost")
	fs.IntVar(&d.BodySize, "body-size", d.BodySize, "pad bodies to this many bytes")
	fs.IntVar(&d.DialConcurrency, "dial-concurrency", d.DialConcurrency, "connections set up at once")
	fs.DurationVar(&d.AckInterval, "ack-interval", d.AckInterval, "longest wait before a received message is acked")
	fs.IntVar(&d.AckBatch, "ack-batch", d.AckBatch, "ack a chat at once when this many messages are unacked")
	fs.StringVar(&d.SourceIPs, "source-ips", d.SourceIPs, "spread connections over local addresses, e.g. 127.0.0.2-127.0.0.50")
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	res, err := loadtest.Run(ctx, d, devTokens(cfg.Auth), log, progress)
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
	return res.WriteText(os.Stdout)
}
