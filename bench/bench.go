package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/loadtest/wsc"
)

// Config configures a density run.
type Config struct {
	// URL is the connection node's WebSocket URL. Required.
	URL string `yaml:"url"`
	// Conns is the number of connections to open and hold. Default 10000.
	Conns int `yaml:"conns"`
	// Hold is how long all connections are held once established, before
	// the "after" readings. Default 30s; zero means measure right away.
	Hold time.Duration `yaml:"hold"`
	// ServerPID is the server process whose RSS is read. Zero: no RSS.
	ServerPID int `yaml:"server_pid"`
	// MetricsURL is a Prometheus endpoint of the server process with
	// go_memstats_* (standalone: the logic tier's /metrics). Empty: none.
	MetricsURL string `yaml:"metrics_url"`
	// SourceIPs spreads connections over local addresses, e.g.
	// "127.0.0.2-127.0.0.50". Empty: the kernel picks.
	SourceIPs string `yaml:"source_ips"`
	// DialConcurrency is how many connections are set up at once.
	// Default 64.
	DialConcurrency int `yaml:"dial_concurrency"`
	// DialTimeout bounds one connection setup (TCP, upgrade, hello, and
	// with Sync until synced). Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// Sync sends sync after hello and waits for synced, as a real client
	// does (docs/protocol.md, "Reliable delivery"); a connection counts as
	// established only then. Default true; false measures bare sessions
	// (the server still starts their delivery state after its sync grace).
	Sync bool `yaml:"sync"`
	// UserPrefix starts the generated user ids. Empty: "bn" plus a random
	// suffix.
	UserPrefix string `yaml:"user_prefix"`
}

// Default returns the default configuration (without a URL).
func Default() Config {
	return Config{Conns: 10000, Hold: 30 * time.Second, DialConcurrency: 64, DialTimeout: 10 * time.Second, Sync: true}
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
	if c.ServerPID < 0 {
		bad("bench.server_pid must not be negative, got %d", c.ServerPID)
	}
	if c.DialConcurrency < 1 {
		bad("bench.dial_concurrency must be at least 1, got %d", c.DialConcurrency)
	}
	if c.DialTimeout <= 0 {
		bad("bench.dial_timeout must be positive, got %s", c.DialTimeout)
	}
	if _, err := wsc.ParseIPRange(c.SourceIPs); err != nil {
		bad("bench.source_ips: %v", err)
	}
	return errors.Join(errs...)
}

// TokenFunc returns a bearer token for user and device.
type TokenFunc func(user, device string) (string, error)

// Snapshot is one reading of the server's costs.
type Snapshot struct {
	RSS       int64    `json:"rss_bytes"`           // server VmRSS (0 without a PID)
	Sockstat  Sockstat `json:"sockstat"`            // kernel TCP sockets, whole host
	HeapIn    float64  `json:"heap_inuse_bytes"`    // go_memstats_heap_inuse_bytes
	HeapLive  float64  `json:"heap_live_est_bytes"` // go_memstats_next_gc_bytes / 2: live heap at the last GC (GOGC=100)
	Stacks    float64  `json:"stack_inuse_bytes"`   // go_memstats_stack_inuse_bytes
	Sys       float64  `json:"go_sys_bytes"`        // go_memstats_sys_bytes
	Gorout    float64  `json:"goroutines"`          // go_goroutines
	ClientRSS int64    `json:"client_rss_bytes"`    // this process's VmRSS
}

// Result is the outcome of a density run.
type Result struct {
	Target       int              `json:"target"`
	Established  int64            `json:"established"` // reached hello
	Held         int64            `json:"held"`        // still open at the after reading
	RampSec      float64          `json:"ramp_s"`      // first dial to last hello
	ConnsPerSec  float64          `json:"conns_per_s"` // established / ramp
	HoldSec      float64          `json:"hold_s"`
	ErrorsByKind map[string]int64 `json:"errors"` // setup failures and drops while holding
	Before       Snapshot         `json:"before"`
	After        Snapshot         `json:"after"`
	Notes        []string         `json:"notes,omitempty"`
}

// PerConn returns (after - before) / held, or 0 without held conns.
func (r *Result) PerConn(before, after float64) float64 {
	if r.Held <= 0 {
		return 0
	}
	return (after - before) / float64(r.Held)
}

type holder struct {
	mu    sync.Mutex // guards errs
	errs  map[string]int64
	alive atomic.Int64
	stop  atomic.Bool
	wg    sync.WaitGroup
}

func (h *holder) err(kind string) {
	h.mu.Lock()
	h.errs[kind]++
	h.mu.Unlock()
}

