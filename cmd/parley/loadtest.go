package main

import (
	"flag"

	"github.com/parley-chat/parley/loadtest"
)

func runLoadtest(args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	d := loadtest.Default()
	t := addToolFlags(fs)
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
	done, err := t.setup(fs, args)
	if err != nil || done {
		return err
	}
	defer t.stop()
	d.URL = *t.url
	res, err := loadtest.Run(t.ctx, d, devTokens(t.cfg.Auth), t.log, t.progress)
	if res == nil {
		return err
	}
	return t.report(res, err, res.WriteText)
}
