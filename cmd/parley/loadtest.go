package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/parley-chat/parley/loadtest"
)

func runLoadtest(args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	d := loadtest.Default()
	t := addToolFlags(fs)
	fs.StringVar(&d.Mode, "mode", d.Mode, "workload: pairs (1-on-1), group, or population (users following a daily-message model)")
	fs.IntVar(&d.Pairs, "pairs", d.Pairs, "pairs mode: number of 1-on-1 pairs (2 connections each)")
	fs.IntVar(&d.Groups, "groups", d.Groups, "group mode: number of groups")
	fs.IntVar(&d.GroupSize, "group-size", d.GroupSize, "group mode: members per group, sender included")
	fs.Float64Var(&d.Rate, "rate", d.Rate, "total offered send rate, messages/s (open loop); population: the model's expected rate")
	fs.DurationVar(&d.Duration, "duration", d.Duration, "measured window (max 10m)")
	fs.DurationVar(&d.Warmup, "warmup", d.Warmup, "sending before measuring starts")
	fs.DurationVar(&d.Grace, "grace", d.Grace, "wait for outstanding acks and deliveries before counting them lost")
	fs.IntVar(&d.BodySize, "body-size", d.BodySize, "pad bodies to this many bytes")
	fs.IntVar(&d.DialConcurrency, "dial-concurrency", d.DialConcurrency, "connections set up at once")
	fs.DurationVar(&d.AckInterval, "ack-interval", d.AckInterval, "longest wait before a received message is acked")
	fs.IntVar(&d.AckBatch, "ack-batch", d.AckBatch, "ack a chat at once when this many messages are unacked")
	fs.StringVar(&d.SourceIPs, "source-ips", d.SourceIPs, "spread connections over local addresses, e.g. 127.0.0.2-127.0.0.50")
	fs.StringVar(&d.UserPrefix, "user-prefix", d.UserPrefix, "prefix of generated user ids (default: random per run)")
	fs.DurationVar(&d.ReportInterval, "report-interval", d.ReportInterval, "length of one row of the report over time (and of a progress line)")
	fs.StringVar(&d.WatchPIDs, "watch-pids", d.WatchPIDs, "server processes whose CPU per delivery the report gives over the window: name=pid,name=pid")
	fs.IntVar(&d.Users, "users", d.Users, "population: number of users (one connection each)")
	fs.Int64Var(&d.Seed, "seed", d.Seed, "population: seed of the model (users, chats, schedule, churn)")
	fs.Float64Var(&d.DailyMean, "daily-mean", d.DailyMean, "population: mean messages per user per day")
	fs.Float64Var(&d.DailySigma, "daily-sigma", d.DailySigma, "population: log-normal shape of messages per day (0: all equal)")
	fs.Float64Var(&d.Compression, "compression", d.Compression, "population: day seconds played per run second (0: derived from -rate)")
	fs.IntVar(&d.Contacts, "contacts", d.Contacts, "population: average 1-on-1 chats per user")
	fs.Float64Var(&d.GroupsPerUser, "groups-per-user", d.GroupsPerUser, "population: average groups per user (0: none)")
	fs.Float64Var(&d.GroupSizeMean, "group-size-mean", d.GroupSizeMean, "population: mean group size (>= 3)")
	fs.IntVar(&d.GroupSizeMax, "group-size-max", d.GroupSizeMax, "population: largest group (<= 100)")
	fs.Float64Var(&d.GroupShare, "group-share", d.GroupShare, "population: share of a group member's conversations in groups")
	fs.Float64Var(&d.BurstMean, "burst-mean", d.BurstMean, "population: mean messages per burst")
	fs.DurationVar(&d.BurstGap, "burst-gap", d.BurstGap, "population: mean gap between messages of a burst")
	fs.Float64Var(&d.ReplyProb, "reply-prob", d.ReplyProb, "population: chance a burst is answered")
	fs.DurationVar(&d.ReplyDelay, "reply-delay", d.ReplyDelay, "population: mean delay of an answer")
	fs.Float64Var(&d.OfflineShare, "offline-share", d.OfflineShare, "population: share of users offline at any time (0: no churn)")
	fs.DurationVar(&d.OfflineMean, "offline-mean", d.OfflineMean, "population: mean offline period")
	fs.DurationVar(&d.StormAt, "storm-at", d.StormAt, "population: reconnect storm this long after sending starts (0: none)")
	fs.Float64Var(&d.StormFraction, "storm-fraction", d.StormFraction, "population: share of connections the storm drops")
	fs.DurationVar(&d.StormJitter, "storm-jitter", d.StormJitter, "population: storm reconnects spread over this long")
	fs.Func("day-curve", "population: activity over the day: typical (quiet nights, evening peak), flat (the default), or 24 comma-separated hourly weights; -rate is then the day's average", func(v string) error {
		c, err := parseDayCurve(v)
		d.DayCurve = c
		return err
	})
	fs.DurationVar(&d.DayStart, "day-start", d.DayStart, "population: time of day the run starts at, for -day-curve (e.g. 18h)")
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

// parseDayCurve parses -day-curve: typical, flat (or empty), or 24
// comma-separated hourly weights.
func parseDayCurve(v string) ([]float64, error) {
	switch v {
	case "", "flat":
		return nil, nil
	case "typical":
		return loadtest.TypicalDayCurve, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) != 24 {
		return nil, fmt.Errorf("want typical, flat or 24 comma-separated hourly weights, got %d values", len(parts))
	}
	out := make([]float64, 24)
	for i, p := range parts {
		w, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("hour %d: %w", i, err)
		}
		out[i] = w
	}
	return out, nil
}
