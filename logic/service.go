package logic

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
	"github.com/parley-chat/parley/logic/breaker"
	"github.com/parley-chat/parley/logic/lease"
	"github.com/parley-chat/parley/logic/marks"
)

var (
	requestsOverloaded = metrics.NewCounter(`parley_logic_requests_rejected_total{reason="overloaded"}`)
	presenceDropped    = metrics.NewCounter(`parley_logic_presence_events_dropped_total`)
	acksDropped        = metrics.NewCounter(`parley_logic_acks_dropped_total{reason="queue_full"}`)
	queueOverdue       = metrics.NewCounter(`parley_logic_requests_rejected_total{reason="queue_deadline"}`)
	acksOverdue        = metrics.NewCounter(`parley_logic_acks_dropped_total{reason="queue_deadline"}`)
	sessionsReplaced   = metrics.NewCounter(`parley_logic_sessions_replaced_total`)
)

func errorsTotal(code string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`parley_logic_errors_total{code="` + code + `"}`)
}

// replier receives the answer frames of one request. The frame is only
// valid during the call: implementations copy it.
type replier interface {
	reply(frame []byte)
}

// reply implements replier for a session.
func (s *session) reply(frame []byte) { s.deliver(frame) }

// request is one client request on its way to a shard worker or a reader.
type request struct {
	in     proto.Inbound
	user   string
	device string
	from   *session // nil for HTTP requests
	out    replier
	chat   string // resolved chat id (send to a user -> direct chat id)
	recv   time.Time
	// raw is the client frame as received; valid only during dispatch
	// (forwarding copies it).
	raw []byte
	// forwarded is set on a request another logic node forwarded here: it
	// runs here whoever owns the chat now, and is not rate limited again.
	forwarded bool

	// A group change's system message in the sequencer core (shard.go,
	// appendSystem); used only by the chat's shard worker.
	system bool
	extra  []string // users beyond the members who get the event
	sysSeq uint64   // the event's seq once stored
	sysErr error    // why it was not stored
	// leaseEpoch is the epoch of the chat's lease a group change started
	// under (sequencing under leases).
	leaseEpoch uint64
}

// Service is a logic node. Construct with New, bind with Listen, then Run.
type Service struct {
	cfg      Config
	store    Store // the caller's store behind the circuit breaker
	breaker  *breaker.Breaker
	lag      *schedLag // the node's own wait for a CPU (the breaker excuses it; a gauge shows it)
	presence Presence
	rel      *relations     // who may see whose presence
	settings *settingsCache // users' settings (hide last seen)
	overload overloadLog    // requests refused for overload, logged now and then
	verifier *auth.Verifier
	log      *slog.Logger
	now      func() time.Time

	reg        *registry
	shards     []*shard
	readSem    chan struct{}
	presenceQ  chan presenceEvent
	catchupSem chan struct{}
	dwatch     deliveryWatch // sessions the delivery loop looks at
	sendLimit  *rateLimiter
	pushQ      chan PushEvent
	notifier   atomic.Pointer[notifierBox]
	dir        Directory // nil without a fleet directory
	// seenRefresh is set while a refreshAllSeen pass runs; seenAgain asks
	// it for one more pass.
	seenRefresh atomic.Bool
	seenAgain   atomic.Bool
	// quit is closed when Run begins to stop; background goroutines
	// (started by background) watch it, and Run waits for them in bg.
	quit      chan struct{}
	bg        sync.WaitGroup
	bgMu      sync.Mutex // guards bgStopped
	bgStopped bool       // Run is stopping: background starts nothing
	cluster   *cluster   // nil for a single node without peers or directory
	// leaseStore and leases: sequencing under leases (SetLeases); nil
	// otherwise. fencer is leaseStore's Fence behind the breaker.
	leaseStore LeaseStore
	leases     *lease.Keeper
	marks      *marks.Writer // coalesced cursor and read-marker writes
	fencer     func(ctx context.Context, chatID string, epoch uint64, span int) (uint64, error)
	// vapidPublicKey is served by GET /v1/push/vapid; atomic, so
	// SetVAPIDPublicKey (push_http.go) is safe before or after Run.
	vapidPublicKey atomic.Pointer[string]

	linkLn  net.Listener
	httpLn  net.Listener
	adminLn net.Listener // /metrics, /healthz, /readyz; nil: none
	peerTLS *tls.Config  // dialing other logic nodes; nil: plain TCP
	linkTLS *tls.Config  // the link listener's; nil: plain TCP
	// linkSecret authenticates tier and peer links (empty: mutual TLS).
	linkSecret tierlink.Secret
	tlsStops   []func() // certificate reloaders
	http       *fasthttp.Server
	admin      *fasthttp.Server
	adminToken string                  // bearer token /metrics asks for; empty: none
	web        fasthttp.RequestHandler // static files of the web client; nil when logic.web_dir is empty
	ready      chan struct{}
	health     healthState
}

