package logic

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/ring"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

// A fleet of logic nodes (see ARCHITECTURE.md, "Fleet"):
//
//   - The ring is this node plus every peer it holds a live link to. Keys
//     map to ring members by rendezvous hashing (internal/ring): a chat's
//     owner sequences it, a user's home holds the user's sessions
//     (connection nodes route each session to its user's home).
//   - A request for a chat owned elsewhere is forwarded to the owner over a
//     peer link and its answer comes back under a token. The owner never
//     forwards again: a forwarded request runs where it lands, and the
//     store's append-only (chat, seq) rule keeps seqs unique even when two
//     nodes briefly both believe they own a chat.
//   - The owner hands each stored message to the nodes holding its members'
//     sessions: the directory's device locations when it answers, plus each
//     member's home (fail-open: the home alone when the directory is down).
//     The home node emits the push event for members with no session.

var (
	peerForwards     = metrics.NewCounter(`parley_logic_peer_forwards_total`)
	peerForwardFails = metrics.NewCounter(`parley_logic_peer_forward_failures_total`)
	peerFanouts      = metrics.NewCounter(`parley_logic_peer_fanouts_total`)
	peerRingChanges  = metrics.NewCounter(`parley_logic_ring_changes_total`)
	peerRehomed      = metrics.NewCounter(`parley_logic_sessions_rehomed_total`)
	dirErrors        = metrics.NewCounter(`parley_logic_directory_errors_total`)
	dirSlow          = metrics.NewCounter(`parley_logic_directory_slow_total`)
	forwardSeconds   = metrics.NewHistogram(`parley_logic_forward_seconds`)
	ringMembers      = metrics.NewGauge(`parley_logic_ring_members`, nil)
)

// Directory is the fleet's shared, rebuildable view (Redis in fleets;
// adapters/directory): where devices are connected and which nodes live.
// Every method may fail; the logic tier treats failures as "unknown" and
// keeps serving. Implementations are safe for concurrent use.
type Directory interface {
	Attach(ctx context.Context, loc record.DeviceLocation) error
	Detach(ctx context.Context, loc record.DeviceLocation) error
	Refresh(ctx context.Context, locs []record.DeviceLocation) error
	// Locate returns the live locations of each user; users with none are absent.
	Locate(ctx context.Context, users []string) (map[string][]record.DeviceLocation, error)
	Register(ctx context.Context, n record.Node) error
	Deregister(ctx context.Context, n record.Node) error
	Nodes(ctx context.Context, kind string) ([]record.Node, error)
}

// cluster is a logic node's view of the fleet.
type cluster struct {
	svc       *Service
	self      string // this node's id
	advertise string // this node's link address
	cfg       ClusterConfig
	dir       Directory // nil without a directory

	epoch atomic.Uint64 // bumped on every ring change; shards drop cached chats
	token atomic.Uint64

	mu      sync.RWMutex // guards the following
	members []string     // sorted: self and every peer with a live link
	peers   map[string]*peer
	dialers map[string]context.CancelFunc // by address
	stopped bool
	ctx     context.Context // run's context, for dialers started by inbound hellos; nil before run
	early   []string        // addresses peers announced before run; run dials them

	pmu     sync.Mutex // guards pending
	pending map[uint64]*pendingForward

	dirQ         chan dirEvent
	dirDownUntil atomic.Int64 // unix ns: skip directory lookups until then
}

// peer is an outbound link to another logic node: requests and fan-outs go
// out on it, replies come back.
type peer struct {
	id   string
	addr string
	l    *link
}

type pendingForward struct {
	r    *request
	peer *peer
	at   time.Time
	// oneWay requests (ack, read) are answered only when they fail: the
	// entry waits for a possible error and expires silently.
	oneWay bool
}

func newCluster(svc *Service, dir Directory) *cluster {
	cfg := svc.cfg.Cluster
	adv := cfg.Advertise
	if adv == "" {
		adv = svc.LinkAddr()
		if h, p, err := net.SplitHostPort(adv); err == nil && (h == "" || h == "0.0.0.0" || h == "::") {
			host, _ := os.Hostname()
			adv = net.JoinHostPort(host, p)
		}
	}
	return &cluster{svc: svc, self: svc.cfg.NodeID, advertise: adv, cfg: cfg, dir: dir,
		members: []string{svc.cfg.NodeID}, peers: map[string]*peer{}, dialers: map[string]context.CancelFunc{},
		pending: map[uint64]*pendingForward{}, dirQ: make(chan dirEvent, 4096)}
}

