// Command cqlwait blocks until a CQL node answers a real query, so scripts
// and CI can tell "the port is open" apart from "the database serves
// requests".
//
// It connects with native protocol v4 (the version ScyllaDB speaks; letting
// the driver negotiate v5 against Cassandra 5 is not what production does),
// runs `SELECT release_version FROM system.local` and prints the version and
// how long it waited. Until the TCP port accepts connections it only dials,
// so the driver is not asked to log a stream of refused connections.
//
// Usage:
//
//	go run ./scripts/cqlwait -hosts 127.0.0.1:19042 -timeout 180s [-pid N]
//
// With -pid it gives up as soon as that process is gone (the node crashed
// during startup), instead of waiting for the full timeout.
//
// With -agree it also waits until the nodes of a cluster agree on the
// schema: every node named in -hosts answers, reports the same
// schema_version in system.local, and lists every other named node in
// system.peers with that version. A node that restarted may take a while
// to catch up on schema changes made while it was down; a test that
// creates a keyspace meanwhile waits a minute for agreement in the driver.
//
// Exit status: 0 ready, 1 timed out or failed, 2 bad flags, 3 the watched
// process exited.
//
// Tier: test tooling; used by scripts/cassandra.sh, never by the servers.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gocql/gocql"
)

const (
	exitFailed      = 1
	exitUsage       = 2
	exitProcessGone = 3
)

// errProcessGone reports that the process named by -pid no longer exists.
var errProcessGone = errors.New("cqlwait: watched process exited")

// config holds the parsed command line.
type config struct {
	hosts        []string      // host:port of every node to try
	timeout      time.Duration // total time to wait; zero means one attempt
	queryTimeout time.Duration // per connect and per query
	interval     time.Duration // pause between attempts
	proto        int           // native protocol version
	pid          int           // process to watch; zero watches none
	quiet        bool          // print only the version line
	agree        bool          // also wait for schema agreement of all hosts
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
	version, attempts, err := waitReady(ctx, cfg)
	elapsed := time.Since(start).Round(10 * time.Millisecond)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cqlwait: %s not ready after %s (%d attempts): %v\n",
			strings.Join(cfg.hosts, ","), elapsed, attempts, err)
		if errors.Is(err, errProcessGone) {
			os.Exit(exitProcessGone)
		}
		os.Exit(exitFailed)
	}
	fmt.Printf("cqlwait: %s ready: release_version=%s waited=%s attempts=%d\n",
		strings.Join(cfg.hosts, ","), version, elapsed, attempts)
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("cqlwait", flag.ContinueOnError)
	defHosts := os.Getenv("PARLEY_CQL_HOSTS")
	if defHosts == "" {
		defHosts = "127.0.0.1:19042"
	}
	hosts := fs.String("hosts", defHosts, "comma-separated host:port list (default $PARLEY_CQL_HOSTS)")
	var cfg config
	fs.DurationVar(&cfg.timeout, "timeout", 180*time.Second, "total time to wait")
	fs.DurationVar(&cfg.queryTimeout, "query-timeout", 5*time.Second, "timeout of one connect or query")
	fs.DurationVar(&cfg.interval, "interval", 500*time.Millisecond, "pause between attempts")
	fs.IntVar(&cfg.proto, "proto", 4, "CQL native protocol version")
	fs.IntVar(&cfg.pid, "pid", 0, "give up when this process exits (0: do not watch)")
	fs.BoolVar(&cfg.quiet, "quiet", false, "print nothing but the final line")
	fs.BoolVar(&cfg.agree, "agree", false, "also wait until every host reports the same schema version for all of them")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	var errs []error
	for _, h := range strings.Split(*hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(h); err != nil {
			errs = append(errs, fmt.Errorf("cannot parse host %q: %w", h, err))
			continue
		}
		cfg.hosts = append(cfg.hosts, h)
	}
	if len(cfg.hosts) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("-hosts is empty"))
	}
	if cfg.timeout < 0 {
		errs = append(errs, fmt.Errorf("-timeout %s is negative", cfg.timeout))
	}
	if cfg.queryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("-query-timeout %s must be positive", cfg.queryTimeout))
	}
	if cfg.interval <= 0 {
		errs = append(errs, fmt.Errorf("-interval %s must be positive", cfg.interval))
	}
	if cfg.proto < 3 || cfg.proto > 5 {
		errs = append(errs, fmt.Errorf("-proto %d is not 3, 4 or 5", cfg.proto))
	}
	if cfg.pid < 0 {
		errs = append(errs, fmt.Errorf("-pid %d is negative", cfg.pid))
	}
	return cfg, errors.Join(errs...)
}

