package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/parley-chat/parley/adapters/directory"
	"github.com/parley-chat/parley/adapters/events"
	"github.com/parley-chat/parley/connsrv"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/memlink"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/logic"
	"github.com/parley-chat/parley/storage"
	"github.com/parley-chat/parley/storage/backends"
)

// exampleSecret is the secret in configs/standalone.yaml. Standalone warns
// when it is used.
const exampleSecret = "change-me-parley-dev-secret-0123456789"

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// openStore opens the configured backend.
func openStore(cfg backends.Config, log *slog.Logger) (storage.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return backends.Open(ctx, cfg, log)
}

// logicNode is a logic node with what it was built on, closed in order.
type logicNode struct {
	svc      *logic.Service
	store    storage.Store
	dir      *directory.Directory // nil without redis
	producer *events.Producer     // nil without kafka
}

// close releases what the node was built on, after it stopped.
func (n *logicNode) close() error {
	var errs []error
	if n.producer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, n.producer.Close(ctx))
		cancel()
	}
	if n.dir != nil {
		n.dir.Close()
	}
	return errors.Join(append(errs, n.store.Close())...)
}

// startLogic opens the store (and, when configured, the fleet directory
// and the Kafka producer) and binds the logic node's listeners; tier links
// come from linkLn when it is not nil, else from logic.link_listen.
func startLogic(cfg fileConfig, v *auth.Verifier, log *slog.Logger, linkLn net.Listener) (*logicNode, error) {
	st, err := openStore(cfg.Store, log)
	if err != nil {
		return nil, err
	}
	n := &logicNode{store: st}
	var presence logic.Presence = logic.NewMemPresence()
	if len(cfg.Redis.Addrs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n.dir, err = directory.Open(ctx, cfg.Redis, log.With("component", "directory"))
		cancel()
		if err != nil {
			_ = n.close()
			return nil, err
		}
		presence = n.dir
	}
	if len(cfg.Kafka.Brokers) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n.producer, err = events.NewProducer(ctx, cfg.Kafka, log.With("component", "kafka"))
		cancel()
		if err != nil {
			_ = n.close()
			return nil, err
		}
	}
	n.svc, err = logic.New(cfg.Logic, st, presence, v, log.With("component", "logic"))
	if err != nil {
		_ = n.close()
		return nil, err
	}
	if n.dir != nil {
		n.svc.SetDirectory(n.dir)
	}
	// A CQL keyspace that sequences under leases (store.scylla.sequencing:
	// lease) needs the node to hold them.
	if ls, ok := st.(logic.LeaseStore); ok && ls.Slots() > 0 {
		n.svc.SetLeases(ls)
	}
	if n.producer != nil {
		n.svc.SetNotifier(n.producer)
	}
	// Browsers fetch the key they subscribe with from GET /v1/push/vapid.
	if cfg.Notifier.VAPIDPublicKey != "" {
		n.svc.SetVAPIDPublicKey(cfg.Notifier.VAPIDPublicKey)
	}
	if linkLn != nil {
		n.svc.SetLinkListener(linkLn)
	}
	if err := n.svc.Listen(); err != nil {
		_ = n.close()
		return nil, err
	}
	return n, nil
}

// standaloneLinkSecret gives the two halves of a standalone process one
// link secret: a random one made at every start unless the configuration
// names one, so the loopback tier link is never open to other local
// processes.
func standaloneLinkSecret(c *fileConfig) error {
	if c.Logic.LinkSecret == "" && c.Logic.LinkSecretFile == "" {
		c.Logic.LinkSecret, c.Logic.LinkSecretFile = c.Connsrv.LinkSecret, c.Connsrv.LinkSecretFile
	}
	if c.Logic.LinkSecret == "" && c.Logic.LinkSecretFile == "" {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("cannot make a link secret: %w", err)
		}
		c.Logic.LinkSecret = hex.EncodeToString(b)
	}
	if c.Connsrv.LinkSecret == "" && c.Connsrv.LinkSecretFile == "" {
		c.Connsrv.LinkSecret, c.Connsrv.LinkSecretFile = c.Logic.LinkSecret, c.Logic.LinkSecretFile
	}
	return nil
}

