package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/parley-chat/parley/adapters/directory"
	"github.com/parley-chat/parley/adapters/events"
	"github.com/parley-chat/parley/cmd/internal/confload"
	"github.com/parley-chat/parley/connsrv"
	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/logic"
	"github.com/parley-chat/parley/notifier"
	"github.com/parley-chat/parley/storage/backends"
)

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// fileConfig is the union of every tier's settings; each command uses the
// sections it needs and rejects the others.
type fileConfig struct {
	Log     LogConfig       `yaml:"log"`
	Auth    auth.Config     `yaml:"auth"`
	Connsrv connsrv.Config  `yaml:"connsrv"`
	Logic   logic.Config    `yaml:"logic"`
	Store   backends.Config `yaml:"store"`
	// Redis is the fleet directory (presence, device locations, node
	// registry). No addresses: none (a single node).
	Redis directory.Config `yaml:"redis"`
	// Kafka carries push events to the notifier. No brokers: push events go
	// to the in-process notifier (standalone) or nowhere.
	Kafka events.Config `yaml:"kafka"`
	// Notifier configures push delivery: `parley notifier` in fleets, or
	// in-process in a logic node without Kafka (standalone).
	Notifier notifier.Config `yaml:"notifier"`
	// Debug holds opt-in debugging aids; all off by default.
	Debug DebugConfig `yaml:"debug"`
	// Runtime tunes the Go runtime of the process.
	Runtime RuntimeConfig `yaml:"runtime"`

	// warnings are what loading found deprecated, logged by
	// serverLogger once the logger exists.
	warnings []string
}

// RuntimeConfig tunes the Go runtime of a parley process. A zero value
// leaves the runtime's default, and an environment variable (GOGC,
// GOMEMLIMIT, GOMAXPROCS) wins over the setting it names, so an operator can
// still override a config file for one process.
type RuntimeConfig struct {
	// GCPercent is the garbage collector's target (GOGC): the heap may grow
	// to (1 + GCPercent/100) times the live heap before a collection. Lower
	// trades GC CPU for memory: a connection node whose heap is mostly
	// long-lived per-connection state pays little for 50 (docs/tuning.md).
	// -1 turns the collector off and needs MemoryLimitMB. Default 0: Go's
	// default (100).
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimitMB is a soft memory limit in MiB (GOMEMLIMIT): the
	// collector runs harder as the Go heap and runtime approach it. Set it
	// below a container's memory limit. Default 0: none.
	MemoryLimitMB int64 `yaml:"memory_limit_mb"`
	// MaxProcs is GOMAXPROCS, the threads running Go code at once.
	// Default 0: twice the CPU count for a node with the embedded store and
	// no CPU limit (see embeddedStoreProcs), the runtime's choice (the CPUs
	// the process may use) otherwise.
	MaxProcs int `yaml:"max_procs"`
}

// validate checks c; getenv is os.Getenv (a GOMEMLIMIT variable is a
// memory limit for gc_percent -1 too).
func (c RuntimeConfig) validate(getenv func(string) string) error {
	var errs []error
	if c.GCPercent < -1 {
		errs = append(errs, fmt.Errorf("runtime.gc_percent %d: want a percentage, 0 for the default or -1 for off", c.GCPercent))
	}
	if c.GCPercent == -1 && c.MemoryLimitMB == 0 && getenv("GOMEMLIMIT") == "" {
		errs = append(errs, errors.New("runtime.gc_percent -1 turns the collector off: set runtime.memory_limit_mb too, or the heap grows without bound"))
	}
	if c.MemoryLimitMB < 0 {
		errs = append(errs, fmt.Errorf("runtime.memory_limit_mb %d: want MiB, or 0 for none", c.MemoryLimitMB))
	}
	if c.MaxProcs < 0 {
		errs = append(errs, fmt.Errorf("runtime.max_procs %d: want a thread count, or 0 for the runtime's choice", c.MaxProcs))
	}
	return errors.Join(errs...)
}

