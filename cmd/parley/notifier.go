package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/parley-chat/parley/adapters/events"
	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/gostats"
	"github.com/parley-chat/parley/notifier"
)

// runNotifier consumes push events from Kafka and delivers them as Web
// Push messages and webhooks.
func runNotifier(args []string) error {
	fs := flag.NewFlagSet("notifier", flag.ContinueOnError)
	gen := fs.Bool("gen-vapid", false, "print a new VAPID key pair (for notifier.vapid_public_key and vapid_private_key) and exit")
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		if len(c.Kafka.Brokers) == 0 {
			return errors.New("kafka.brokers: the notifier consumes push events from Kafka; name at least one broker")
		}
		return joinErrs(validateLog(c.Log), c.Notifier.Validate(), validateStore(c.Store), validateFleet(c))
	})
	if *gen {
		pub, priv, gerr := notifier.GenerateVAPID()
		if gerr != nil {
			return gerr
		}
		fmt.Printf("notifier:\n  vapid_public_key: %s\n  vapid_private_key: %s\n", pub, priv)
		return nil
	}
	if err != nil || done {
		return err
	}
	applyRuntime(&cfg)
	log := serverLogger(cfg)
	if !cfg.Notifier.WebPush() && !cfg.Notifier.Webhook() {
		log.Warn("neither Web Push keys nor a webhook are configured: events are consumed and dropped")
	}
	st, err := openStore(cfg.Store, log)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := notifier.New(cfg.Notifier, st, log.With("component", "notifier"))
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	var ready atomic.Bool
	if cfg.Notifier.HTTPListen != "" {
		ln, err := net.Listen("tcp", cfg.Notifier.HTTPListen)
		if err != nil {
			return fmt.Errorf("cannot listen for HTTP on %s: %w", cfg.Notifier.HTTPListen, err)
		}
		token, _ := cfg.Notifier.LoadMetricsToken() // checked by Validate
		srv := &fasthttp.Server{Handler: healthHandler(&ready, token), NoDefaultServerHeader: true}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Shutdown() }()
	}
	log.Info("notifier up", "topic", cfg.Kafka.Topic, "group", cfg.Kafka.Group, "web_push", cfg.Notifier.WebPush(), "webhook", cfg.Notifier.Webhook())
	ready.Store(true)
	err = events.Consume(ctx, cfg.Kafka, n.Handle, log.With("component", "kafka"))
	ready.Store(false)
	log.Info("notifier stopped")
	return err
}

// healthHandler serves /healthz, /readyz and /metrics (behind token when
// it is set) for a process without an API of its own.
func healthHandler(ready *atomic.Bool, token string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/healthz":
			ctx.SetBodyString("ok\n")
		case "/readyz":
			if !ready.Load() {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				ctx.SetBodyString("not ready\n")
				return
			}
			ctx.SetBodyString("ready\n")
		case "/metrics":
			if !adminauth.Allowed(string(ctx.Request.Header.Peek("Authorization")), token) {
				ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="parley-metrics"`)
				ctx.SetStatusCode(fasthttp.StatusUnauthorized)
				return
			}
			ctx.SetContentType("text/plain; version=0.0.4")
			metrics.WritePrometheus(ctx, true)
			gostats.Write(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	}
}

// startInProcessNotifier runs the notifier inside a logic node that has
// Web Push keys or a webhook but no Kafka (standalone). It stops with ctx.
func startInProcessNotifier(ctx context.Context, cfg fileConfig, node *logicNode, log *slog.Logger) error {
	n, err := notifier.New(cfg.Notifier, node.store, log.With("component", "notifier"))
	if err != nil {
		return err
	}
	node.svc.SetNotifier(n)
	go func() { _ = n.Run(ctx) }()
	return nil
}
