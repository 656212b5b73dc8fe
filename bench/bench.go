package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/wsclient"
)

// Config configures a density run.
type Config struct {
	// URL is the connection node's WebSocket URL. Required.
	URL string `yaml:"url"`
	// Conns is the number of connections to open and hold. Default 10000.
	Conns int `yaml:"conns"`
	// Hold is how long all connections are held once established, before
	// the "after" readings. Default 30s; zero means measure right away.
	// Hold longer than the server's heartbeat interval to see heartbeat
	// rounds in the CPU figures.
	Hold time.Duration `yaml:"hold"`
	// Servers are the server processes whose costs are read (RSS and CPU
	// from /proc, Go heap and open connections from their /metrics).
	Servers []Server `yaml:"servers"`
	// SourceIPs spreads connections over local addresses, e.g.
	// "127.0.0.2-127.0.0.50". Empty: the kernel picks (one process), or
	// four addresses per client process from 127.X.Y.1-4 (several).
	SourceIPs string `yaml:"source_ips"`
	// DialConcurrency is how many connections are set up at once, over all
	// client processes (each gets an equal share, at least 4). Default 128.
	// More does not ramp faster on a small box: setups queue in the
	// servers and time out.
	DialConcurrency int `yaml:"dial_concurrency"`
	// DialTimeout bounds one connection setup (TCP, upgrade, hello, and
	// with Sync until synced). Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Sync sends sync after hello and waits for synced, as a real client
	// does (docs/protocol.md, "Reliable delivery"); a connection counts as
	// established only then. Default true.
	Sync bool `yaml:"sync"`
	// UserPrefix starts the generated user ids. Empty: "bn" plus a random
	// suffix.
	UserPrefix string `yaml:"user_prefix"`
	// PerProc is the most connections one client process holds. Default:
	// this process's open-files hard limit minus a reserve (19,936 with
	// the 20,000 limit here). Runs above it start ceil(Conns/PerProc)
	// client processes.
	PerProc int `yaml:"per_proc"`
	// Worker is the command line that starts one client process (the
	// parley binary with "bench -worker" and the same configuration);
	// required only for runs above PerProc.
	Worker []string `yaml:"-"`
	// ClientNice is the nice value of client processes (run through
	// nice(1)), so that on a box shared with the servers the clients
	// cannot starve the processes they measure. Default 10; 0 runs them at
	// the bench process's priority.
	ClientNice int `yaml:"client_nice"`
	// SourceNet is the second octet of the 127.X.Y.Z addresses given to
	// client processes when SourceIPs is empty. Default 16.
	SourceNet int `yaml:"source_net"`
	// MemFloor stops the ramp when the host's MemAvailable falls below it
	// (bytes), so a run that does not fit ends with a report instead of the
	// OOM killer. Default 1 GiB.
	MemFloor int64 `yaml:"mem_floor"`
	// HeartbeatInterval is the server's connsrv.heartbeat_interval, shown
	// in the report. Zero: unknown.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
}

// Server is one server process bench reads.
type Server struct {
	Name       string `json:"name" yaml:"name"`
	Role       string `json:"role" yaml:"role"` // connsrv, logic or standalone
	PID        int    `json:"pid" yaml:"pid"`
	MetricsURL string `json:"metrics_url,omitempty" yaml:"metrics_url"`
}

