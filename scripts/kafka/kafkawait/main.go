// Command kafkawait blocks until a Kafka broker answers a metadata request
// and names a controller, so scripts and CI can tell "the port is open"
// apart from "the broker serves requests".
//
// It dials first (cheap, quiet), then asks for cluster metadata with a
// franz-go admin client and prints the cluster id, the broker count and how
// long it waited.
//
// Usage:
//
//	go run ./scripts/kafka/kafkawait -brokers 127.0.0.1:19092 -timeout 120s [-pid N]
//
// With -pid it gives up as soon as that process is gone (the broker crashed
// during startup), instead of waiting for the full timeout.
//
// Exit status: 0 ready, 1 timed out or failed, 2 bad flags, 3 the watched
// process exited.
//
// Tier: test tooling; used by scripts/kafka.sh, never by the servers.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	exitFailed      = 1
	exitUsage       = 2
	exitProcessGone = 3
)

// errProcessGone reports that the process named by -pid no longer exists.
var errProcessGone = errors.New("kafkawait: watched process exited")

// config holds the parsed command line.
type config struct {
	brokers        []string      // host:port of every seed broker
	timeout        time.Duration // total time to wait; zero means one attempt
	requestTimeout time.Duration // per dial and per request
	interval       time.Duration // pause between attempts
	pid            int           // process to watch; zero watches none
	quiet          bool          // print only the final line
}

// ready is what a successful probe learned.
type ready struct {
	cluster string
	brokers int
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	r, attempts, err := waitReady(ctx, cfg)
	elapsed := time.Since(start).Round(10 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkawait: %s not ready after %s (%d attempts): %v\n",
			strings.Join(cfg.brokers, ","), elapsed, attempts, err)
		if errors.Is(err, errProcessGone) {
			os.Exit(exitProcessGone)
		}
		os.Exit(exitFailed)
	}
	fmt.Printf("kafkawait: %s ready: cluster=%s brokers=%d waited=%s attempts=%d\n",
		strings.Join(cfg.brokers, ","), r.cluster, r.brokers, elapsed, attempts)
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("kafkawait", flag.ContinueOnError)
	defBrokers := os.Getenv("PARLEY_KAFKA_BROKERS")
	if defBrokers == "" {
		defBrokers = "127.0.0.1:19092"
	}
	brokers := fs.String("brokers", defBrokers, "comma-separated host:port list (default $PARLEY_KAFKA_BROKERS)")
	var cfg config
	fs.DurationVar(&cfg.timeout, "timeout", 120*time.Second, "total time to wait")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", 5*time.Second, "timeout of one dial or request")
	fs.DurationVar(&cfg.interval, "interval", 250*time.Millisecond, "pause between attempts")
	fs.IntVar(&cfg.pid, "pid", 0, "give up when this process exits (0: do not watch)")
	fs.BoolVar(&cfg.quiet, "quiet", false, "print nothing but the final line")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	var errs []error
	for _, b := range strings.Split(*brokers, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("cannot parse broker %q: %w", b, err))
			continue
		}
		cfg.brokers = append(cfg.brokers, b)
	}
	if len(cfg.brokers) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("-brokers is empty"))
	}
	if cfg.timeout < 0 {
		errs = append(errs, fmt.Errorf("-timeout %s is negative", cfg.timeout))
	}
	if cfg.requestTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-request-timeout %s must be positive", cfg.requestTimeout))
	}
	if cfg.interval <= 0 {
		errs = append(errs, fmt.Errorf("-interval %s must be positive", cfg.interval))
	}
	if cfg.pid < 0 {
		errs = append(errs, fmt.Errorf("-pid %d is negative", cfg.pid))
	}
	return cfg, errors.Join(errs...)
}

// waitReady retries until one probe succeeds, the deadline passes, ctx is
// cancelled or the watched process exits.
func waitReady(ctx context.Context, cfg config) (ready, int, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	var (
		lastErr  error
		lastShow string
		attempts int
	)
	for {
		if cfg.pid > 0 && !alive(cfg.pid) {
			if lastErr == nil {
				return ready{}, attempts, fmt.Errorf("%w (pid %d)", errProcessGone, cfg.pid)
			}
			return ready{}, attempts, fmt.Errorf("%w (pid %d); last error: %v", errProcessGone, cfg.pid, lastErr)
		}
		attempts++
		r, err := probe(ctx, cfg)
		if err == nil {
			return r, attempts, nil
		}
		lastErr = err
		if msg := err.Error(); !cfg.quiet && msg != lastShow {
			// Each distinct failure once: "refused", then "no controller",
			// then success.
			fmt.Fprintf(os.Stderr, "kafkawait: waiting: %v\n", err)
			lastShow = msg
		}
		select {
		case <-ctx.Done():
			return ready{}, attempts, fmt.Errorf("cannot get metadata from %s: %w (last error: %v)",
				strings.Join(cfg.brokers, ","), ctx.Err(), lastErr)
		case <-time.After(cfg.interval):
		}
	}
}

// probe makes one attempt: a plain TCP dial, then a metadata request that
// must list at least one broker and a controller.
func probe(ctx context.Context, cfg config) (ready, error) {
	var d net.Dialer
	var dialErr error
	reachable := false
	for _, b := range cfg.brokers {
		dctx, cancel := context.WithTimeout(ctx, cfg.requestTimeout)
		c, err := d.DialContext(dctx, "tcp", b)
		cancel()
		if err != nil {
			dialErr = err
			continue
		}
		_ = c.Close()
		reachable = true
		break
	}
	if !reachable {
		return ready{}, fmt.Errorf("cannot dial: %w", dialErr)
	}

	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.brokers...),
		kgo.DialTimeout(cfg.requestTimeout),
		kgo.RequestRetries(0),
		kgo.ClientID("parley-kafkawait"),
	)
	if err != nil {
		return ready{}, fmt.Errorf("cannot create client: %w", err)
	}
	defer cl.Close()
	rctx, cancel := context.WithTimeout(ctx, cfg.requestTimeout)
	defer cancel()
	md, err := kadm.NewClient(cl).BrokerMetadata(rctx)
	if err != nil {
		return ready{}, fmt.Errorf("cannot get metadata: %w", err)
	}
	if len(md.Brokers) == 0 {
		return ready{}, errors.New("metadata lists no brokers")
	}
	if md.Controller < 0 {
		return ready{}, errors.New("metadata names no controller")
	}
	return ready{cluster: md.Cluster, brokers: len(md.Brokers)}, nil
}

// alive reports whether process pid exists and has not exited. A zombie
// (exited, not yet reaped by the shell that started it) counts as gone.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// Format: "pid (comm) state ..."; comm may contain spaces or ')'.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			state := stat[i+2]
			return state != 'Z' && state != 'X'
		}
		return true
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat("/proc/self"); statErr == nil {
			return false
		}
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