type presenceEvent struct {
	user   string
	online bool
	at     time.Time
	// chat, when set, is a 1-on-1 chat that just became mutual
	// (relations.go) instead of a presence change; with check, one that may
	// have (the presence loop reads it first).
	chat  string
	check bool
}

type healthState struct {
	mu       sync.Mutex // guards the following
	draining bool
}

// SetNotifier installs the push notifier (nil: push events are counted and
// dropped). Call before Run.
// Safe for concurrent use.
func (s *Service) SetNotifier(n Notifier) { s.notifier.Store(&notifierBox{n}) }

type notifierBox struct{ Notifier }

// SetLeases makes the node sequence chats only under leases kept in ls
// (logic/lease), which must be the store New was given: required when the
// store sequences under leases (store.scylla.sequencing: lease). Call before
// Run. Not safe for concurrent use.
func (s *Service) SetLeases(ls LeaseStore) {
	s.leaseStore = ls
	s.fencer = func(ctx context.Context, chatID string, epoch uint64, span int) (head uint64, err error) {
		err = s.breaker.Call(func() (e error) { head, e = ls.Fence(ctx, chatID, epoch, span); return })
		return head, err
	}
}

// SetDirectory makes the node part of a fleet that shares device locations
// and the node registry through d (Redis). Call before Run.
// Not safe for concurrent use.
func (s *Service) SetDirectory(d Directory) { s.dir = d }

// New returns a logic node using store and presence. verifier authenticates
// HTTP API requests (WebSocket sessions are authenticated by connsrv).
func New(cfg Config, store Store, presence Presence, verifier *auth.Verifier, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot create logic node: %w", err)
	}
	if store == nil || verifier == nil {
		return nil, errors.New("cannot create logic node: store and verifier are required")
	}
	if presence == nil {
		presence = NewMemPresence()
	}
	if cfg.NodeID == "" {
		cfg.NodeID = Default().NodeID
	}
	if log == nil {
		log = slog.Default()
	}
	lag := newSchedLag(lagInterval)
	brk := breaker.New(cfg.Breaker, breaker.Options{Failed: storeFailed, Lag: lag, Metrics: storeMetrics, Log: log.With("component", "breaker")})
	s := &Service{
		cfg: cfg, store: guardedStore{s: store, b: brk}, breaker: brk, lag: lag, presence: presence, verifier: verifier, log: log, now: time.Now,
		reg:     newRegistry(),
		readSem: make(chan struct{}, cfg.ReadWorkers),
		ready:   make(chan struct{}),
	}
	s.linkSecret, _ = tierlink.LoadSecret("logic", cfg.LinkSecret, cfg.LinkSecretFile) // checked by Validate
	s.adminToken, _ = adminToken(cfg)                                                  // checked by Validate
	s.rel = newRelations(s.store, s.now)
	s.settings = newSettingsCache(s.store, func() time.Time { return s.now() })
	s.overload.log = log
	s.presenceQ = make(chan presenceEvent, 4096)
	s.catchupSem = make(chan struct{}, cfg.CatchupWorkers)
	s.quit = make(chan struct{})
	s.sendLimit = newRateLimiter(cfg.SendRate, cfg.SendBurst)
	s.pushQ = make(chan PushEvent, 4096)
	s.marks = marks.New(marks.Config{Interval: cfg.MarksInterval, Timeout: cfg.StoreTimeout}, s.store, log.With("component", "marks"))
	s.shards = make([]*shard, cfg.Shards)
	for i := range s.shards {
		s.shards[i] = newShard(s)
	}
	return s, nil
}