// Run opens cfg.Conns connections, holds them for cfg.Hold and returns the
// readings. Progress lines go to progress once a second (nil for none).
func Run(ctx context.Context, cfg Config, tok TokenFunc, log *slog.Logger, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := RaiseNofile(cfg.Conns); err != nil {
		return nil, err
	}
	if cfg.UserPrefix == "" {
		cfg.UserPrefix = "bn" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	ips, _ := wsc.ParseIPRange(cfg.SourceIPs)
	res := &Result{Target: cfg.Conns}
	before, notes := snapshot(ctx, cfg)
	res.Before, res.Notes = before, notes

	h := &holder{errs: map[string]int64{}}
	d := &wsc.Dialer{URL: cfg.URL, Timeout: cfg.DialTimeout}
	conns := make([]*wsc.Conn, cfg.Conns)
	var established atomic.Int64
	start := time.Now()
	pctx, stopProgress := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := int64(0)
		for {
			select {
			case <-pctx.Done():
				return
			case now := <-t.C:
				e := established.Load()
				if progress != nil {
					h.mu.Lock()
					nerr := int64(0)
					for _, n := range h.errs {
						nerr += n
					}
					h.mu.Unlock()
					fmt.Fprintf(progress, "%5.1fs established %6d (+%d/s) alive %6d errors %d\n",
						now.Sub(start).Seconds(), e, e-last, h.alive.Load(), nerr)
				}
				last = e
			}
		}
	}()
	sem := make(chan struct{}, cfg.DialConcurrency)
	var dials sync.WaitGroup
	for i := range cfg.Conns {
		if ctx.Err() != nil {
			break
		}
		var local net.IP
		if len(ips) > 0 {
			local = ips[i%len(ips)]
		}
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			c, buf, err := dialOne(ctx, d, tok, cfg, fmt.Sprintf("%s-%d", cfg.UserPrefix, i), local)
			if err != nil {
				h.err(err.Error())
				return
			}
			conns[i] = c
			established.Add(1)
			h.alive.Add(1)
			h.wg.Go(func() { h.hold(c, buf) })
		})
	}
	dials.Wait()
	ramp := time.Since(start)
	res.Established = established.Load()
	res.RampSec = ramp.Seconds()
	if ramp > 0 {
		res.ConnsPerSec = float64(res.Established) / ramp.Seconds()
	}
	log.Info("bench ramp done", "established", res.Established, "target", cfg.Conns, "ramp", ramp)
	holdStart := time.Now()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
	}
	res.HoldSec = time.Since(holdStart).Seconds()
	res.Held = h.alive.Load()
	after, notes := snapshot(context.WithoutCancel(ctx), cfg)
	res.After = after
	res.Notes = append(res.Notes, notes...)
	stopProgress()

	h.stop.Store(true)
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	h.wg.Wait()
	h.mu.Lock()
	res.ErrorsByKind = maps.Clone(h.errs)
	h.mu.Unlock()
	return res, ctx.Err()
}

// dialOne opens one connection and waits for its hello (and with
// cfg.Sync, sends sync and waits for synced); errors are short reasons
// usable as counter keys. It returns the ack scratch buffer for hold.
func dialOne(ctx context.Context, d *wsc.Dialer, tok TokenFunc, cfg Config, user string, local net.IP) (*wsc.Conn, []byte, error) {
	token, err := tok(user, "bench")
	if err != nil {
		return nil, nil, errors.New("token")
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	c, err := d.Dial(dctx, token, "bench", local)
	if err != nil {
		return nil, nil, errors.New(dialReason(err))
	}
	stop := context.AfterFunc(dctx, func() { _ = c.Close() })
	defer stop()
	msg, err := c.ReadMessage()
	if err != nil || !strings.Contains(string(msg), `"type":"hello"`) {
		_ = c.Close()
		if err != nil && dctx.Err() != nil {
			return nil, nil, errors.New("hello:timeout")
		}
		return nil, nil, errors.New("hello:" + readReason(err))
	}
	if !cfg.Sync {
		return c, nil, nil
	}
	if err := c.WriteText([]byte(`{"type":"sync","id":"b"}`)); err != nil {
		_ = c.Close()
		return nil, nil, errors.New("sync:write")
	}
	var buf []byte
	for {
		msg, err := c.ReadMessage()
		if err != nil {
			_ = c.Close()
			if dctx.Err() != nil {
				return nil, nil, errors.New("sync:timeout")
			}
			return nil, nil, errors.New("sync:" + readReason(err))
		}
		var f frame
		if json.Unmarshal(msg, &f) != nil {
			continue
		}
		switch {
		case f.Type == "synced" && f.ID == "b":
			return c, buf, nil
		case f.Type == "error" && f.ID == "b":
			_ = c.Close()
			return nil, nil, errors.New("sync:error_" + f.Code)
		case f.Type == "msg":
			if buf, err = ack(c, buf, &f); err != nil {
				_ = c.Close()
				return nil, nil, errors.New("sync:write")
			}
		}
	}
}

// frame is the part of a server frame bench looks at.
type frame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Code string `json:"code"`
	Chat string `json:"chat"`
	Seq  uint64 `json:"seq"`
}

// ack acknowledges a msg frame at once (idle connections get few, if any:
// history of a reused user prefix).
func ack(c *wsc.Conn, buf []byte, f *frame) ([]byte, error) {
	buf = append(buf[:0], `{"type":"ack","chat":`...)
	buf = strconv.AppendQuote(buf, f.Chat)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendUint(buf, f.Seq, 10)
	buf = append(buf, '}')
	return buf, c.WriteText(buf)
}

