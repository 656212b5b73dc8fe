package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/wsclient"
)

// ClientSpec is one client group's share of a run: the connections one
// process opens and holds.
type ClientSpec struct {
	URL             string        `json:"url"`
	Conns           int           `json:"conns"`
	SourceIPs       string        `json:"source_ips"`
	UserPrefix      string        `json:"user_prefix"`
	Sync            bool          `json:"sync"`
	DialConcurrency int           `json:"dial_concurrency"`
	DialTimeout     time.Duration `json:"dial_timeout"`
}

// ClientStats is a client group's progress.
type ClientStats struct {
	Established int64            `json:"established"` // connections that reached hello (and synced)
	Failed      int64            `json:"failed"`      // setups that failed
	Alive       int64            `json:"alive"`       // established and still open
	Pings       int64            `json:"pings"`       // server pings answered
	Ramped      bool             `json:"ramped"`      // every setup ended (established or failed)
	RampSec     float64          `json:"ramp_s"`      // first dial to the last establishment
	RSS         int64            `json:"rss_bytes"`   // the group's process RSS (anonymous: RssAnon)
	HeapInuse   uint64           `json:"heap_inuse"`  // the group's Go heap in use
	StackInuse  uint64           `json:"stack_inuse"` // the group's goroutine stacks
	CPUSec      float64          `json:"cpu_s"`       // the group's process CPU (user+system) so far
	Errors      map[string]int64 `json:"errors"`      // setup failures and drops by reason
}

// clients opens and holds one group's connections in this process: dials
// run on a bounded set of goroutines, and each upgraded socket is handed
// to a poller (one epoll goroutine) that answers pings and acks.
type clients struct {
	spec  ClientSpec
	tok   TokenFunc
	start time.Time
	p     *poller

	nEst, nFailed, nAlive, nPings atomic.Int64
	lastEst                       atomic.Int64 // unix ns of the last establishment
	dialing                       sync.WaitGroup
	dialsDone                     atomic.Bool

	mu   sync.Mutex // guards errs
	errs map[string]int64

	cancel context.CancelFunc
}

// startClients begins opening spec.Conns connections and returns at once.
func startClients(ctx context.Context, spec ClientSpec, tok TokenFunc) (*clients, error) {
	ips, err := wsclient.ParseIPRange(spec.SourceIPs)
	if err != nil {
		return nil, fmt.Errorf("cannot start clients: %w", err)
	}
	lim, err := RaiseNofile(spec.Conns)
	if err != nil {
		return nil, err
	}
	c := &clients{spec: spec, tok: tok, errs: map[string]int64{}, start: time.Now()}
	if c.p, err = newPoller(int(lim), spec.Sync, c); err != nil {
		return nil, err
	}
	ctx, c.cancel = context.WithCancel(ctx)
	u, err := url.Parse(spec.URL)
	if err != nil {
		return nil, fmt.Errorf("cannot parse url %q: %w", spec.URL, err)
	}
	q := u.Query()
	q.Set("device", "bench")
	u.RawQuery = q.Encode()
	target := u.String()
	c.dialing.Add(1)
	go func() {
		defer c.dialing.Done()
		sem := make(chan struct{}, max(1, spec.DialConcurrency))
		var wg sync.WaitGroup
		for i := range spec.Conns {
			if ctx.Err() != nil {
				c.failedN("dial:cancelled", int64(spec.Conns-i))
				break
			}
			var local net.IP
			if len(ips) > 0 {
				local = ips[i%len(ips)]
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				c.dialOne(ctx, target, fmt.Sprintf("%s-%d", spec.UserPrefix, i), local)
			})
		}
		wg.Wait()
		c.dialsDone.Store(true)
	}()
	return c, nil
}

// dialOne connects and upgrades one connection and hands it to the poller.
func (c *clients) dialOne(ctx context.Context, target, user string, local net.IP) {
	deadline := time.Now().Add(c.spec.DialTimeout)
	token, err := c.tok(user, "bench")
	if err != nil {
		c.failed("token")
		return
	}
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	wd := wsclient.Dialer{URL: target, Timeout: c.spec.DialTimeout}
	if local != nil {
		// Without IP_BIND_ADDRESS_NO_PORT, bind(addr, 0) picks a port free
		// on addr against every socket bound on that port number on any
		// address: with tens of thousands of sockets over many 127.x
		// addresses that search makes each dial cost milliseconds of kernel
		// time (a million-connection run crawled at 30 dials/s). With it the
		// port is chosen at connect, unique per 4-tuple.
		wd.Control = bindNoPort
	}
	nc, pending, err := wd.DialRaw(dctx, token, "", local)
	if err != nil {
		var he *wsclient.HandshakeError
		if errors.As(err, &he) {
			c.failed(fmt.Sprintf("dial:http_%d", he.Status))
			return
		}
		c.failed(dialReason(err))
		return
	}
	fd, err := detach(nc)
	if err != nil {
		c.failed("dial:detach")
		return
	}
	c.p.add(fd, pending, deadline)
}

// detach duplicates the socket of nc out of Go's poller (the duplicate
// shares the non-blocking file status) and closes nc.
func detach(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		nc.Close()
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		nc.Close()
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = dupCloexec(int(s))
	}); err != nil {
		derr = err
	}
	nc.Close()
	return fd, derr
}

func (c *clients) established(now time.Time) {
	c.nEst.Add(1)
	c.nAlive.Add(1)
	c.lastEst.Store(now.UnixNano())
}

func (c *clients) failed(reason string) { c.failedN(reason, 1) }

func (c *clients) failedN(reason string, n int64) {
	c.nFailed.Add(n)
	c.countErr(reason, n)
}

func (c *clients) dropped(reason string) {
	c.nAlive.Add(-1)
	c.countErr("drop:"+reason, 1)
}

func (c *clients) pinged() { c.nPings.Add(1) }

func (c *clients) countErr(reason string, n int64) {
	c.mu.Lock()
	c.errs[reason] += n
	c.mu.Unlock()
}

// stats returns the group's progress now.
func (c *clients) stats() ClientStats {
	s := ClientStats{
		Established: c.nEst.Load(),
		Failed:      c.nFailed.Load(),
		Alive:       c.nAlive.Load(),
		Pings:       c.nPings.Load(),
	}
	s.Ramped = c.dialsDone.Load() && s.Established+s.Failed >= int64(c.spec.Conns)
	if last := c.lastEst.Load(); last > 0 {
		s.RampSec = time.Duration(last - c.start.UnixNano()).Seconds()
	}
	if rss, err := ReadRssAnon(os.Getpid()); err == nil {
		s.RSS = rss
	}
	s.CPUSec, _ = ReadCPUSeconds(os.Getpid())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.HeapInuse, s.StackInuse = ms.HeapInuse, ms.StackInuse
	c.mu.Lock()
	s.Errors = maps.Clone(c.errs)
	c.mu.Unlock()
	return s
}

// release stops dialling and closes every connection.
func (c *clients) release() {
	c.cancel()
	c.dialing.Wait()
	c.p.stop()
}