// Listen binds the tier-link and HTTP listeners, so that their addresses
// are known before Run. Not safe for concurrent use.
func (s *Service) Listen() error {
	ln := s.linkLn // set by SetLinkListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.LinkListen); err != nil {
			return fmt.Errorf("cannot listen for tier links on %s: %w", s.cfg.LinkListen, err)
		}
	}
	var err error
	fail := func(err error) error {
		_ = ln.Close()
		if s.httpLn != nil {
			_ = s.httpLn.Close()
		}
		if s.adminLn != nil {
			_ = s.adminLn.Close()
		}
		s.stopTLS()
		return err
	}
	if s.cfg.LinkTLS.ServerEnabled() {
		conf, stop, err := tlsconf.ServerConfig(s.cfg.LinkTLS, s.log)
		if err != nil {
			return fail(fmt.Errorf("logic.link_tls: %w", err))
		}
		s.tlsStops = append(s.tlsStops, stop)
		ln = tls.NewListener(ln, conf)
		s.linkTLS = conf
	}
	if s.cfg.LinkTLS.ClientEnabled() {
		if s.peerTLS, err = tlsconf.ClientConfig(s.cfg.LinkTLS); err != nil {
			return fail(fmt.Errorf("logic.link_tls: %w", err))
		}
	}
	s.linkLn = ln
	if s.cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", s.cfg.HTTPListen)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for HTTP on %s: %w", s.cfg.HTTPListen, err))
		}
		s.httpLn = hl
		if s.cfg.HTTPTLS.ServerEnabled() {
			conf, stop, err := tlsconf.ServerConfig(s.cfg.HTTPTLS, s.log)
			if err != nil {
				return fail(fmt.Errorf("logic.http_tls: %w", err))
			}
			s.tlsStops = append(s.tlsStops, stop)
			s.httpLn = tls.NewListener(hl, conf)
		}
		s.httpLn = lingerListener{s.httpLn}
	}
	if s.cfg.AdminListen != "" {
		al, err := net.Listen("tcp", s.cfg.AdminListen)
		if err != nil {
			return fail(fmt.Errorf("cannot listen for the admin HTTP on %s: %w", s.cfg.AdminListen, err))
		}
		s.adminLn = al
	}
	return nil
}

// AdminAddr returns the admin listener's address ("" when there is none).
// Valid after Listen.
func (s *Service) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// stopTLS ends the certificate reloaders.
func (s *Service) stopTLS() {
	for _, stop := range s.tlsStops {
		stop()
	}
	s.tlsStops = nil
}

// SetLinkListener makes Listen take tier links from ln instead of binding
// logic.link_listen (standalone links its two tiers in process,
// internal/memlink); logic.link_tls, if set, still wraps it. Call it
// before Listen.
func (s *Service) SetLinkListener(ln net.Listener) { s.linkLn = ln }

// LinkAddr returns the bound tier-link address (after Listen).
func (s *Service) LinkAddr() string { return s.linkLn.Addr().String() }

