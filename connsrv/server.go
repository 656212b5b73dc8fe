package connsrv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/fasthttp"

	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/gostats"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/ring"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

// Close codes used by the server (see internal/proto for their meaning).
const (
	closeSlowConsumer = proto.CloseSlowConsumer
	closeIdle         = proto.CloseIdle
	closeRestart      = proto.CloseServiceRestart
)

// Server is the WebSocket connection tier: it holds client connections on
// gnet event loops and relays their messages to the logic tier.
type Server struct {
	cfg      Config
	verifier *auth.Verifier
	log      *slog.Logger
	m        *serverMetrics
	reg      *registry
	links    []*link
	linkTLS  *tls.Config // dialing logic nodes; nil: plain TCP
	// linkSecret is proved to logic nodes in the link handshake (empty:
	// mutual TLS).
	linkSecret tierlink.Secret
	// metricsToken is the bearer token /metrics asks for ("": none).
	metricsToken string
	nextID       atomic.Uint64
	running      atomic.Bool
	handler      *handler
	booted       chan struct{} // closed in OnBoot
	ready        chan struct{} // closed when booted and every link was up once
	everUp       atomic.Int32
	readyMu      sync.Mutex // guards readyDone
	readyOK      bool
	addrMu       sync.Mutex // guards addr and eng
	addr         string
	eng          gnet.Engine
	shutdown     atomic.Bool

	trusted []netip.Prefix // cfg.TrustedProxies
	ipl     *ipLimiter     // nil when cfg.IPConnRate is 0
}

// New returns a Server for cfg (zero fields take their defaults). verifier
// checks the clients' tokens; log may be nil (slog.Default()).
func New(cfg Config, verifier *auth.Verifier, log *slog.Logger) (*Server, error) {
	if verifier == nil {
		return nil, errors.New("cannot create connsrv server: nil verifier")
	}
	if log == nil {
		log = slog.Default()
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create connsrv server: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		verifier: verifier,
		log:      log.With("tier", "connsrv"),
		m:        newServerMetrics(),
		reg:      newRegistry(),
		booted:   make(chan struct{}),
		ready:    make(chan struct{}),
	}
	s.trusted, _ = parsePrefixes("trusted_proxies", cfg.TrustedProxies)
	exempt, _ := parsePrefixes("ip_rate_exempt", cfg.IPRateExempt)
	s.ipl = newIPLimiter(cfg.IPConnRate, cfg.IPConnBurst, exempt)
	if cfg.LinkTLS.ClientEnabled() {
		tc, err := tlsconf.ClientConfig(cfg.LinkTLS)
		if err != nil {
			return nil, fmt.Errorf("cannot create connsrv server: connsrv.link_tls: %w", err)
		}
		s.linkTLS = tc
	}
	s.linkSecret, _ = tierlink.LoadSecret("connsrv", cfg.LinkSecret, cfg.LinkSecretFile)                   // checked by Validate
	s.metricsToken, _ = adminauth.Load("connsrv", "metrics_token", cfg.MetricsToken, cfg.MetricsTokenFile) // checked by Validate
	for _, a := range cfg.LogicAddrs {
		for range cfg.LinkPoolSize {
			s.links = append(s.links, newLink(s, a, len(s.links)))
		}
	}
	s.handler = &handler{srv: s}
	return s, nil
}