// run dials the configured peers, keeps the directory registration and
// the peer list fresh, and expires forwards, until ctx ends.
func (c *cluster) run(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	early := c.early
	c.early = nil
	c.setMembersLocked()
	c.mu.Unlock()
	for _, a := range append(slices.Clip(c.cfg.Peers), early...) {
		c.ensureDialer(ctx, a)
	}
	node := record.Node{Kind: record.NodeLogic, ID: c.self, Addr: c.advertise, Started: time.Now().UnixMilli()}
	reg := time.NewTicker(c.cfg.RegisterInterval)
	defer reg.Stop()
	sweep := time.NewTicker(250 * time.Millisecond)
	defer sweep.Stop()
	refresh := time.NewTicker(c.cfg.LocationRefresh)
	defer refresh.Stop()
	c.register(ctx, node)
	for {
		select {
		case <-ctx.Done():
			c.shutdown(context.WithoutCancel(ctx), node)
			return
		case <-reg.C:
			c.register(ctx, node)
		case <-refresh.C:
			c.refreshLocations(ctx)
		case now := <-sweep.C:
			c.expireForwards(now)
		}
	}
}

func (c *cluster) register(ctx context.Context, node record.Node) {
	if c.dir == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.RegisterInterval)
	defer cancel()
	if err := c.dir.Register(cctx, node); err != nil {
		dirErrors.Inc()
		return
	}
	nodes, err := c.dir.Nodes(cctx, record.NodeLogic)
	if err != nil {
		dirErrors.Inc()
		return
	}
	for _, n := range nodes {
		if n.ID != c.self && n.Addr != "" {
			c.ensureDialer(ctx, n.Addr)
		}
	}
}

// shutdown stops the peer dialers and takes the node out of the directory
// (within a second, under base: run's context without its cancellation).
func (c *cluster) shutdown(base context.Context, node record.Node) {
	c.mu.Lock()
	c.stopped = true
	for _, cancel := range c.dialers {
		cancel()
	}
	c.mu.Unlock()
	if c.dir != nil {
		ctx, cancel := context.WithTimeout(base, time.Second)
		_ = c.dir.Deregister(ctx, node)
		cancel()
	}
	c.failPending(nil)
}