// waitReady retries until one query succeeds, the deadline passes, ctx is
// cancelled or the watched process exits. It returns the server's
// release_version and the number of attempts made.
func waitReady(ctx context.Context, cfg config) (string, int, error) {
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
				return "", attempts, fmt.Errorf("%w (pid %d)", errProcessGone, cfg.pid)
			}
			return "", attempts, fmt.Errorf("%w (pid %d); last error: %v", errProcessGone, cfg.pid, lastErr)
		}
		attempts++
		version, err := probe(ctx, cfg)
		if err == nil && cfg.agree {
			err = agreement(ctx, cfg)
		}
		if err == nil {
			return version, attempts, nil
		}
		lastErr = err
		if msg := err.Error(); !cfg.quiet && msg != lastShow {
			// Print each distinct failure once: startup walks through
			// "refused", then "not ready", then success.
			fmt.Fprintf(os.Stderr, "cqlwait: waiting: %v\n", err)
			lastShow = msg
		}
		select {
		case <-ctx.Done():
			return "", attempts, fmt.Errorf("cannot query %s: %w (last error: %v)", strings.Join(cfg.hosts, ","), ctx.Err(), lastErr)
		case <-time.After(cfg.interval):
		}
	}
}

// probe makes one attempt: a plain TCP dial first (cheap, quiet), then a
// driver session and the query.
func probe(ctx context.Context, cfg config) (string, error) {
	var d net.Dialer
	reachable := false
	var dialErr error
	for _, h := range cfg.hosts {
		dctx, cancel := context.WithTimeout(ctx, cfg.queryTimeout)
		c, err := d.DialContext(dctx, "tcp", h)
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
		return "", fmt.Errorf("cannot dial: %w", dialErr)
	}

	cluster := gocql.NewCluster(cfg.hosts...)
	cluster.ProtoVersion = cfg.proto
	cluster.ConnectTimeout = cfg.queryTimeout
	cluster.Timeout = cfg.queryTimeout
	cluster.NumConns = 1
	// Probe exactly the named node. (Discovery would also need the port:
	// the ScyllaDB driver reads peers' ports from columns Cassandra does
	// not have, and falls back to ClusterConfig.Port.)
	cluster.DisableInitialHostLookup = true
	cluster.Consistency = gocql.One
	cluster.Logger = log.New(io.Discard, "", 0)
	session, err := cluster.CreateSession()
	if err != nil {
		return "", fmt.Errorf("cannot create session: %w", err)
	}
	defer session.Close()

	var version string
	qctx, cancel := context.WithTimeout(ctx, cfg.queryTimeout)
	defer cancel()
	if err := session.Query("SELECT release_version FROM system.local").
		WithContext(qctx).Scan(&version); err != nil {
		return "", fmt.Errorf("cannot query system.local: %w", err)
	}
	return version, nil
}

// agreement asks every host for its own schema version and the versions it
// holds for its peers, and fails unless all name one version and every
// host knows every other.
func agreement(ctx context.Context, cfg config) error {
	versions := map[string][]string{} // version -> who reported it (as seen by whom)
	for _, h := range cfg.hosts {
		host, _, _ := net.SplitHostPort(h)
		cluster := gocql.NewCluster(h)
		cluster.ProtoVersion = cfg.proto
		cluster.ConnectTimeout = cfg.queryTimeout
		cluster.Timeout = cfg.queryTimeout
		cluster.NumConns = 1
		cluster.DisableInitialHostLookup = true
		cluster.HostFilter = gocql.WhiteListHostFilter(host)
		cluster.Consistency = gocql.One
		cluster.Logger = log.New(io.Discard, "", 0)
		session, err := cluster.CreateSession()
		if err != nil {
			return fmt.Errorf("cannot connect to %s: %w", h, err)
		}
		qctx, cancel := context.WithTimeout(ctx, cfg.queryTimeout)
		var local gocql.UUID
		err = session.Query("SELECT schema_version FROM system.local").WithContext(qctx).Scan(&local)
		if err == nil {
			versions[local.String()] = append(versions[local.String()], host)
			seen := map[string]bool{}
			iter := session.Query("SELECT peer, schema_version FROM system.peers").WithContext(qctx).Iter()
			var peer string
			var v gocql.UUID
			for iter.Scan(&peer, &v) {
				seen[peer] = true
				versions[v.String()] = append(versions[v.String()], peer+" (seen by "+host+")")
			}
			err = iter.Close()
			for _, o := range cfg.hosts {
				if oh, _, _ := net.SplitHostPort(o); err == nil && oh != host && !seen[oh] {
					err = fmt.Errorf("%s does not list %s among its peers", h, oh)
				}
			}
		}
		cancel()
		session.Close()
		if err != nil {
			return fmt.Errorf("cannot read schema versions on %s: %w", h, err)
		}
	}
	if len(versions) > 1 {
		return fmt.Errorf("schema versions differ: %v", versions)
	}
	return nil
}

// alive reports whether process pid exists and has not exited. A zombie
// (exited, not yet reaped by its parent, e.g. the shell that started it)
// counts as gone; /proc tells them apart where it exists. Elsewhere signal 0
// probes existence (EPERM: exists, belongs to someone else).
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
			return false // /proc is mounted and the pid is not in it
		}
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