// Ready returns a channel closed once the listener is bound and every logic
// link has connected once. Safe for concurrent use.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound WebSocket address ("host:port"), or "" before the
// listener is bound. Safe for concurrent use.
func (s *Server) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Sessions returns the number of client connections (in handshake or
// upgraded). Safe for concurrent use.
func (s *Server) Sessions() int { return s.reg.count() }

// LinksUp returns how many logic links are connected. Safe for concurrent use.
func (s *Server) LinksUp() int {
	n := 0
	for _, l := range s.links {
		if l.isUp() {
			n++
		}
	}
	return n
}

func (s *Server) linkFirstUp() {
	s.everUp.Add(1)
	s.maybeReady()
}

func (s *Server) maybeReady() {
	select {
	case <-s.booted:
	default:
		return
	}
	if int(s.everUp.Load()) < len(s.links) {
		return
	}
	s.readyMu.Lock()
	if !s.readyOK {
		s.readyOK = true
		close(s.ready)
	}
	s.readyMu.Unlock()
}

// Run serves until ctx is cancelled, then drains: it refuses new
// connections at once, tells the clients to reconnect elsewhere (goaway,
// then 1001) in batches spread over DrainWindow (all at once when 0),
// flushes the logic links, stops the event loops and closes the links. It returns
// nil on a clean stop and an error when the listener cannot be started.
// Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("cannot run connsrv server: already running")
	}
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range s.links {
		wg.Go(func() { l.run(bg) })
	}
	wg.Go(func() { s.sweep(bg) })

	var hs *fasthttp.Server
	var hln net.Listener
	if s.cfg.HTTPListen != "" {
		ln, err := net.Listen("tcp", s.cfg.HTTPListen)
		if err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("cannot listen for http on %s: %w", s.cfg.HTTPListen, err)
		}
		hln = ln
		hs = &fasthttp.Server{Handler: s.serveHTTP, Name: "parley-connsrv", NoDefaultServerHeader: true}
		wg.Go(func() { _ = hs.Serve(ln) })
	}

	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s.handler, s.cfg.Listen, s.gnetOptions()...)
	}()
	stopAll := func() {
		if hs != nil {
			_ = hs.Shutdown()
			_ = hln.Close() // Shutdown before Serve started would not stop Serve
		}
		cancel()
		wg.Wait()
	}
	select {
	case err := <-errc:
		stopAll()
		if err == nil {
			err = errors.New("engine stopped")
		}
		return fmt.Errorf("cannot serve websocket on %s: %w", s.cfg.Listen, err)
	case <-s.booted:
	}
	select {
	case err := <-errc:
		stopAll()
		if err == nil {
			return nil
		}
		return fmt.Errorf("cannot serve websocket on %s: %w", s.cfg.Listen, err)
	case <-ctx.Done():
	}

	// Going away: refuse new connections at once (readyz turns 503), tell
	// the clients to reconnect elsewhere, spread over the drain window,
	// let the loops write the close frames and the links carry the last
	// client frames and Close frames to logic, then stop the engine.
	s.shutdown.Store(true)
	s.drain(s.cfg.DrainWindow)
	deadline := time.Now().Add(2 * time.Second)
	for s.reg.count() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.flushLinks(time.Now().Add(time.Second))
	s.addrMu.Lock()
	eng := s.eng
	s.addrMu.Unlock()
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := eng.Stop(stopCtx)
	stopCancel()
	if err != nil {
		s.log.Warn("cannot stop event loops cleanly", "err", err)
	}
	<-errc
	stopAll()
	return nil
}

func (s *Server) gnetOptions() []gnet.Option {
	nd := gnet.TCPDelay
	if s.cfg.TCPNoDelay {
		nd = gnet.TCPNoDelay
	}
	return []gnet.Option{
		gnet.WithMulticore(s.cfg.Multicore),
		gnet.WithNumEventLoop(s.cfg.NumEventLoop),
		gnet.WithReusePort(s.cfg.ReusePort),
		gnet.WithReuseAddr(true), // rebind at once after a crash or restart (TIME_WAIT)
		gnet.WithReadBufferCap(s.cfg.ReadBufferCap),
		gnet.WithWriteBufferCap(s.cfg.WriteBufferCap),
		gnet.WithSocketRecvBuffer(s.cfg.SocketRecvBuffer),
		gnet.WithSocketSendBuffer(s.cfg.SocketSendBuffer),
		gnet.WithTCPNoDelay(nd),
		gnet.WithLogger(gnetLogger{s.log.With("component", "gnet")}),
	}
}

// onBoot records the engine and the bound address.
func (s *Server) onBoot(eng gnet.Engine) {
	addr := ""
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			addr = sockaddrString(sa)
		}
		_ = syscall.Close(fd)
	}
	s.addrMu.Lock()
	s.eng = eng
	s.addr = addr
	s.addrMu.Unlock()
	s.log.Info("websocket listener up", "addr", addr, "links", len(s.links))
	close(s.booted)
	s.maybeReady()
}

func sockaddrString(sa syscall.Sockaddr) string {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	case *syscall.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	case *syscall.SockaddrUnix:
		return a.Name
	}
	return ""
}

// deliver queues one server frame for a session. Safe for concurrent use.
func (s *Server) deliver(id uint64, payload []byte) {
	ss := s.reg.get(id)
	if ss == nil {
		s.m.drop(dropNoSession)
		return
	}
	if ss.state.Load() != stateOpen {
		s.m.drop(dropClosing)
		return
	}
	if ss.enqueue(s, opText, payload) {
		s.m.framesOut.Inc()
	}
}

// linkLost closes every session opened on generation gen of l with 1012:
// logic lost their state, so clients reconnect and resync.
func (s *Server) linkLost(l *link, gen uint64) {
	n := 0
	s.reg.each(func(ss *session) {
		if ss.link.Load() == l && ss.gen.Load() == gen {
			ss.closeAsync(closeRestart, "logic link lost")
			n++
		}
	})
	if n > 0 {
		s.log.Warn("closed sessions of a lost logic link", "link", l.idx, "sessions", n)
	}
}

