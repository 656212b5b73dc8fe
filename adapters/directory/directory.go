package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/rueidis"
)

// ErrUnavailable is wrapped by every error of a call that could not reach
// Redis: not connected yet, connection refused or lost, timed out, closed.
var ErrUnavailable = errors.New("directory: redis unavailable")

// cacheBytesPerConn bounds the client-side cache of each connection to one
// Redis (rueidis's default is 128 MiB). Locations are small and hot.
const cacheBytesPerConn = 16 << 20

// Directory is the fleet directory in Redis. All methods are safe for
// concurrent use.
type Directory struct {
	cfg Config
	log *slog.Logger
	opt rueidis.ClientOption

	client  atomic.Pointer[clientRef] // nil until the first connection succeeds
	healthy atomic.Bool               // the last call reached Redis
	closed  atomic.Bool

	stop      chan struct{} // closed by Close: the connector gives up
	connected chan struct{} // closed when the connector exits
	closeOnce sync.Once
}

// clientRef boxes the client interface for the atomic pointer.
type clientRef struct{ c rueidis.Client }

// Open validates cfg and returns a Directory. It never fails because Redis
// is unreachable: it connects in the background and calls fail fast with
// ErrUnavailable until Redis answers. A nil log discards.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Directory, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot open directory: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{
		cfg:       cfg,
		log:       log,
		opt:       clientOption(cfg),
		stop:      make(chan struct{}),
		connected: make(chan struct{}),
	}
	// A single address uses rueidis's single-node client, which is created
	// even when the first dial fails and redials on later calls. Cluster
	// and Sentinel clients need Redis to exist: the connector retries.
	c, err := rueidis.NewClient(d.opt)
	if c != nil {
		d.client.Store(&clientRef{c})
		close(d.connected)
		if err != nil {
			log.Warn("directory down at start; calls fail until redis answers", "addrs", cfg.Addrs, "err", err)
		} else {
			d.healthy.Store(true)
		}
		return d, nil
	}
	log.Warn("directory down at start; connecting in the background", "addrs", cfg.Addrs, "err", err)
	go d.connect(context.WithoutCancel(ctx))
	return d, nil
}

// clientOption maps the config to rueidis options.
func clientOption(cfg Config) rueidis.ClientOption {
	opt := rueidis.ClientOption{
		InitAddress:       append([]string(nil), cfg.Addrs...),
		Username:          cfg.Username,
		Password:          cfg.Password,
		SelectDB:          cfg.DB,
		ClientName:        "parley-directory",
		Dialer:            netDialer(cfg.DialTimeout),
		CacheSizeEachConn: cacheBytesPerConn,
		DisableCache:      cfg.CacheTTL == 0,
		// Every call has its own deadline (Timeout) and callers repeat
		// their writes (heartbeats, refreshes): a retry would only spend
		// the caller's budget redialing a Redis that is down.
		DisableRetry: true,
		// Detect a Redis that stopped answering on a busy connection within
		// a few call timeouts rather than rueidis's default of ~10s.
		ConnWriteTimeout: max(10*cfg.Timeout, 2*time.Second),
	}
	switch {
	case cfg.SentinelMaster != "":
		opt.Sentinel = rueidis.SentinelOption{MasterSet: cfg.SentinelMaster}
	case len(cfg.Addrs) == 1:
		opt.ForceSingleClient = true
	}
	return opt
}