// HTTPAddr returns the bound HTTP address (after Listen), or "".
func (s *Service) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Ready is closed once Run serves requests.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx is cancelled, then stops accepting, lets shard
// workers finish the batch they hold, and returns. It calls Listen if the
// caller did not.
func (s *Service) Run(ctx context.Context) error {
	if s.linkLn == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	if s.dir != nil || len(s.cfg.Cluster.Peers) > 0 || s.cfg.Cluster.Enabled {
		s.cluster = newCluster(s, s.dir)
	}
	if s.leaseStore != nil {
		k, err := lease.New(s.cfg.Lease, s.cfg.NodeID, s.leaseStore, s.wantSlot, time.Now, s.log.With("component", "lease"))
		if err != nil {
			return fmt.Errorf("cannot sequence under leases: %w", err)
		}
		k.SetAlive(s.nodeAlive)
		s.leases = k
	}
	// The sequencer cores are made again here, once SetDirectory has said
	// whether this node is part of a fleet (singleWriter).
	for _, sh := range s.shards {
		sh.core = newCore(s)
	}
	// The background work ends in its own order at shutdown (stop and the
	// contexts below), not when ctx does; it keeps ctx's values.
	base := context.WithoutCancel(ctx)
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for _, sh := range s.shards {
		workers.Add(1)
		go func() {
			defer workers.Done()
			sh.run(stop)
		}()
	}
	workers.Add(4)
	go func() {
		defer workers.Done()
		s.lag.run(stop)
	}()
	go func() {
		defer workers.Done()
		s.presenceLoop(base, stop)
	}()
	go func() {
		defer workers.Done()
		s.deliveryLoop(stop)
	}()
	go func() {
		defer workers.Done()
		s.pushLoop(base, stop)
	}()
	clusterCtx, stopCluster := context.WithCancel(base)
	defer stopCluster()
	// The lease keeper stops after the shard workers: it releases the
	// leases once nothing sequences under them any more.
	leaseCtx, stopLeases := context.WithCancel(base)
	defer stopLeases()
	// The marks writer stops after the shard workers too, and writes what
	// they left.
	marksCtx, stopMarks := context.WithCancel(base)
	defer stopMarks()
	marksDone := make(chan struct{})
	go func() {
		defer close(marksDone)
		s.marks.Run(marksCtx)
	}()
	leasesDone := make(chan struct{})
	if k := s.leases; k != nil {
		go func() {
			defer close(leasesDone)
			k.Run(leaseCtx)
		}()
	} else {
		close(leasesDone)
	}
	if c := s.cluster; c != nil {
		workers.Add(2)
		go func() {
			defer workers.Done()
			c.run(clusterCtx)
		}()
		go func() {
			defer workers.Done()
			c.directoryLoop(base, stop)
		}()
	}

	// The links outlive ctx until the goaways are written on them: their
	// server closes every accepted link when its context ends.
	linkCtx, stopLinks := context.WithCancel(base)
	defer stopLinks()
	errc := make(chan error, 2)
	var servers sync.WaitGroup
	servers.Add(1)
	go func() {
		defer servers.Done()
		errc <- serveLinks(linkCtx, s.linkLn, s.cfg, s.linkSecret, s.linkTLS, s, s.log)
	}()
	if s.httpLn != nil {
		s.http = s.newHTTPServer()
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := s.http.Serve(s.httpLn); err != nil {
				errc <- fmt.Errorf("cannot serve HTTP: %w", err)
			}
		}()
	}
	if s.adminLn != nil {
		s.admin = s.newAdminServer()
		servers.Add(1)
		go func() {
			defer servers.Done()
			if err := s.admin.Serve(s.adminLn); err != nil {
				errc <- fmt.Errorf("cannot serve the admin HTTP: %w", err)
			}
		}()
	}
	if k := s.leases; k != nil {
		// Sequencing starts with the leases: wait for the first round of
		// acquisitions (bounded: a slot held by a dead node is taken over
		// later anyway).
		select {
		case <-k.Ready():
		case <-time.After(k.Config().Duration):
		case <-ctx.Done():
		}
	}
	close(s.ready)
	s.log.Info("logic node up", "node", s.cfg.NodeID, "link", s.LinkAddr(), "http", s.HTTPAddr())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.health.mu.Lock()
	s.health.draining = true
	s.health.mu.Unlock()
	if runErr == nil {
		// Ask clients to come back in a spread-out way; connection nodes
		// will close them (1012) when the links go.
		s.goawayAll(2*time.Second, time.Second)
	}
	stopLinks()
	// Shutdown returns at once when it runs before Serve has registered
	// its listener (a Run stopped as it starts), and that Serve would then
	// accept for good: close the listeners too, which ends Serve either
	// way.
	if s.http != nil {
		_ = s.http.Shutdown()
		_ = s.httpLn.Close()
	}
	if s.admin != nil {
		_ = s.admin.Shutdown()
		_ = s.adminLn.Close()
	}
	_ = s.linkLn.Close()
	servers.Wait()
	stopCluster()
	close(stop)
	s.bgMu.Lock()
	s.bgStopped = true
	s.bgMu.Unlock()
	close(s.quit)
	workers.Wait()
	s.bg.Wait()
	stopMarks()
	<-marksDone
	stopLeases()
	<-leasesDone
	s.stopTLS()
	s.log.Info("logic node stopped", "node", s.cfg.NodeID)
	return runErr
}

// background runs fn in a goroutine that Run waits for before it
// returns; fn must return soon after s.quit is closed. Once Run began to
// stop it starts nothing and reports false. Safe for concurrent use.
func (s *Service) background(fn func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgStopped {
		return false
	}
	s.bg.Go(fn)
	return true
}

