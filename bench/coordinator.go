package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// group is one set of client connections: in this process or in a child.
type group interface {
	stats() ClientStats
	release() ClientStats
}

type localGroup struct{ c *clients }

func (g localGroup) stats() ClientStats { return g.c.stats() }
func (g localGroup) release() ClientStats {
	s := g.c.stats()
	g.c.release()
	return s
}

// remoteGroup is a child process running Worker: it reads the spec from
// stdin and writes ClientStats lines to stdout.
type remoteGroup struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex // guards last, err
	last  ClientStats
	err   error
	done  chan struct{}
	once  sync.Once
}

func startRemote(ctx context.Context, argv []string, spec ClientSpec) (*remoteGroup, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	// One epoll goroutine and a few dialers: one scheduler slot is enough,
	// and dozens of client processes with more only spin and switch.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot start client process: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("cannot start client process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start client process %s: %w", argv[0], err)
	}
	g := &remoteGroup{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var s ClientStats
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				continue
			}
			g.mu.Lock()
			g.last = s
			g.mu.Unlock()
		}
		err := cmd.Wait()
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
	}()
	line, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(line, '\n')); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("cannot send spec to client process %d: %w", cmd.Process.Pid, err)
	}
	return g, nil
}

// signal asks the child to release its connections (it may take a while:
// dials in flight end at their timeout).
func (g *remoteGroup) signal() {
	g.once.Do(func() {
		_, _ = io.WriteString(g.stdin, "release\n")
		_ = g.stdin.Close()
	})
}

func (g *remoteGroup) stats() ClientStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.last
}

func (g *remoteGroup) release() ClientStats {
	g.signal()
	select {
	case <-g.done:
	case <-time.After(60 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	return g.stats()
}

// Worker is the body of a client process: it reads one ClientSpec line
// from r, opens and holds the connections, writes ClientStats lines to w
// every half second, and on a "release" line or the end of r closes
// everything and writes the final stats.
func Worker(ctx context.Context, r io.Reader, w io.Writer, tok TokenFunc) error {
	br := bufio.NewReader(r)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("cannot read client spec: %w", err)
	}
	var spec ClientSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("cannot parse client spec: %w", err)
	}
	c, err := startClients(ctx, spec, tok)
	if err != nil {
		return err
	}
	released := make(chan struct{})
	go func() {
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "release\n" {
				close(released)
				return
			}
		}
	}()
	enc := json.NewEncoder(w)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	freed := false
	for {
		select {
		case <-t.C:
			st := c.stats()
			if st.Ramped && !freed {
				// The dials' garbage (handshakes, tokens) is gone once every
				// connection is set up; return it so the client processes'
				// RSS shows what holding costs.
				debug.FreeOSMemory()
				freed = true
				st = c.stats()
			}
			if err := enc.Encode(st); err != nil {
				c.release()
				return fmt.Errorf("cannot write stats: %w", err)
			}
		case <-released:
			s := c.stats()
			c.release()
			return enc.Encode(s)
		case <-ctx.Done():
			c.release()
			return ctx.Err()
		}
	}
}

type coordinator struct {
	cfg      Config
	log      *slog.Logger
	progress io.Writer
	specs    []ClientSpec
	tok      TokenFunc
	groups   []group
}

// signalRelease asks every client process to release its connections,
// all at once, before any release waits for one to finish.
func (c *coordinator) signalRelease() {
	for _, g := range c.groups {
		if r, ok := g.(*remoteGroup); ok {
			r.signal()
		}
	}
}