// Default returns the default configuration (without a URL).
func Default() Config {
	return Config{Conns: 10000, Hold: 30 * time.Second, DialConcurrency: 128, DialTimeout: 10 * time.Second,
		Sync: true, SourceNet: 16, MemFloor: 1 << 30, ClientNice: 10}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.URL == "" {
		bad("bench.url is required")
	}
	if c.Conns < 1 {
		bad("bench.conns must be at least 1, got %d", c.Conns)
	}
	if c.Hold < 0 {
		bad("bench.hold must not be negative, got %s", c.Hold)
	}
	for _, s := range c.Servers {
		if s.PID < 0 {
			bad("bench.servers: pid must not be negative, got %d", s.PID)
		}
	}
	if c.DialConcurrency < 1 {
		bad("bench.dial_concurrency must be at least 1, got %d", c.DialConcurrency)
	}
	if c.DialTimeout <= 0 {
		bad("bench.dial_timeout must be positive, got %s", c.DialTimeout)
	}
	if _, err := wsclient.ParseIPRange(c.SourceIPs); err != nil {
		bad("bench.source_ips: %v", err)
	}
	if c.PerProc < 0 {
		bad("bench.per_proc must not be negative, got %d", c.PerProc)
	}
	if c.SourceNet < 1 || c.SourceNet > 254 {
		bad("bench.source_net must be in 1..254, got %d", c.SourceNet)
	}
	if c.ClientNice < 0 || c.ClientNice > 19 {
		bad("bench.client_nice must be in 0..19, got %d", c.ClientNice)
	}
	if c.MemFloor < 0 {
		bad("bench.mem_floor must not be negative, got %d", c.MemFloor)
	}
	return errors.Join(errs...)
}

// TokenFunc returns a bearer token for user and device.
type TokenFunc func(user, device string) (string, error)

// Run opens cfg.Conns connections — in this process, or across client
// processes when they do not fit one — holds them for cfg.Hold and returns
// the readings. Progress lines go to progress once a second (nil: none).
func Run(ctx context.Context, cfg Config, tok TokenFunc, log *slog.Logger, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.UserPrefix == "" {
		cfg.UserPrefix = "bn" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	lim, err := RaiseNofile(0)
	if err != nil {
		return nil, err
	}
	perProc := cfg.PerProc
	if perProc == 0 || perProc > int(lim)-fdReserve {
		perProc = int(lim) - fdReserve
	}
	groups := (cfg.Conns + perProc - 1) / perProc
	if groups > 1 && len(cfg.Worker) == 0 {
		return nil, fmt.Errorf("cannot hold %d connections in one process (at most %d: open-files limit %d): run through `parley bench`, which starts client processes, or lower bench.conns", cfg.Conns, perProc, lim)
	}
	if groups > 1 && groups > 254 {
		return nil, fmt.Errorf("cannot split %d connections over %d client processes: at most 254", cfg.Conns, groups)
	}
	specs := make([]ClientSpec, groups)
	for i := range specs {
		n := cfg.Conns / groups
		if i < cfg.Conns%groups {
			n++
		}
		specs[i] = ClientSpec{URL: cfg.URL, Conns: n, SourceIPs: cfg.SourceIPs, Sync: cfg.Sync,
			DialConcurrency: max(4, cfg.DialConcurrency/groups), DialTimeout: cfg.DialTimeout,
			UserPrefix: fmt.Sprintf("%s-%d", cfg.UserPrefix, i)}
		if cfg.SourceIPs == "" && groups > 1 {
			specs[i].SourceIPs = fmt.Sprintf("127.%d.%d.1-127.%d.%d.4", cfg.SourceNet, i, cfg.SourceNet, i)
		}
	}
	c := &coordinator{cfg: cfg, log: log, progress: progress, specs: specs, tok: tok}
	return c.run(ctx)
}

func dialReason(err error) string {
	var he *wsclient.HandshakeError
	var ne net.Error
	s := err.Error()
	switch {
	case errors.As(err, &he):
		return "dial:http_" + strconv.Itoa(he.Status)
	case errors.As(err, &ne) && ne.Timeout():
		return "dial:timeout"
	case strings.Contains(s, "refused"):
		return "dial:refused"
	case strings.Contains(s, "assign requested address"), strings.Contains(s, "address not available"):
		return "dial:no_local_port"
	case strings.Contains(s, "too many open files"):
		return "dial:too_many_open_files"
	case strings.Contains(s, "reset"):
		return "dial:reset"
	}
	return "dial:other"
}