// onOpen registers a session and greets its client.
func (s *Service) onOpen(l *link, id uint64, o tierlink.Open) {
	if !record.ValidID(o.User) || !record.ValidID(o.Device) {
		l.kick(id, proto.CloseAuthFailed, "invalid user or device id")
		return
	}
	sess := &session{link: l, id: id, user: o.User, device: o.Device, remote: o.Remote, opened: s.now()}
	first := s.reg.add(sess)
	s.watchOpen(sess)
	if max := s.cfg.MaxSessionsPerUser; max > 0 {
		if old := s.reg.oldestOver(o.User, max); old != nil {
			sessionsReplaced.Inc()
			s.log.Info("session over the per-user limit closed", "user_id", o.User, "device_id", old.device, "limit", max)
			old.link.kick(old.id, proto.CloseReplaced, fmt.Sprintf("more than %d connections for this user", max))
		}
	}
	var buf [256]byte
	sess.deliver(proto.AppendHello(buf[:0], o.User, o.Device, id, s.cfg.HeartbeatInterval.Milliseconds()))
	if c := s.cluster; c != nil {
		c.queueDir(dirEvent{loc: c.location(sess), attach: true})
	}
	if first {
		s.queuePresence(presenceEvent{user: o.User, online: true, at: s.now()})
	}
	s.log.Debug("session open", "node", l.node, "session", id, "user_id", o.User, "device_id", o.Device)
}

// onClose unregisters a session.
func (s *Service) onClose(l *link, id uint64, code uint16) {
	sess, last := s.reg.remove(l, id)
	if sess == nil {
		return
	}
	sess.closeDelivery()
	if c := s.cluster; c != nil {
		c.queueDir(dirEvent{loc: c.location(sess)})
	}
	if last {
		s.queuePresence(presenceEvent{user: sess.user, online: false, at: s.now()})
	}
	s.log.Debug("session closed", "session", id, "user_id", sess.user, "code", code)
}

// onLinkDown drops every session of a link: its connection node closes
// those clients, which reconnect.
func (s *Service) onLinkDown(l *link) {
	if c := s.cluster; c != nil {
		for _, sess := range s.reg.linkSessions(l) {
			c.queueDir(dirEvent{loc: c.location(sess)})
		}
	}
	for _, u := range s.reg.removeLink(l) {
		s.queuePresence(presenceEvent{user: u, online: false, at: s.now()})
	}
}

// rateLimited takes one of the user's send tokens for r (a forwarded
// request was counted on its first node) and, when none is left, refuses r
// with rate_limited and reports true.
func (s *Service) rateLimited(r *request) bool {
	if ok, wait := s.sendLimit.allow(r.user, s.now()); !r.forwarded && !ok {
		rateLimited.Inc()
		s.rejectRequest(r, &proto.Error{Code: proto.CodeRateLimited,
			Message:      fmt.Sprintf("more than %g messages per second (burst %d)", s.cfg.SendRate, s.cfg.SendBurst),
			RetryAfterMS: max(1, wait.Milliseconds())})
		return true
	}
	return false
}

// needsID reports whether a request of type typ is answered (so needs an
// id to match the answer): every known type but ack, read and ping.
func needsID(typ string) bool {
	switch typ {
	case proto.TypeSend, proto.TypeHistory, proto.TypeChats, proto.TypeMembers, proto.TypePresence, proto.TypeSync,
		proto.TypeSettings, proto.TypeGroupCreate, proto.TypeGroupAdd, proto.TypeGroupRemove, proto.TypeGroupLeave, proto.TypeGroupRole:
		return true
	}
	return false
}

// onData decodes one client frame and dispatches it. It runs on the link's
// reader goroutine and must not block.
func (s *Service) onData(l *link, id uint64, payload []byte) {
	sess := s.reg.get(l, id)
	if sess == nil {
		l.kick(id, proto.CloseServiceRestart, "unknown session")
		return
	}
	in, err := proto.Decode(payload)
	if err != nil {
		s.replyErr(sess, in.ID, err)
		return
	}
	s.dispatch(&request{in: in, user: sess.user, device: sess.device, from: sess, out: sess, recv: s.now(), raw: payload})
}