// ensureDialer starts a dial loop for addr unless one runs.
func (c *cluster) ensureDialer(ctx context.Context, addr string) {
	if addr == c.advertise {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.dialers[addr] != nil {
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	c.dialers[addr] = cancel
	go c.dialLoop(dctx, addr)
}

// dialLoop keeps one outbound link to addr up until ctx ends. A peer that
// turns out to be this node, or whose address now belongs to another id,
// is handled by the hello exchange.
func (c *cluster) dialLoop(ctx context.Context, addr string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := c.connectPeer(ctx, addr)
		if errors.Is(err, errSelf) {
			return
		}
		if errors.Is(err, errPlainBeyondLoopback) {
			c.svc.log.Warn("peer not dialed: it is beyond loopback and this node has no link_tls", "peer_addr", addr)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		c.svc.log.Debug("peer link down", "peer_addr", addr, "err", err)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

var errSelf = errors.New("logic: peer address is this node")

// errPlainBeyondLoopback refuses a plain TCP dial of a peer beyond loopback
// (an address found in the directory or a peer's hello, which the
// configuration check could not see): such links need mutual TLS.
var errPlainBeyondLoopback = errors.New("logic: a peer beyond loopback needs mutual TLS (logic.link_tls); not dialed in plain TCP")

// connectPeer dials addr, exchanges hellos and serves the link until it
// fails.
func (c *cluster) connectPeer(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	var conn net.Conn
	var err error
	if c.svc.peerTLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: c.svc.peerTLS}
		conn, err = td.DialContext(ctx, "tcp", addr)
	} else if !adminauth.Loopback(addr) {
		return fmt.Errorf("cannot dial peer %s: %w", addr, errPlainBeyondLoopback)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("cannot dial peer %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	r := tierlink.NewReader(conn, 64<<10, tierlink.MaxFrame)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	h, err := tierlink.DialHandshake(conn, r, tierlink.TypePeerHello, c.self+"|"+c.advertise, c.svc.linkSecret, tierlink.DialOptions{
		Binding: tierlink.Binding(conn),
		// Never prove the secret to this node itself (a relay could use
		// the proof to open a link to it in this node's name).
		Check: func(d tierlink.Dialed) error {
			if d.NodeID == c.self {
				return errSelf
			}
			return nil
		},
	})
	if errors.Is(err, errSelf) {
		_ = conn.Close()
		return errSelf
	}
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("cannot complete hello with peer %s: %w", addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	if h.NodeID == c.self {
		_ = conn.Close()
		return errSelf
	}
	p := &peer{id: h.NodeID, addr: addr, l: newLink(conn, c.svc.cfg.LinkQueueLimit, c.svc.cfg.LinkWriteTimeout)}
	p.l.version = h.Version
	p.l.node = h.NodeID
	go p.l.writeLoop()
	if !c.peerUp(p) {
		p.l.close()
		return fmt.Errorf("peer %s at %s already linked", h.NodeID, addr)
	}
	c.svc.log.Info("peer link up", "peer", p.id, "peer_addr", addr)
	defer func() {
		p.l.close()
		c.peerDown(p)
		c.svc.log.Info("peer link down", "peer", p.id, "peer_addr", addr)
	}()

	// Pings keep the remote's idle timeout away and detect a dead peer.
	pingDone := make(chan struct{})
	defer close(pingDone)
	go func() {
		t := time.NewTicker(c.cfg.PeerPingInterval)
		defer t.Stop()
		var n uint64
		for {
			select {
			case <-pingDone:
				return
			case <-t.C:
				if err := tlsconf.Recheck(c.svc.peerTLS, conn); err != nil {
					linksRevoked.Inc()
					c.svc.log.Warn("peer link cut: the peer's certificate is revoked", "peer", p.id, "peer_addr", addr, "err", err)
					_ = conn.Close()
					return
				}
				n++
				p.l.appendFrames(func(b []byte) []byte { return tierlink.AppendPing(b, tierlink.TypePing, n) })
			}
		}
	}()
	for {
		_ = conn.SetReadDeadline(time.Now().Add(3 * c.cfg.PeerPingInterval))
		f, err := r.Next()
		if err != nil {
			return fmt.Errorf("cannot read from peer %s: %w", p.id, err)
		}
		switch f.Type {
		case tierlink.TypeReply:
			seq, frame, err := tierlink.ParseReply(f.Payload)
			if err != nil {
				return err
			}
			c.completeForward(f.Session, seq, frame)
		case tierlink.TypePong, tierlink.TypePing:
		default:
			return fmt.Errorf("unexpected %s frame from peer %s", f.Type, p.id)
		}
	}
}

// peerUp adds p to the ring. It returns false when a link to that node id
// is already up (two addresses for one node).
func (c *cluster) peerUp(p *peer) bool {
	c.mu.Lock()
	if _, ok := c.peers[p.id]; ok {
		c.mu.Unlock()
		return false
	}
	c.peers[p.id] = p
	c.setMembersLocked()
	c.mu.Unlock()
	c.ringChanged(true)
	return true
}

func (c *cluster) peerDown(p *peer) {
	c.mu.Lock()
	if c.peers[p.id] == p {
		delete(c.peers, p.id)
		c.setMembersLocked()
	}
	c.mu.Unlock()
	c.failPending(p)
	c.ringChanged(false)
}

func (c *cluster) setMembersLocked() {
	m := make([]string, 0, len(c.peers)+1)
	m = append(m, c.self)
	for id := range c.peers {
		m = append(m, id)
	}
	slices.Sort(m)
	c.members = m
	ringMembers.Set(float64(len(m)))
}

// ringChanged invalidates cached chat state (ownership may have moved) and,
// when a node joined, sends the sessions whose home moved there to it.
func (c *cluster) ringChanged(gained bool) {
	c.epoch.Add(1)
	if k := c.svc.leases; k != nil {
		k.Wake() // take or hand over slots at once
	}
	peerRingChanges.Inc()
	c.mu.RLock()
	members := c.members
	c.mu.RUnlock()
	c.svc.log.Info("ring changed", "members", strings.Join(members, ","))
	// Fan-outs in flight when the ring changed may be lost (a link that
	// dropped with frames queued, homes computed on the old ring): re-read
	// what exists for every local session.
	c.svc.refreshAllSeen()
	if !gained {
		return
	}
	var buf [96]byte
	spread := c.cfg.RehomeSpread
	for _, s := range c.svc.reg.appendAll(nil) {
		if ring.Owner(s.user, members) == c.self {
			continue
		}
		peerRehomed.Inc()
		ms := int64(250 + rand.N(max(spread, time.Millisecond)).Milliseconds())
		s.deliver(proto.AppendGoaway(buf[:0], ms, ""))
	}
}

// ownerOf returns the node that sequences chat.
func (c *cluster) ownerOf(key string) string {
	c.mu.RLock()
	o := ring.Owner(key, c.members)
	c.mu.RUnlock()
	return o
}

func (c *cluster) peer(id string) *peer {
	c.mu.RLock()
	p := c.peers[id]
	c.mu.RUnlock()
	return p
}

// forward sends r to the node that owns its chat. It returns false when
// that node cannot be reached (the caller handles r itself).
func (c *cluster) forward(owner string, r *request) bool {
	p := c.peer(owner)
	if p == nil {
		return false
	}
	raw := r.raw
	if raw == nil {
		b, err := json.Marshal(&r.in)
		if err != nil {
			return false
		}
		raw = b
	}
	if len(raw)+2+len(r.user)+len(r.device)+tierlink.HeaderSize > tierlink.MaxFrame {
		return false // too big for a peer frame: run it here (the store keeps seqs safe)
	}
	tok := c.token.Add(1)
	c.pmu.Lock()
	oneWay := r.in.Type == proto.TypeAck || r.in.Type == proto.TypeRead
	c.pending[tok] = &pendingForward{r: r, peer: p, at: time.Now(), oneWay: oneWay}
	c.pmu.Unlock()
	ok := p.l.appendFrames(func(b []byte) []byte { return tierlink.AppendForward(b, tok, r.user, r.device, raw) })
	if !ok {
		c.pmu.Lock()
		_, mine := c.pending[tok]
		delete(c.pending, tok)
		c.pmu.Unlock()
		peerForwardFails.Inc()
		// When the link went down meanwhile, failPending already answered
		// the request (retryable): do not run it here as well.
		return !mine
	}
	peerForwards.Inc()
	return true
}

// completeForward answers the request sent under tok.
func (c *cluster) completeForward(tok, seq uint64, frame []byte) {
	c.pmu.Lock()
	pf := c.pending[tok]
	delete(c.pending, tok)
	c.pmu.Unlock()
	if pf == nil {
		return // expired: the client retries with the same request id
	}
	if len(frame) == 0 {
		return // a one-way request (ack, read) succeeded
	}
	if !pf.oneWay {
		forwardSeconds.UpdateDuration(pf.at)
	}
	r := pf.r
	if seq > 0 && r.from != nil {
		c.svc.ownSent(r.from, &record.Message{ChatID: r.chat, Seq: seq, Sender: r.user, Device: r.device, Kind: record.MsgText})
	}
	if seq > 0 {
		timeToSent.UpdateDuration(r.recv)
	}
	r.out.reply(frame)
}

// failPending answers every forward waiting on p (every one when p is nil)
// with a retryable error: the send may or may not have been stored, and
// the client's retry with the same request id finds out.
func (c *cluster) failPending(p *peer) {
	c.pmu.Lock()
	var failed []*pendingForward
	for tok, pf := range c.pending {
		if p == nil || pf.peer == p {
			if !pf.oneWay {
				failed = append(failed, pf)
			}
			delete(c.pending, tok)
		}
	}
	c.pmu.Unlock()
	for _, pf := range failed {
		peerForwardFails.Inc()
		c.svc.replyErr(pf.r.out, pf.r.in.ID, &proto.Error{Code: proto.CodeUnavailable, Message: "owner node went away, retry", RetryAfterMS: 200})
	}
}

func (c *cluster) expireForwards(now time.Time) {
	c.pmu.Lock()
	var failed []*pendingForward
	for tok, pf := range c.pending {
		if now.Sub(pf.at) > c.cfg.ForwardTimeout {
			if !pf.oneWay {
				failed = append(failed, pf)
			}
			delete(c.pending, tok)
		}
	}
	c.pmu.Unlock()
	for _, pf := range failed {
		peerForwardFails.Inc()
		c.svc.replyErr(pf.r.out, pf.r.in.ID, &proto.Error{Code: proto.CodeUnavailable, Message: "owner node did not answer, retry", RetryAfterMS: 200})
	}
}

// route groups users by the nodes that should see a frame for them: the
// nodes the directory locates their devices on, and their home. flagPush
// marks the home entry of users with no known device.
func (c *cluster) route(users []string, flagPush bool) map[string][]tierlink.PeerUser {
	c.mu.RLock()
	members := c.members
	c.mu.RUnlock()
	locs, _ := c.locate(users)
	out := make(map[string][]tierlink.PeerUser, len(members))
	for _, u := range users {
		home := ring.Owner(u, members)
		var flags uint8
		ls := locs[u]
		if flagPush && len(ls) == 0 {
			flags = tierlink.FlagPush
		}
		out[home] = append(out[home], tierlink.PeerUser{User: u, Flags: flags})
		for _, l := range ls {
			if l.Logic == home || !slices.Contains(members, l.Logic) || containsUser(out[l.Logic], u) {
				continue
			}
			out[l.Logic] = append(out[l.Logic], tierlink.PeerUser{User: u})
		}
	}
	return out
}

func containsUser(list []tierlink.PeerUser, u string) bool {
	for _, x := range list {
		if x.User == u {
			return true
		}
	}
	return false
}

// locate asks the directory for the users' devices. After a failure it
// stops asking for a second (fail open: the homes alone get the frames).
func (c *cluster) locate(users []string) (map[string][]record.DeviceLocation, bool) {
	if c.dir == nil || time.Now().UnixNano() < c.dirDownUntil.Load() {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	locs, err := c.dir.Locate(ctx, users)
	if err != nil {
		dirErrors.Inc()
		c.dirDownUntil.Store(time.Now().Add(time.Second).UnixNano())
		return nil, false
	}
	if time.Since(start) > 50*time.Millisecond {
		// A slow directory stalls the shard worker that asked: route by
		// the ring alone for a second, as if it were down.
		dirSlow.Inc()
		c.dirDownUntil.Store(time.Now().Add(time.Second).UnixNano())
	}
	return locs, true
}

// sendFanout hands m to node for users.
func (c *cluster) sendFanout(node string, users []tierlink.PeerUser, m *record.Message) {
	p := c.peer(node)
	if p == nil {
		return // gone: its sessions reconnect and catch up from the store
	}
	for len(users) > 0 {
		n := min(len(users), tierlink.MaxPeerUsers)
		chunk := users[:n]
		p.l.appendFrames(func(b []byte) []byte { return tierlink.AppendFanout(b, p.l.version, chunk, m) })
		users = users[n:]
	}
	peerFanouts.Inc()
}

// sendUsers hands a server frame for users to node.
func (c *cluster) sendUsers(node string, users []tierlink.PeerUser, frame []byte) {
	p := c.peer(node)
	if p == nil {
		return
	}
	for len(users) > 0 {
		n := min(len(users), tierlink.MaxPeerUsers)
		chunk := users[:n]
		p.l.appendFrames(func(b []byte) []byte { return tierlink.AppendUsers(b, chunk, frame) })
		users = users[n:]
	}
}

// refreshLocations re-announces every local session to the directory.
func (c *cluster) refreshLocations(ctx context.Context) {
	if c.dir == nil {
		return
	}
	sessions := c.svc.reg.appendAll(nil)
	locs := make([]record.DeviceLocation, 0, len(sessions))
	for _, s := range sessions {
		locs = append(locs, c.location(s))
	}
	for len(locs) > 0 {
		n := min(len(locs), 1000)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := c.dir.Refresh(cctx, locs[:n]); err != nil {
			dirErrors.Inc()
		}
		cancel()
		locs = locs[n:]
	}
}

func (c *cluster) location(s *session) record.DeviceLocation {
	return record.DeviceLocation{User: s.user, Device: s.device, Logic: c.self, Conn: s.link.node, Session: s.id}
}

// peerReplier answers a forwarded request on the link it came in on.
type peerReplier struct {
	l   *link
	tok uint64
}

func (p peerReplier) reply(frame []byte) { p.replySent(frame, 0) }

func (p peerReplier) replySent(frame []byte, seq uint64) {
	p.l.appendFrames(func(b []byte) []byte { return tierlink.AppendReply(b, p.tok, seq, frame) })
}

// sentReplier is a replier that wants to know the seq of a "sent" answer.
type sentReplier interface {
	replySent(frame []byte, seq uint64)
}

// dirEvent is a session's location change on its way to the directory.
type dirEvent struct {
	loc    record.DeviceLocation
	attach bool
}

var dirDropped = metrics.NewCounter(`parley_logic_directory_events_dropped_total`)

// queueDir hands a location change to the directory goroutine without
// blocking; a dropped attach is repaired by the next refresh, a dropped
// detach expires with the location TTL.
func (c *cluster) queueDir(ev dirEvent) {
	if c.dir == nil {
		return
	}
	select {
	case c.dirQ <- ev:
	default:
		dirDropped.Inc()
	}
}

// directoryLoop writes location changes to the directory.
func (c *cluster) directoryLoop(base context.Context, stop <-chan struct{}) {
	for {
		var ev dirEvent
		select {
		case ev = <-c.dirQ:
		case <-stop:
			return
		}
		ctx, cancel := context.WithTimeout(base, time.Second)
		var err error
		if ev.attach {
			err = c.dir.Attach(ctx, ev.loc)
		} else {
			err = c.dir.Detach(ctx, ev.loc)
		}
		cancel()
		if err != nil {
			dirErrors.Inc()
		}
	}
}

// onPeerHello implements linkHandler: a node that dials this one joins its
// view too (this node dials it back on the address it announced).
func (s *Service) onPeerHello(_ *link, id, addr string) bool {
	c := s.cluster
	if c == nil {
		return false
	}
	if addr != "" && id != c.self {
		c.mu.Lock()
		ctx := c.ctx
		if ctx == nil {
			// The link listener can serve a hello before run starts: run
			// dials this address back when it does.
			c.early = append(c.early, addr)
		}
		c.mu.Unlock()
		if ctx != nil {
			c.ensureDialer(ctx, addr)
		}
	}
	return true
}

// onPeerGone implements linkHandler: fan-outs the peer had queued for this
// node died with its link.
func (s *Service) onPeerGone(*link) {
	if s.cluster != nil {
		s.refreshAllSeen()
	}
}

// onPeerFrame implements linkHandler.
func (s *Service) onPeerFrame(l *link, f tierlink.Frame) error {
	switch f.Type {
	case tierlink.TypeForward:
		user, device, frame, err := tierlink.ParseForward(f.Payload)
		if err != nil {
			return err
		}
		out := peerReplier{l: l, tok: f.Session}
		in, err := proto.Decode(frame)
		if err != nil {
			s.replyErr(out, in.ID, err)
			return nil
		}
		s.dispatch(&request{in: in, user: user, device: device, out: out, recv: s.now(), forwarded: true})
	case tierlink.TypeFanout:
		users, m, err := tierlink.ParseFanout(f.Payload, l.version, nil)
		if err != nil {
			return err
		}
		frame := proto.AppendMsg(nil, &m)
		var scratch []*session
		for _, u := range users {
			scratch = s.offerUser(scratch, u.User, u.Flags&tierlink.FlagPush != 0, &m, frame, nil)
		}
	case tierlink.TypeUsers:
		users, frame, err := tierlink.ParseUsers(f.Payload, nil)
		if err != nil {
			return err
		}
		list := make([]string, len(users))
		for i, u := range users {
			list[i] = u.User
		}
		var scratch fanoutScratch
		s.deliverLocal(list, frame, nil, &scratch)
	case tierlink.TypePing:
		nonce, err := tierlink.ParsePing(f.Payload)
		if err != nil {
			return err
		}
		l.appendFrames(func(b []byte) []byte { return tierlink.AppendPing(b, tierlink.TypePong, nonce) })
	case tierlink.TypePong:
	default:
		return fmt.Errorf("unexpected %s frame", f.Type)
	}
	return nil
}