// applyRuntime applies the runtime section for a server command (tools
// such as bench, loadtest and chat keep Go's defaults and the
// environment's): the configured settings, then embeddedStoreProcs.
func applyRuntime(cfg *fileConfig) {
	cfg.Runtime.apply(os.Getenv)
	embeddedStoreProcs(cfg, os.Getenv)
}

// embeddedStoreProcs doubles GOMAXPROCS for a node that runs the embedded
// (Pebble) store, unless runtime.max_procs or the GOMAXPROCS variable sets
// it, or a CPU limit (a container's quota) already lowered it below the
// CPU count: above a quota, threads are throttled. A goroutine in a
// blocking system call keeps its scheduler slot (P) until the runtime's
// monitor thread takes it back, which can be milliseconds when the process
// is lightly loaded: the WAL's fdatasync and gnet's event loops in
// epoll_wait do that, and on 2 slots ready goroutines then wait. At 4,000
// msg/s on 2 cores the doubling cut send-to-deliver p50 from 4.4 to 1.3 ms
// and p99 from 30 to 13 ms (docs/tuning.md). gnet's event loops stay one
// per CPU (runtime.NumCPU) unless connsrv.num_event_loop says otherwise.
func embeddedStoreProcs(cfg *fileConfig, getenv func(string) string) {
	if cfg.Store.Shared() || cfg.Runtime.MaxProcs != 0 || getenv("GOMAXPROCS") != "" {
		return
	}
	if n := runtime.GOMAXPROCS(0); n >= runtime.NumCPU() {
		runtime.GOMAXPROCS(2 * n)
	}
}

// apply sets what c sets and the environment does not; getenv is
// os.Getenv.
func (c RuntimeConfig) apply(getenv func(string) string) {
	if c.GCPercent != 0 && getenv("GOGC") == "" {
		debug.SetGCPercent(c.GCPercent)
	}
	if c.MemoryLimitMB > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(c.MemoryLimitMB << 20)
	}
	if c.MaxProcs > 0 && getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(c.MaxProcs)
	}
}

// DebugConfig holds opt-in debugging aids of any parley command.
type DebugConfig struct {
	// PprofListen, when set, serves net/http/pprof (/debug/pprof/) on this
	// address, e.g. 127.0.0.1:6060, for CPU and heap profiles under load.
	// Loopback only (a loopback IP or "localhost"; anything else is a
	// config error): profiles expose internals and pprof has no
	// authentication. The command line (/debug/pprof/cmdline) is never
	// served. Default empty (off).
	PprofListen string `yaml:"pprof_listen"`
}

// validate refuses a pprof address that is not on loopback.
func (d DebugConfig) validate() error {
	if d.PprofListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(d.PprofListen); err != nil {
		return fmt.Errorf("debug.pprof_listen %q: %w", d.PprofListen, err)
	}
	if !adminauth.Loopback(d.PprofListen) {
		return fmt.Errorf("debug.pprof_listen %q: pprof has no authentication and serves only on loopback (e.g. 127.0.0.1:6060); reach it from elsewhere through an SSH tunnel", d.PprofListen)
	}
	return nil
}

// startPprof serves net/http/pprof on addr until the process exits. It
// serves the runtime profiles and the CPU profile and trace, but not the
// command line, which may hold secrets (-set auth.secret=...).
func startPprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug.pprof_listen: cannot listen on %s: %w", addr, err)
	}
	go func() { _ = http.Serve(ln, pprofMux()) }()
	return nil
}

// pprofMux routes /debug/pprof/ without cmdline: Index serves named
// runtime profiles only, and "cmdline" is not one (404).
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", http.NotFound)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func defaultFileConfig() fileConfig {
	return fileConfig{
		Log:      LogConfig{Level: "info", Format: "text"},
		Auth:     auth.Default(),
		Connsrv:  connsrv.Default(),
		Logic:    logic.Default(),
		Store:    backends.Default(),
		Redis:    withoutAddrs(directory.Default()),
		Kafka:    withoutBrokers(events.Default()),
		Notifier: notifier.Default(),
	}
}