// dispatch routes a decoded request to its shard worker or the read pool.
func (s *Service) dispatch(r *request) {
	in := &r.in
	if in.ID == "" && needsID(in.Type) {
		// Its answer could not be matched (and carries the id).
		s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "%s needs an id (request id): 1-64 of [A-Za-z0-9-_.@]", in.Type))
		return
	}
	switch {
	case in.Type == proto.TypeGroupCreate, in.Type == proto.TypeGroupAdd, in.Type == proto.TypeGroupRemove,
		in.Type == proto.TypeGroupLeave, in.Type == proto.TypeGroupRole:
		// Group changes store messages too, and a retried one may read
		// the chat (laterChange): they share the send rate.
		if s.rateLimited(r) {
			return
		}
	case in.Type == proto.TypeSettings && in.HideLastSeen != nil:
		// A change is a synced write.
		if s.rateLimited(r) {
			return
		}
	}
	switch in.Type {
	case proto.TypePing:
		s.requestDone(r, nil)
		var buf [96]byte
		r.out.reply(proto.AppendPong(buf[:0], in.ID, s.now().UnixMilli()))
		return
	case proto.TypeSync:
		if r.from == nil {
			s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "sync needs a WebSocket session"))
			return
		}
		s.startSync(r.from, r)
		return
	case proto.TypeHistory, proto.TypeChats, proto.TypeMembers, proto.TypePresence, proto.TypeSettings:
		select {
		case s.readSem <- struct{}{}:
			go func() {
				defer func() { <-s.readSem }()
				s.handleRead(r)
			}()
		default:
			requestsOverloaded.Inc()
			s.rejectRequest(r, &proto.Error{Code: proto.CodeOverloaded, Message: "too many concurrent reads", RetryAfterMS: 100})
		}
		return
	case proto.TypeSend:
		if s.rateLimited(r) {
			return
		}
		if in.To != "" {
			if in.Chat != "" {
				s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "send takes chat or to, not both"))
				return
			}
			if !record.ValidID(in.To) {
				s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "to is not a valid user id"))
				return
			}
			if in.To == r.user {
				s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "cannot open a 1-on-1 chat with yourself"))
				return
			}
			r.chat = record.DirectChatID(r.user, in.To)
		} else {
			r.chat = in.Chat
		}
	case proto.TypeGroupCreate:
		if !record.ValidID(in.ID) {
			s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "group_create needs an id (request id)"))
			return
		}
		r.chat = groupIDFor(r.user, in.ID)
	case proto.TypeAck:
		r.chat = in.Chat
		if r.from != nil && in.Seq > 0 {
			// Every session of the device here (a user's sessions share
			// its home node): a connection that has not acked yet must not
			// retransmit what the device acknowledged on another one.
			s.ackDevice(r.from, in.Chat, in.Seq)
		}
	default: // read, group_add, group_remove, group_leave, group_role
		r.chat = in.Chat
	}
	if _, ok := record.ParseChatID(r.chat); !ok {
		s.rejectRequest(r, proto.Errorf(proto.CodeBadRequest, "chat is missing or not a valid chat id"))
		return
	}
	if s.leases != nil {
		if !s.routeLeased(r) {
			r.raw = nil
			return
		}
	} else if c := s.cluster; c != nil && !r.forwarded {
		if owner := c.ownerOf(r.chat); owner != c.self && c.forward(owner, r) {
			r.raw = nil
			return
		}
	}
	r.raw = nil
	sh := s.shards[shardOf(r.chat, len(s.shards))]
	select {
	case sh.q <- r:
	default:
		requestsOverloaded.Inc()
		s.overload.note(s.now(), "queue_full", 0)
		if in.Type == proto.TypeAck {
			// Acks are cumulative and the session's delivery state already
			// took this one: the next ack persists the cursor.
			acksDropped.Inc()
			return
		}
		s.rejectRequest(r, &proto.Error{Code: proto.CodeOverloaded, Message: "chat queue full", RetryAfterMS: 100})
	}
}

var (
	leaseForwards    = metrics.NewCounter(`parley_logic_lease_forwards_total`)
	leaseUnheld      = metrics.NewCounter(`parley_logic_requests_rejected_total{reason="no_lease"}`)
	leaseAcksDropped = metrics.NewCounter(`parley_logic_acks_dropped_total{reason="no_lease"}`)
)