func (c *coordinator) run(ctx context.Context) (*Result, error) {
	cfg := c.cfg
	res := &Result{Target: cfg.Conns, HeartbeatSec: cfg.HeartbeatInterval.Seconds()}
	if len(c.specs) > 1 {
		res.ClientProcs = len(c.specs) // else the clients run in this process
	}
	if mem, err := ReadMeminfo(); err == nil && cfg.MemFloor > 0 && mem.Available < cfg.MemFloor {
		return nil, fmt.Errorf("cannot start: MemAvailable %d MiB is below bench.mem_floor %d MiB", mem.Available>>20, cfg.MemFloor>>20)
	}
	res.Before = snapshot(ctx, cfg.Servers, &res.Notes)
	rampCPU0 := cpuByServer(cfg.Servers)
	start := time.Now()
	defer func() {
		c.signalRelease()
		for _, g := range c.groups {
			g.release()
		}
	}()
	for _, spec := range c.specs {
		var g group
		if res.ClientProcs == 0 {
			cl, err := startClients(ctx, spec, c.tok)
			if err != nil {
				return nil, err
			}
			g = localGroup{cl}
		} else {
			argv := cfg.Worker
			if cfg.ClientNice > 0 {
				if nice, err := exec.LookPath("nice"); err == nil {
					argv = append([]string{nice, "-n", strconv.Itoa(cfg.ClientNice)}, argv...)
				}
			}
			rg, err := startRemote(ctx, argv, spec)
			if err != nil {
				return nil, err
			}
			g = rg
		}
		c.groups = append(c.groups, g)
	}
	// Ramp: until every group has ramped, the memory floor is hit, or ctx ends.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	lastT := start
	for {
		select {
		case <-ctx.Done():
			res.StoppedBy = "interrupted"
		case now := <-tick.C:
			tot := c.total()
			if d := now.Sub(lastT).Seconds(); d > 0 {
				res.PeakConnsPerSec = max(res.PeakConnsPerSec, float64(tot.Established-last)/d)
			}
			mem, _ := ReadMeminfo()
			if c.progress != nil {
				fmt.Fprintf(c.progress, "%6.1fs established %8d (+%d/s) alive %8d failed %d  mem available %d MiB  server RssAnon %d MiB\n",
					now.Sub(start).Seconds(), tot.Established, tot.Established-last, tot.Alive, tot.Failed,
					mem.Available>>20, sumRSS(cfg.Servers)>>20)
			}
			last, lastT = tot.Established, now
			if cfg.MemFloor > 0 && mem.Available > 0 && mem.Available < cfg.MemFloor {
				res.StoppedBy = fmt.Sprintf("memory: MemAvailable %d MiB fell below bench.mem_floor %d MiB at %d connections", mem.Available>>20, cfg.MemFloor>>20, tot.Established)
			} else if limit := max(1000, int64(cfg.Conns)/20); tot.Failed > limit {
				res.StoppedBy = fmt.Sprintf("errors: %d setups failed (more than %d) at %d connections; most common: %s", tot.Failed, limit, tot.Established, topError(tot.Errors))
			} else if !tot.Ramped {
				continue
			}
		}
		break
	}
	tot := c.total()
	res.Established = tot.Established
	res.RampSec = tot.RampSec
	if res.RampSec > 0 {
		res.ConnsPerSec = float64(res.Established) / res.RampSec
	}
	c.log.Info("bench ramp done", "established", res.Established, "target", cfg.Conns, "ramp_s", res.RampSec)
	// Hold: CPU and pings over the window.
	cpu0 := cpuByServer(cfg.Servers)
	res.RampClientCPUSec = tot.CPUSec
	pings0 := tot.Pings
	hold0 := time.Now()
	if res.StoppedBy == "" {
		ht := time.NewTimer(cfg.Hold)
		for waiting := true; waiting; {
			select {
			case <-ht.C:
				waiting = false
			case <-ctx.Done():
				res.StoppedBy = "interrupted"
				waiting = false
			case now := <-tick.C:
				t := c.total()
				if c.progress != nil {
					fmt.Fprintf(c.progress, "%6.1fs holding %8d alive  pings answered %d  server RssAnon %d MiB\n",
						now.Sub(start).Seconds(), t.Alive, t.Pings-pings0, sumRSS(cfg.Servers)>>20)
				}
			}
		}
		ht.Stop()
	}
	res.HoldSec = time.Since(hold0).Seconds()
	cpu1 := cpuByServer(cfg.Servers)
	tot = c.total()
	res.Held = tot.Alive
	res.PingsInHold = tot.Pings - pings0
	res.After = snapshot(context.WithoutCancel(ctx), cfg.Servers, &res.Notes)
	for i, s := range cfg.Servers {
		sr := ServerResult{Server: s, Before: res.Before.Servers[i], After: res.After.Servers[i]}
		if s.PID > 0 {
			sr.Nice, _ = ReadNice(s.PID)
		}
		if cpu0[i] >= 0 && cpu1[i] >= 0 {
			sr.HoldCPUSec = cpu1[i] - cpu0[i]
		}
		if rampCPU0[i] >= 0 && cpu0[i] >= 0 {
			sr.RampCPUSec = cpu0[i] - rampCPU0[i]
		}
		res.Servers = append(res.Servers, sr)
	}
	res.ClientRSS, res.ClientHeap = tot.RSS, int64(tot.HeapInuse+tot.StackInuse)
	res.ErrorsByKind = tot.Errors
	c.signalRelease()
	for _, g := range c.groups {
		s := g.release()
		for k, v := range s.Errors {
			if _, ok := res.ErrorsByKind[k]; !ok || v > res.ErrorsByKind[k] {
				res.ErrorsByKind[k] = v
			}
		}
	}
	c.groups = nil
	if res.StoppedBy == "interrupted" {
		return res, context.Canceled
	}
	return res, nil
}

// total sums the groups' stats; RampSec is the slowest group's.
func (c *coordinator) total() ClientStats {
	t := ClientStats{Ramped: true, Errors: map[string]int64{}}
	for _, g := range c.groups {
		s := g.stats()
		t.Established += s.Established
		t.Failed += s.Failed
		t.Alive += s.Alive
		t.Pings += s.Pings
		t.RSS += s.RSS
		t.HeapInuse += s.HeapInuse
		t.StackInuse += s.StackInuse
		t.CPUSec += s.CPUSec
		t.Ramped = t.Ramped && s.Ramped
		t.RampSec = max(t.RampSec, s.RampSec)
		for k, v := range s.Errors {
			t.Errors[k] += v
		}
	}
	for _, g := range c.groups {
		if r, ok := g.(*remoteGroup); ok {
			r.mu.Lock()
			err := r.err
			r.mu.Unlock()
			if err != nil {
				t.Errors["client_process_exit"]++
			}
		}
	}
	return t
}

// topError names the most frequent error kind and its count.
func topError(errs map[string]int64) string {
	best, n := "", int64(-1)
	for k, v := range errs {
		if v > n || v == n && k < best {
			best, n = k, v
		}
	}
	return fmt.Sprintf("%s (%d)", best, n)
}

func sumRSS(servers []Server) int64 {
	var n int64
	for _, s := range servers {
		if s.PID > 0 {
			if v, err := ReadRssAnon(s.PID); err == nil {
				n += v
			}
		}
	}
	return n
}

// cpuByServer reads each server's user+system CPU seconds (-1: unknown).
func cpuByServer(servers []Server) []float64 {
	out := make([]float64, len(servers))
	for i, s := range servers {
		out[i] = -1
		if s.PID > 0 {
			if v, err := ReadCPUSeconds(s.PID); err == nil {
				out[i] = v
			}
		}
	}
	return out
}