// sweep pings silent clients, closes idle ones and handshakes that take
// too long; one goroutine for all connections.
func (s *Server) sweep(ctx context.Context) {
	tick := min(s.cfg.HeartbeatInterval, s.cfg.IdleTimeout, s.cfg.HandshakeTimeout) / 4
	tick = max(min(tick, time.Second), 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	hb, idle, hsTimeout := int64(s.cfg.HeartbeatInterval), int64(s.cfg.IdleTimeout), int64(s.cfg.HandshakeTimeout)
	var ipSwept int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		if s.ipl != nil && now-ipSwept >= int64(time.Second) {
			ipSwept = now
			s.m.ipBuckets.Set(float64(s.ipl.sweep(now)))
		}
		s.reg.each(func(ss *session) {
			last := ss.lastActive.Load()
			switch ss.state.Load() {
			case stateHandshake:
				if now-last > hsTimeout {
					ss.closeAsync(proto.ClosePolicy, "handshake timeout")
				}
			case stateOpen:
				switch {
				case ss.expires.Load() != 0 && now > ss.expires.Load():
					ss.closeAsync(proto.CloseTokenExpired, "token expired")
				case now-last > idle:
					ss.closeAsync(closeIdle, "idle timeout")
				case now-last > hb && ss.pingedAt != uint32(last):
					ss.pingedAt = uint32(last)
					ss.enqueue(s, opPing, nil)
				}
			}
		})
	}
}

// admit takes a token of the per-IP connection rate for a new connection
// (its remote address is final: after the PROXY header when that is on);
// over the rate, the upgrade will be answered with 429. Loop only.
func (s *Server) admit(ss *session) {
	if s.ipl == nil {
		return
	}
	remote := ss.remote()
	if !remote.IsValid() {
		return
	}
	switch res, wait := s.ipl.allow(remote.Addr(), time.Now().UnixNano()); res {
	case ipLimited:
		ss.limitedFor = int32(retryAfterSeconds(wait))
		s.m.reject(rejectIPRate)
		s.log.Debug("connection over the per-ip rate", "conn_id", ss.id, "remote", remote.String())
	case ipTableFull:
		s.m.ipFull.Inc()
	}
}

// serveHTTP answers /healthz, /readyz and /metrics.
func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/healthz":
		ctx.SetBodyString("ok\n")
	case "/readyz":
		select {
		case <-s.ready:
		default:
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready: listener or logic links not up yet\n")
			return
		}
		// Ready while any logic node is reachable: users are routed among
		// the logic nodes with an up link, so a rolling restart of the
		// logic tier must not take every connection node out of its load
		// balancer at once.
		if s.shutdown.Load() || s.LinksUp() == 0 {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.SetBodyString("not ready: shutting down or no logic link up\n")
			return
		}
		ctx.SetBodyString("ok\n")
	case "/metrics":
		if !adminauth.Allowed(string(ctx.Request.Header.Peek("Authorization")), s.metricsToken) {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="parley-metrics"`)
			ctx.SetStatusCode(fasthttp.StatusUnauthorized)
			return
		}
		ctx.SetContentType("text/plain; version=0.0.4")
		s.m.set.WritePrometheus(ctx)
		metrics.WriteProcessMetrics(ctx) // go_memstats_*, process_* for density tuning
		gostats.Write(ctx)
	default:
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	}
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }

// pickLink returns an up link to the user's home logic node: the node that
// wins the rendezvous hash of the user among the logic nodes with an up
// link (the logic tier computes the same ring), then one of that node's
// pooled links by session id. nil when no link is up. Safe for concurrent
// use.
func (s *Server) pickLink(user string, session uint64) *link {
	// One pass over the links: a link that goes down between two reads
	// must not leave the home node without a candidate.
	var buf [64]struct {
		l    *link
		node string
	}
	up := buf[:0]
	var nbuf [16]string
	nodes := nbuf[:0]
	for _, l := range s.links {
		if id := l.upNode(); id != "" {
			up = append(up, struct {
				l    *link
				node string
			}{l, id})
			if !slices.Contains(nodes, id) {
				nodes = append(nodes, id)
			}
		}
	}
	home := ring.Owner(user, nodes)
	if home == "" {
		return nil
	}
	var cbuf [16]*link
	cand := cbuf[:0]
	for _, u := range up {
		if u.node == home {
			cand = append(cand, u.l)
		}
	}
	return cand[session%uint64(len(cand))] // home came from up: never empty
}

// NodeID returns the node id this server announces to logic nodes.
// Safe for concurrent use.
func (s *Server) NodeID() string { return s.cfg.NodeID }