// connect creates the client, retrying with backoff until it succeeds or
// Close is called.
func (d *Directory) connect(ctx context.Context) {
	defer close(d.connected)
	wait := 100 * time.Millisecond
	for {
		select {
		case <-d.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
		c, err := rueidis.NewClient(d.opt)
		if err != nil {
			if c != nil {
				c.Close()
			}
			d.log.Debug("directory connect failed", "addrs", d.cfg.Addrs, "err", err)
			continue
		}
		select {
		case <-d.stop:
			c.Close()
			return
		default:
		}
		d.client.Store(&clientRef{c})
		d.healthy.Store(true)
		d.log.InfoContext(ctx, "directory connected", "addrs", d.cfg.Addrs)
		return
	}
}

// Close stops background connection attempts and closes the client. Calls
// after Close fail with ErrUnavailable. Safe to call more than once.
func (d *Directory) Close() {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		close(d.stop)
		<-d.connected
		if r := d.client.Load(); r != nil {
			r.c.Close()
		}
		d.healthy.Store(false)
	})
}

// Healthy reports whether the last call reached Redis (for /readyz detail;
// a node stays ready without the directory). Safe for concurrent use.
func (d *Directory) Healthy() bool { return d.healthy.Load() }

// op holds the metrics of one operation.
type op struct {
	name    string
	calls   *metrics.Counter
	errors  *metrics.Counter
	seconds *metrics.Histogram
}

func newOp(name string) *op {
	return &op{
		name:    name,
		calls:   metrics.NewCounter(`parley_directory_calls_total{op="` + name + `"}`),
		errors:  metrics.NewCounter(`parley_directory_errors_total{op="` + name + `"}`),
		seconds: metrics.NewHistogram(`parley_directory_call_seconds{op="` + name + `"}`),
	}
}

var (
	opAttach     = newOp("attach")
	opDetach     = newOp("detach")
	opRefresh    = newOp("refresh")
	opLocate     = newOp("locate")
	opSetOnline  = newOp("set_online")
	opSetOffline = newOp("set_offline")
	opLookup     = newOp("lookup")
	opRegister   = newOp("register")
	opDeregister = newOp("deregister")
	opNodes      = newOp("nodes")

	// refreshSuperseded counts Refresh entries skipped because a newer
	// session of the same device holds the location.
	refreshSuperseded = metrics.NewCounter(`parley_directory_refresh_superseded_total`)
	// badValues counts stored values that did not decode (skipped).
	badValues = metrics.NewCounter(`parley_directory_bad_values_total`)
)

var errClosed = errors.New("directory closed")
var errNotConnected = errors.New("not connected yet")

// call runs f with the client under the call timeout, counts it and keeps
// Healthy current. Errors that did not come from Redis wrap ErrUnavailable.
func (d *Directory) call(ctx context.Context, o *op, f func(ctx context.Context, c rueidis.Client) error) error {
	o.calls.Inc()
	start := time.Now()
	var err error
	r := d.client.Load()
	switch {
	case d.closed.Load():
		err = errClosed
	case r == nil:
		err = errNotConnected
	default:
		cctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
		err = f(cctx, r.c)
		cancel()
	}
	o.seconds.UpdateDuration(start)
	if err == nil {
		d.healthy.Store(true)
		return nil
	}
	o.errors.Inc()
	if isRedisErr(err) {
		d.healthy.Store(true) // Redis answered, with an error
		return err
	}
	if ctx.Err() == nil { // not the caller giving up
		d.healthy.Store(false)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// Keys. Every key of one user carries the hash tag {user} and every key of
// one node kind the tag {kind}, so each group lives in one cluster slot.

func (d *Directory) locKey(user string) string  { return d.cfg.KeyPrefix + "loc:{" + user + "}" }
func (d *Directory) seenKey(user string) string { return d.cfg.KeyPrefix + "seen:{" + user + "}" }
func (d *Directory) nodesKey(kind string) string {
	return d.cfg.KeyPrefix + "nodes:{" + kind + "}"
}
func (d *Directory) nodeKey(kind, id string) string {
	return d.cfg.KeyPrefix + "node:{" + kind + "}:" + id
}

// isRedisErr reports whether err is an error reply from Redis (it was
// reached), not a network, timeout or client error.
func isRedisErr(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && re != rueidis.Nil
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

func netDialer(timeout time.Duration) net.Dialer { return net.Dialer{Timeout: timeout} }