func runStandalone(args []string) error {
	fs := flag.NewFlagSet("standalone", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		if err := standaloneLinkSecret(c); err != nil {
			return err
		}
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store), validateFleet(c))
	})
	if err != nil || done {
		return err
	}
	applyRuntime(&cfg)
	log := serverLogger(cfg)
	if cfg.Auth.Secret == exampleSecret {
		log.Warn("using the example JWT secret from configs/standalone.yaml: fine on your laptop, never in production")
	}
	v, err := auth.NewVerifierWith(cfg.Auth, auth.Options{Logger: log.With("component", "auth")})
	if err != nil {
		return err
	}
	// The connection tier reaches the logic tier over the tier link a
	// fleet uses: in process (no socket, no port), or over TCP when the
	// link is configured with TLS or the node is part of a cluster (its
	// peers dial the link address it advertises).
	var mem *memlink.Listener
	if !cfg.Logic.LinkTLS.ServerEnabled() && len(cfg.Redis.Addrs) == 0 &&
		len(cfg.Logic.Cluster.Peers) == 0 && !cfg.Logic.Cluster.Enabled {
		mem = memlink.NewListener()
	}
	var linkLn net.Listener
	if mem != nil {
		linkLn = mem
	}
	node, err := startLogic(cfg, v, log, linkLn)
	if err != nil {
		return err
	}
	svc := node.svc
	cfg.Connsrv.LogicAddrs = []string{svc.LinkAddr()}
	if mem != nil {
		cfg.Connsrv.LinkDial = mem.Dial
	}
	cs, err := connsrv.New(cfg.Connsrv, v, log.With("component", "connsrv"))
	if err != nil {
		_ = node.close()
		return err
	}

	ctx, stop := signalContext()
	defer stop()
	logicCtx, stopLogic := context.WithCancel(context.Background())
	defer stopLogic()
	if node.producer == nil && (cfg.Notifier.WebPush() || cfg.Notifier.Webhook()) {
		if err := startInProcessNotifier(logicCtx, cfg, node, log); err != nil {
			_ = node.close()
			return err
		}
	}
	logicErr := make(chan error, 1)
	go func() { logicErr <- svc.Run(logicCtx) }()
	<-svc.Ready()

	connErr := make(chan error, 1)
	go func() { connErr <- cs.Run(ctx) }()
	select {
	case <-cs.Ready():
	case err := <-connErr:
		stopLogic()
		return errors.Join(err, <-logicErr, node.close())
	}
	log.Info("parley standalone up",
		"websocket", "ws://"+cs.Addr()+"/ws",
		"http", "http://"+svc.HTTPAddr(),
		"store", cfg.Store.Backend,
		"gomaxprocs", runtime.GOMAXPROCS(0),
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
	errs = append(errs, <-logicErr, node.close())
	log.Info("parley standalone stopped")
	return errors.Join(errs...)
}

// refuseDevTokens: development tokens (a token for anyone who asks) belong
// to the standalone command only; a fleet node refuses the setting.
func refuseDevTokens(c *fileConfig) error {
	if c.Logic.DevTokens {
		return errors.New("logic.dev_tokens: development tokens sign a token for anyone and run only in standalone (parley standalone); mint tokens with `parley token -config FILE -user U` or use your identity provider")
	}
	return nil
}

func runLogic(args []string) error {
	fs := flag.NewFlagSet("logic", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store), validateFleet(c), refuseDevTokens(c))
	})
	if err != nil || done {
		return err
	}
	applyRuntime(&cfg)
	log := serverLogger(cfg)
	v, err := auth.NewVerifierWith(cfg.Auth, auth.Options{Logger: log.With("component", "auth")})
	if err != nil {
		return err
	}
	node, err := startLogic(cfg, v, log, nil)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	if node.producer == nil && (cfg.Notifier.WebPush() || cfg.Notifier.Webhook()) {
		if err := startInProcessNotifier(ctx, cfg, node, log); err != nil {
			_ = node.close()
			return err
		}
	}
	runErr := node.svc.Run(ctx)
	return errors.Join(runErr, node.close())
}

func runConnsrv(args []string) error {
	fs := flag.NewFlagSet("connsrv", flag.ContinueOnError)
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error {
		return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Connsrv.Validate(), validateFleet(c), refuseDevTokens(c))
	})
	if err != nil || done {
		return err
	}
	applyRuntime(&cfg)
	log := serverLogger(cfg)
	v, err := auth.NewVerifierWith(cfg.Auth, auth.Options{Logger: log.With("component", "auth")})
	if err != nil {
		return err
	}
	cs, err := connsrv.New(cfg.Connsrv, v, log)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	if len(cfg.Redis.Addrs) > 0 {
		// The registry lists connection nodes for ops and tools; routing
		// to logic nodes does not depend on it.
		dir, err := directory.Open(ctx, cfg.Redis, log.With("component", "directory"))
		if err != nil {
			return err
		}
		defer dir.Close()
		hbCtx, stopHB := context.WithCancel(ctx)
		defer stopHB()
		go dir.Heartbeat(hbCtx, record.Node{Kind: record.NodeConnsrv, ID: cs.NodeID(), Addr: cfg.Connsrv.Listen, Started: time.Now().UnixMilli()}, cfg.Redis.NodeTTL/3)
	}
	return cs.Run(ctx)
}