// hold reads (and so answers pings, and acks any msg) until the
// connection ends.
func (h *holder) hold(c *wsc.Conn, buf []byte) {
	for {
		msg, err := c.ReadMessage()
		if err != nil {
			h.alive.Add(-1)
			if !h.stop.Load() {
				h.err("drop:" + readReason(err))
			}
			return
		}
		if strings.Contains(string(msg), `"type":"msg"`) {
			var f frame
			if json.Unmarshal(msg, &f) == nil {
				buf, _ = ack(c, buf, &f)
			}
		}
	}
}

func dialReason(err error) string {
	var he *wsc.HandshakeError
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

func readReason(err error) string {
	var ce *wsc.CloseError
	switch {
	case err == nil:
		return "not_hello"
	case errors.As(err, &ce):
		return "close_" + strconv.Itoa(ce.Code)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "reset"):
		return "reset"
	}
	return "other"
}

// snapshot reads the server's costs; readings that fail become notes.
func snapshot(ctx context.Context, cfg Config) (Snapshot, []string) {
	var s Snapshot
	var notes []string
	if cfg.ServerPID > 0 {
		rss, err := ReadRSS(cfg.ServerPID)
		if err != nil {
			notes = append(notes, err.Error())
		}
		s.RSS = rss
	}
	if rss, err := ReadRSS(os.Getpid()); err == nil {
		s.ClientRSS = rss
	}
	if st, err := ReadSockstat(); err != nil {
		notes = append(notes, err.Error())
	} else {
		s.Sockstat = st
	}
	if cfg.MetricsURL != "" {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := ScrapeMetrics(sctx, cfg.MetricsURL)
		cancel()
		if err != nil {
			notes = append(notes, err.Error())
		} else {
			s.HeapIn = m["go_memstats_heap_inuse_bytes"]
			s.HeapLive = m["go_memstats_next_gc_bytes"] / 2
			s.Stacks = m["go_memstats_stack_inuse_bytes"]
			s.Sys = m["go_memstats_sys_bytes"]
			s.Gorout = m["go_goroutines"]
		}
	}
	return s, notes
}

// WriteMarkdown writes the result as markdown tables.
func (r *Result) WriteMarkdown(w io.Writer) error {
	p := func(f string, a ...any) { fmt.Fprintf(w, f, a...) }
	p("## bench: %d idle connections held %.0fs\n\n", r.Target, r.HoldSec)
	p("| ramp-up | value |\n|---|---|\n")
	p("| established / target | %d / %d |\n", r.Established, r.Target)
	p("| held at the end | %d |\n", r.Held)
	p("| ramp time | %.2f s |\n", r.RampSec)
	p("| connections/s | %.0f |\n\n", r.ConnsPerSec)
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	p("| server cost | before | after | per connection |\n|---|---|---|---|\n")
	row := func(name string, b, a float64, fmtv func(float64) string) {
		p("| %s | %s | %s | %.0f B |\n", name, fmtv(b), fmtv(a), r.PerConn(b, a))
	}
	if r.Before.RSS > 0 {
		row("RSS (VmRSS)", float64(r.Before.RSS), float64(r.After.RSS), mib)
	}
	if r.Before.HeapIn > 0 || r.After.HeapIn > 0 {
		row("Go heap in use", r.Before.HeapIn, r.After.HeapIn, mib)
		row("Go live heap at last GC (est.)", r.Before.HeapLive, r.After.HeapLive, mib)
		row("Go stacks in use", r.Before.Stacks, r.After.Stacks, mib)
		p("| goroutines | %.0f | %.0f | %.3f |\n", r.Before.Gorout, r.After.Gorout, r.PerConn(r.Before.Gorout, r.After.Gorout))
	}
	row("kernel TCP memory, host (sockstat mem × 4 KiB)", float64(r.Before.Sockstat.MemBytes()), float64(r.After.Sockstat.MemBytes()), mib)
	p("| TCP sockets in use, host | %d | %d | %.2f |\n", r.Before.Sockstat.InUse, r.After.Sockstat.InUse,
		r.PerConn(float64(r.Before.Sockstat.InUse), float64(r.After.Sockstat.InUse)))
	p("| client RSS (this process) | %s | %s | %.0f B |\n\n", mib(float64(r.Before.ClientRSS)), mib(float64(r.After.ClientRSS)),
		r.PerConn(float64(r.Before.ClientRSS), float64(r.After.ClientRSS)))
	p("Per connection = (after − before) / held. Kernel figures are host-wide and include the client's end of each loopback connection.\n")
	if len(r.ErrorsByKind) > 0 {
		p("\n| error | count |\n|---|---|\n")
		for _, k := range slices.Sorted(maps.Keys(r.ErrorsByKind)) {
			p("| %s | %d |\n", k, r.ErrorsByKind[k])
		}
	} else {
		p("\nno errors\n")
	}
	for _, n := range r.Notes {
		p("\nnote: %s\n", n)
	}
	return nil
}