// routeLeased decides where a request runs under leases: here when this
// node holds a valid lease of its chat's slot (it returns true), at the
// holder when another node holds it (forwarded once; a forwarded request
// never hops again), else nowhere: the client is told to retry (an ack is
// dropped: acks are cumulative).
func (s *Service) routeLeased(r *request) bool {
	k := s.leases
	slot := lease.Slot(r.chat, k.Slots())
	if k.Grant(slot).Valid(s.now()) {
		return true
	}
	if c := s.cluster; c != nil && !r.forwarded {
		if h := k.Holder(slot); h.Owner != "" && h.Owner != c.self && c.forward(h.Owner, r) {
			leaseForwards.Inc()
			return false
		}
	}
	if r.in.Type == proto.TypeAck {
		leaseAcksDropped.Inc()
		if r.forwarded {
			r.out.reply(nil)
		}
		return false
	}
	leaseUnheld.Inc()
	s.rejectRequest(r, &proto.Error{Code: proto.CodeUnavailable, Message: "no node sequences this chat right now, retry", RetryAfterMS: s.leases.Config().Poll.Milliseconds()})
	return false
}

// nodeAlive reports whether a lease owner is a live logic node: a member
// of the ring in a fleet, only this node otherwise.
func (s *Service) nodeAlive(owner string) bool {
	c := s.cluster
	if c == nil {
		return owner == s.cfg.NodeID
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Contains(c.members, owner)
}

// wantSlot reports whether the ring picks this node to hold slot: always
// for a node without peers.
func (s *Service) wantSlot(slot int) bool {
	c := s.cluster
	if c == nil {
		return true
	}
	return c.ownerOf("slot/"+strconv.Itoa(slot)) == c.self
}

// groupIDFor derives a group chat id from the creator and the request id,
// so that a retried group_create finds the group it already created.
func groupIDFor(user, requestID string) string {
	h := sha256.Sum256([]byte(user + "\x00" + requestID))
	return record.GroupChatID(hex.EncodeToString(h[:10]))
}

func shardOf(chat string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chat))
	return int(h.Sum32() % uint32(n))
}

// replyErr sends an error frame. err is a *proto.Error or becomes "internal".
func (s *Service) replyErr(out replier, requestID string, err error) {
	var pe *proto.Error
	if !errors.As(err, &pe) {
		pe = s.storeError(err)
	}
	errorsTotal(pe.Code).Inc()
	var buf [512]byte
	out.reply(proto.AppendError(buf[:0], requestID, pe))
}

// storeError maps a store error to a client error.
func (s *Service) storeError(err error) *proto.Error {
	switch {
	case errors.Is(err, record.ErrNotFound):
		return proto.Errorf(proto.CodeChatNotFound, "no such chat")
	case errors.Is(err, ErrStoreUnavailable):
		return &proto.Error{Code: proto.CodeUnavailable, Message: "store unavailable, retry", RetryAfterMS: int64(s.cfg.Breaker.Cooldown / time.Millisecond)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, record.ErrClosed):
		return &proto.Error{Code: proto.CodeUnavailable, Message: "store unavailable, retry", RetryAfterMS: 500}
	}
	s.log.Error("store call failed", "err", err)
	return &proto.Error{Code: proto.CodeUnavailable, Message: "store error, retry", RetryAfterMS: 500}
}

// deliverToUsers sends frame to every session of users, except skip, on
// this node and, in a fleet, on the nodes holding the users' sessions. It
// returns how many local sessions got it.
func (s *Service) deliverToUsers(users []string, frame []byte, skip *session, scratch *fanoutScratch) int {
	c := s.cluster
	if c == nil {
		return s.deliverLocal(users, frame, skip, scratch)
	}
	n := 0
	for node, list := range c.route(users, false) {
		if node != c.self {
			c.sendUsers(node, list, frame)
			continue
		}
		local := make([]string, len(list))
		for i, u := range list {
			local[i] = u.User
		}
		n += s.deliverLocal(local, frame, skip, scratch)
	}
	return n
}

// deliverLocal sends frame to every session of users on this node, except
// skip. Sessions of the same link share one Multi frame.
func (s *Service) deliverLocal(users []string, frame []byte, skip *session, scratch *fanoutScratch) int {
	scratch.reset()
	for _, u := range users {
		scratch.sessions = s.reg.appendSessions(scratch.sessions, u)
	}
	n := 0
	for _, sess := range scratch.sessions {
		if sess == skip {
			continue
		}
		scratch.add(sess)
		n++
	}
	for i, l := range scratch.links {
		l.deliverMulti(scratch.ids[i], frame)
	}
	return n
}