// The fleet services are off unless the configuration names them.
func withoutAddrs(c directory.Config) directory.Config { c.Addrs = nil; return c }
func withoutBrokers(c events.Config) events.Config     { c.Brokers = nil; return c }

// validateFleet checks the Redis and Kafka sections that are in use.
func validateFleet(c *fileConfig) error {
	var errs []error
	if len(c.Logic.Cluster.Peers) > 0 && !c.Store.Shared() {
		errs = append(errs, fmt.Errorf("logic.cluster.peers: several logic nodes need a shared store (store.backend: scylla); the %s store belongs to one node", c.Store.Backend))
	}
	if len(c.Redis.Addrs) > 0 {
		errs = append(errs, prefixErr("redis.", c.Redis.Validate()))
	}
	if len(c.Kafka.Brokers) > 0 {
		errs = append(errs, prefixErr("kafka.", c.Kafka.Validate()))
	}
	// A logic node of a fleet holds only the public VAPID key (it serves it
	// to browsers); the notifier section is checked in full where it runs.
	if c.Notifier.WebPush() || c.Notifier.Webhook() {
		errs = append(errs, c.Notifier.Validate())
	}
	return errors.Join(errs...)
}

// prefixErr prefixes a section's key names when its errors lack them.
func prefixErr(prefix string, err error) error {
	if err == nil || strings.Contains(err.Error(), prefix) {
		return err
	}
	return fmt.Errorf("%s: %w", strings.TrimSuffix(prefix, "."), err)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// loadConfig parses the common flags (-config, -set, -check-config) and
// returns the configuration: defaults < file < PARLEY_* env < -set.
// It returns done=true when -check-config was given and the config is valid.
func loadConfig(fs *flag.FlagSet, args []string, defaultPath string, validate func(*fileConfig) error) (cfg fileConfig, done bool, err error) {
	path := fs.String("config", defaultPath, "configuration file (YAML); empty for none")
	var sets multiFlag
	fs.Var(&sets, "set", "override a setting, e.g. -set connsrv.listen=:9000 (repeatable)")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	cfg = defaultFileConfig()
	if *path != "" {
		if err := confload.File(*path, &cfg); err != nil {
			return cfg, false, err
		}
	}
	if err := confload.Env("PARLEY", &cfg); err != nil {
		return cfg, false, err
	}
	if err := confload.SetAll(&cfg, sets); err != nil {
		return cfg, false, err
	}
	warnings, err := cfg.Store.Normalize()
	if err != nil {
		return cfg, false, fmt.Errorf("invalid configuration:\n%w", err)
	}
	cfg.warnings = warnings
	if err := cfg.Auth.ResolveSecretFile(); err != nil {
		return cfg, false, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if err := errors.Join(cfg.Runtime.validate(os.Getenv), cfg.Debug.validate(), validate(&cfg)); err != nil {
		for _, w := range cfg.warnings { // they may explain the error's names
			err = fmt.Errorf("%w\nwarning: %s", err, w)
		}
		return cfg, false, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if *check {
		for _, w := range cfg.warnings {
			fmt.Fprintln(stderr, "warning:", w)
		}
		fmt.Println("configuration ok")
		return cfg, true, nil
	}
	if cfg.Debug.PprofListen != "" {
		if err := startPprof(cfg.Debug.PprofListen); err != nil {
			return cfg, false, err
		}
	}
	return cfg, false, nil
}

func newLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want text or json", c.Format)
}

// serverLogger is a server command's logger, which first logs the
// configuration's warnings.
func serverLogger(cfg fileConfig) *slog.Logger {
	log, _ := newLogger(cfg.Log, stderr) // cfg.Log was validated
	for _, w := range cfg.warnings {
		log.Warn("deprecated setting", "warning", w)
	}
	return log
}

func validateLog(c LogConfig) error {
	_, err := newLogger(c, io.Discard)
	return err
}

func validateStore(c backends.Config) error { return c.Validate() }

func joinErrs(errs ...error) error { return errors.Join(errs...) }

var stderr io.Writer = os.Stderr
