package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley-chat/parley/connsrv"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/logic"
	"github.com/parley-chat/parley/storage/pebble"
	"github.com/parley-chat/parley/storage/scylla"
)

// exampleSecret is the secret in configs/standalone.yaml. Standalone warns
// when it is used.
const exampleSecret = "change-me-parley-dev-secret-0123456789"

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// openStore opens the configured backend.
func openStore(cfg StoreConfig, log *slog.Logger) (logic.Store, error) {
	if cfg.Backend == "cql" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return scylla.Open(ctx, cfg.CQL, log.With("component", "cql"))
	}
	return pebble.Open(cfg.Pebble, log)
}

// startLogic opens the store and binds the logic node's listeners.
func startLogic(cfg fileConfig, v *auth.Verifier, log *slog.Logger) (*logic.Service, logic.Store, error) {
	st, err := openStore(cfg.Store, log)
	if err != nil {
		return nil, nil, err
	}
	svc, err := logic.New(cfg.Logic, st, logic.NewMemPresence(), v, log.With("component", "logic"))
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	if err := svc.Listen(); err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return svc, st, nil
}

func runStandalone(args []string) error {
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store))
	})
	if err != nil || done {
		return err
	}
	log, _ := newLogger(cfg.Log, stderr)
	if cfg.Auth.Secret == exampleSecret {
		log.Warn("using the example JWT secret from configs/standalone.yaml: fine on your laptop, never in production")
	}
	v, err := auth.NewVerifier(cfg.Auth, nil)
	if err != nil {
		return err
	}
	svc, st, err := startLogic(cfg, v, log)
	if err != nil {
		return err
	}
	// The connection tier reaches the logic tier over the same TCP tier link
	// a fleet uses, here on loopback.
	cfg.Connsrv.LogicAddrs = []string{svc.LinkAddr()}
	cs, err := connsrv.New(cfg.Connsrv, v, log.With("component", "connsrv"))
	if err != nil {
		_ = st.Close()
		return err
	}

	ctx, stop := signalContext()
	defer stop()
	logicCtx, stopLogic := context.WithCancel(context.Background())
	defer stopLogic()
	logicErr := make(chan error, 1)
	go func() { logicErr <- svc.Run(logicCtx) }()
	<-svc.Ready()

	connErr := make(chan error, 1)
	go func() { connErr <- cs.Run(ctx) }()
	select {
	case <-cs.Ready():
	case err := <-connErr:
		stopLogic()
		return errors.Join(err, <-logicErr, st.Close())
	}
	log.Info("parley standalone up",
		"websocket", "ws://"+cs.Addr()+"/ws",
		"http", "http://"+svc.HTTPAddr(),
		"store", cfg.Store.Backend,
		"try", "parley chat -user alice   (in another terminal)")

	var errs []error
	select {
	case err := <-connErr: // connsrv stopped on its own (or on the signal)
		errs = append(errs, err)
	case err := <-logicErr:
		errs = append(errs, fmt.Errorf("logic tier stopped: %v", err))
		stop()
		errs = append(errs, <-connErr)
		logicErr <- nil
	}
	// Ordered shutdown: clients first, then in-flight writes, then the store.
	stop()
	stopLogic()
	errs = append(errs, <-logicErr, st.Close())
	log.Info("parley standalone stopped")
	return errors.Join(errs...)
}

func runLogic(args []string) error {
	fs := flag.NewFlagSet("logic", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store))
	})
	if err != nil || done {
		return err
	}
	log, _ := newLogger(cfg.Log, stderr)
	v, err := auth.NewVerifier(cfg.Auth, nil)
	if err != nil {
		return err
	}
	svc, st, err := startLogic(cfg, v, log)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	runErr := svc.Run(ctx)
	return errors.Join(runErr, st.Close())
}

func runConnsrv(args []string) error {
	fs := flag.NewFlagSet("connsrv", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Connsrv.Validate())
	})
	if err != nil || done {
		return err
	}
	log, _ := newLogger(cfg.Log, stderr)
	v, err := auth.NewVerifier(cfg.Auth, nil)
	if err != nil {
		return err
	}
	cs, err := connsrv.New(cfg.Connsrv, v, log)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return cs.Run(ctx)
}