// fanoutScratch groups sessions by link without allocating in steady state.
type fanoutScratch struct {
	sessions []*session
	links    []*link
	ids      [][]uint64
}

func (f *fanoutScratch) reset() {
	clear(f.sessions)
	f.sessions = f.sessions[:0]
	clear(f.links)
	f.links = f.links[:0]
	for i := range f.ids {
		f.ids[i] = f.ids[i][:0]
	}
}

func (f *fanoutScratch) add(s *session) {
	for i, l := range f.links {
		if l == s.link {
			f.ids[i] = append(f.ids[i], s.id)
			return
		}
	}
	f.links = append(f.links, s.link)
	if len(f.ids) < len(f.links) {
		f.ids = append(f.ids, nil)
	}
	f.ids[len(f.links)-1] = append(f.ids[len(f.links)-1][:0], s.id)
}

func (s *Service) queuePresence(ev presenceEvent) {
	select {
	case s.presenceQ <- ev:
	default:
		presenceDropped.Inc()
	}
}

// presenceLoop records presence changes and pushes them to the user's
// chat peers that are online here.
func (s *Service) presenceLoop(base context.Context, stop <-chan struct{}) {
	var scratch fanoutScratch
	for {
		var ev presenceEvent
		select {
		case ev = <-s.presenceQ:
		case <-stop:
			return
		}
		ctx, cancel := context.WithTimeout(base, s.cfg.StoreTimeout)
		if ev.chat != "" {
			s.relationFormed(ctx, ev.chat, ev.check, &scratch)
			cancel()
			continue
		}
		var err error
		if ev.online {
			err = s.presence.SetOnline(ctx, ev.user, ev.at)
		} else {
			err = s.presence.SetOffline(ctx, ev.user, ev.at)
		}
		if err != nil {
			s.log.Warn("cannot record presence", "user_id", ev.user, "err", err)
		}
		// A user whose state flipped again meanwhile gets the newer event later.
		if ev.online != s.reg.online(ev.user) {
			cancel()
			continue
		}
		peers, err := s.peersOf(ctx, ev.user)
		if err != nil {
			cancel()
			s.log.Warn("cannot list presence peers", "user_id", ev.user, "err", err)
			continue
		}
		info := proto.PresenceInfo{User: ev.user, Online: ev.online}
		if !ev.online && !s.lastSeenHidden(ctx, ev.user) {
			info.LastSeen = ev.at.UnixMilli()
		}
		cancel()
		frame, err := proto.Marshal(proto.TypePresence, "", proto.PresenceAnswer{Users: []proto.PresenceInfo{info}})
		if err != nil {
			continue
		}
		s.deliverToUsers(peers, frame, nil, &scratch)
	}
}

// maxPresencePeers bounds the fan-out of one presence change.
const maxPresencePeers = 2000

// peersOf returns the users who may see user's presence (relations.go):
// the members of the groups where user has sent a message and the other
// side of each 1-on-1 chat in which both have, without user.
func (s *Service) peersOf(ctx context.Context, user string) ([]string, error) {
	chats, err := s.store.UserChats(ctx, user)
	if err != nil {
		return nil, err
	}
	seen := map[string]struct{}{user: {}}
	var peers []string
	addPeer := func(p string) {
		if _, ok := seen[p]; !ok && len(peers) < maxPresencePeers {
			seen[p] = struct{}{}
			peers = append(peers, p)
		}
	}
	for _, c := range chats {
		if ctx.Err() != nil {
			break
		}
		if a, b, ok := record.DirectMembers(c.Chat.ID); ok {
			// Only the other side of a chat where both have spoken.
			if mutual, err := s.rel.hasSpoken(ctx, c.Chat.ID, c.LastSeq, a, b); err != nil || !mutual {
				continue
			}
			addPeer(a)
			addPeer(b)
			continue
		}
		// A group's members see the user once the user has spoken there.
		if spoke, err := s.rel.hasSpoken(ctx, c.Chat.ID, c.LastSeq, user); err != nil || !spoke {
			continue
		}
		members, err := s.store.Members(ctx, c.Chat.ID)
		if err != nil {
			continue
		}
		for _, m := range members {
			addPeer(m)
		}
	}
	return peers, nil
}
