package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/wsclient"
)

// TokenFunc returns a bearer token for user and device.
type TokenFunc func(user, device string) (string, error)

// bitset is a growable set of small non-negative ints.
type bitset []uint64

func (b *bitset) set(i int) (was bool) {
	w := i / 64
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i int) bool {
	w := i / 64
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

// session is one WebSocket connection of a conn (a conn reconnects in
// population mode, so it has a session per connection).
type session struct {
	wc       *wsclient.Conn
	gen      int       // 0 for the conn's first connection
	start    time.Time // when dialing began
	syncedCh chan struct{}
	live     atomic.Bool // synced arrived: msg frames count as live deliveries
	dropped  atomic.Bool // closed on purpose (or setup failed): its errors are not counted
}

// Presence states of a conn (population mode; pairs and group conns are
// online once set up).
const (
	stOnline     = iota // a synced session
	stOffline           // offline on purpose: its user sends nothing
	stConnecting        // (re)connecting: sends queue until synced
)

// pend is a population send without its sent frame yet.
type pend struct {
	stream, k int32
	due       int64 // unix ns
	gen       int32 // session it was last written on; -1: not written
}

// conn is one generated client (one user, one device).
type conn struct {
	idx    int
	user   string
	out    *stream // pairs/group: the stream this conn sends, or nil
	dialer *wsclient.Dialer
	local  net.IP
	cur    atomic.Pointer[session] // the synced session while online, else nil

	mu      sync.Mutex // guards the following
	sess    *session   // the session being set up or online
	state   int
	gens    int    // sessions started
	pending []pend // population: sends waiting for their sent frame
	got     map[int]*rxState
	chats   map[string]*chatRx
	queued  bool // in the ack flusher's queue
	listed  bool // in r.ackConns
}

// rxState is what a conn received of one stream, by message index k.
type rxState struct {
	got bitset
}

// stream is one chat of the run: in pairs and group mode one sender
// (members[0]) and its receivers; in population mode any member sends.
type stream struct {
	idx     int
	members []*conn
	to      string      // pairs: the peer user
	chat    string      // group chats: the chat id
	group   bool        // a group chat (created by members[0])
	okCh    chan string // group: the group_create answer (chat id)
	sched   Schedule
	sent    atomic.Int64 // pairs/group: sends written (total k)
	senders []uint8      // population: member index of the sender of k (written by one sender shard)

	mu    sync.Mutex // guards the following
	acked bitset
}

func (s *stream) sender() *conn      { return s.members[0] }
func (s *stream) receivers() []*conn { return s.members[1:] }

// run holds one run's state.
type run struct {
	cfg      Config
	log      *slog.Logger
	tok      TokenFunc
	st       stats
	streams  []*stream
	conns    []*conn
	model    *model    // population mode
	gens     []*popGen // population: one generator per sender shard
	t0       time.Time
	winStart time.Time
	winEnd   time.Time
	stopping atomic.Bool // closing everything: read errors are expected
	ending   atomic.Bool // population: sending is over, churn stops
	readers  sync.WaitGroup
	reconns  sync.WaitGroup
	bg       context.Context // lives until the run returns (reconnects)
	online   atomic.Int64

	cpuStart, cpuEnd time.Duration // process CPU at the window's start and end (measureCPU)
	watch            []watched     // Config.WatchPIDs
	watchStart       []time.Duration
	watchEnd         []time.Duration
	intervals        []Interval // written by the progress goroutine, read after it ended

	ackMu    sync.Mutex // guards ackConns
	ackConns []*conn    // conns that connected once, for the final flush

	dirtyMu sync.Mutex // guards dirty and spare
	dirty   []*conn    // conns with unacked messages, for the ack flusher
	spare   []*conn

	ackW ackWriter // the ack flusher's scratch (flusher goroutine only)
}

// Run executes one load test and returns its result. Progress lines go to
// progress every ReportInterval (nil for none). It returns an error when
// the configuration is invalid or no stream could be set up; partial
// failures are counted in Result.Errors.
func Run(ctx context.Context, cfg Config, tok TokenFunc, log *slog.Logger, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.UserPrefix == "" {
		cfg.UserPrefix = "lt" + strconv.FormatUint(rand.Uint64()%(36*36*36*36*36), 36)
	}
	r := &run{cfg: cfg, log: log, tok: tok}
	r.watch, _ = parseWatch(cfg.WatchPIDs) // validated
	r.st.init()
	if cfg.Mode == ModePopulation {
		r.model = newModel(cfg)
		r.popTopology()
	} else {
		r.topology()
	}
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	r.bg = bg
	setupStart := time.Now()
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		r.ackLoop(bg)
	}()
	shutdown := func() {
		r.stopping.Store(true)
		stopBg()
		<-acksDone
		r.reconns.Wait()
		r.closeAll()
		r.readers.Wait()
	}
	if err := r.dialAll(ctx); err != nil {
		shutdown()
		return nil, err
	}
	r.createGroups(ctx)
	if r.model != nil {
		// Users that could not connect are offline: the churn and the end
		// of the run try them again.
		for _, c := range r.conns {
			c.mu.Lock()
			if c.state == stConnecting {
				c.state = stOffline
			}
			c.mu.Unlock()
		}
	}
	live := r.liveStreams()
	if len(live) == 0 {
		shutdown()
		return nil, fmt.Errorf("cannot run load test: no stream could be set up (errors: %v)", r.st.errs)
	}
	if r.model != nil {
		r.prepPopulation()
	}
	setup := time.Since(setupStart)
	log.Info("load test connected", "conns", len(r.conns), "streams", len(live), "setup", setup)

	r.t0 = time.Now().Add(200 * time.Millisecond)
	if cfg.Mode != ModePopulation {
		plan := Plan(r.t0, len(live), cfg.Rate)
		for i, s := range live {
			s.sched = plan[i]
		}
	}
	r.winStart = r.t0.Add(cfg.Warmup)
	r.winEnd = r.winStart.Add(cfg.Duration)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		r.measureCPU(sctx)
	}()
	progDone := make(chan struct{})
	go func() {
		defer close(progDone)
		r.progress(sctx, progress)
	}()
	var senders sync.WaitGroup
	if cfg.Mode == ModePopulation {
		r.startPopulation(sctx, &senders)
	} else {
		shards := shardStreams(live, 4*runtime.GOMAXPROCS(0))
		for _, sh := range shards {
			senders.Go(func() { r.sendShard(sctx, sh) })
		}
	}
	senders.Wait()
	if cfg.Mode == ModePopulation {
		r.endPopulation(ctx)
	}
	r.drain(ctx)
	cancel()
	<-progDone
	<-cpuDone
	// Ack everything received so the server's cursors are current (a
	// rerun with the same user prefix then gets no backlog).
	r.stopping.Store(true)
	stopBg()
	<-acksDone
	r.reconns.Wait()
	r.flushAcks(true)
	r.closeAll()
	r.readers.Wait()
	res := r.result(live, setup)
	return res, ctx.Err()
}

// topology builds the users, connections and streams of pairs and group
// mode.
func (r *run) topology() {
	p := r.cfg.UserPrefix
	newConn := func(user string) *conn {
		c := &conn{idx: len(r.conns), user: user, got: map[int]*rxState{}, state: stConnecting}
		r.conns = append(r.conns, c)
		return c
	}
	if r.cfg.Mode == ModePairs {
		for i := range r.cfg.Pairs {
			a := newConn(fmt.Sprintf("%s-a%d", p, i))
			b := newConn(fmt.Sprintf("%s-b%d", p, i))
			s := &stream{idx: i, members: []*conn{a, b}, to: b.user}
			a.out = s
			r.streams = append(r.streams, s)
		}
		return
	}
	for g := range r.cfg.Groups {
		s := &stream{idx: g, group: true}
		for m := range r.cfg.GroupSize {
			c := newConn(fmt.Sprintf("%s-g%dm%d", p, g, m))
			if m == 0 {
				c.out = s
				s.okCh = make(chan string, 1)
			}
			s.members = append(s.members, c)
		}
		r.streams = append(r.streams, s)
	}
}

// dialAll connects every conn (its first session).
func (r *run) dialAll(ctx context.Context) error {
	ips, _ := wsclient.ParseIPRange(r.cfg.SourceIPs)
	// Several URLs (comma separated): connections go round robin over the
	// connection nodes, so a pair's sender and receiver sit on different
	// nodes.
	var dialers []*wsclient.Dialer
	for _, u := range strings.Split(r.cfg.URL, ",") {
		dialers = append(dialers, &wsclient.Dialer{URL: strings.TrimSpace(u), Timeout: r.cfg.DialTimeout, ReadBuffer: 4096})
	}
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, c := range r.conns {
		if ctx.Err() != nil {
			break
		}
		if len(ips) > 0 {
			c.local = ips[i%len(ips)]
		}
		c.dialer = dialers[i%len(dialers)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.connect(ctx, c); err != nil {
				if failed.Add(1) <= 5 {
					r.log.Warn("cannot connect", "user_id", c.user, "err", err)
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// connect opens a session for c: dial, hello, sync (with the positions c
// has, after a reconnect), synced. On success c is online with it.
func (r *run) connect(ctx context.Context, c *conn) error {
	token, err := r.tok(c.user, "lt")
	if err != nil {
		r.st.err("token")
		return err
	}
	c.mu.Lock()
	sess := &session{gen: c.gens, start: time.Now(), syncedCh: make(chan struct{})}
	c.gens++
	c.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	wc, err := c.dialer.Dial(dctx, token, "lt", c.local)
	if err != nil {
		r.st.err(dialErrKind(err))
		return err
	}
	sess.wc = wc
	fail := func(kind string, err error) error {
		sess.dropped.Store(true)
		_ = wc.Close()
		r.st.err(kind)
		return err
	}
	// Wait for hello: until then the session may not be registered and
	// deliveries to it would go to history only.
	stop := context.AfterFunc(dctx, func() { _ = wc.Close() })
	msg, err := wc.ReadMessage()
	stop()
	if err == nil && !strings.Contains(string(msg), `"type":"hello"`) {
		err = fmt.Errorf("cannot open session: first frame is not hello: %.80s", msg)
	}
	if err != nil {
		return fail("dial:hello", err)
	}
	// Sync, then wait for synced: the server has loaded the session's
	// cursors and pushed any backlog, so live messages are next. The
	// reader acks the backlog meanwhile (it may exceed the window). After
	// a reconnect the sync carries every chat's position, as a client
	// that keeps its messages does.
	c.mu.Lock()
	if c.state != stConnecting {
		c.mu.Unlock()
		sess.dropped.Store(true)
		_ = wc.Close()
		return nil // went offline (churn) while connecting
	}
	c.sess = sess
	syncFrame := c.appendSyncLocked(nil, sess.gen > 0)
	c.mu.Unlock()
	r.readers.Go(func() { r.read(c, sess) })
	if err := wc.WriteText(syncFrame); err != nil {
		return fail("write", fmt.Errorf("cannot send sync: %w", err))
	}
	select {
	case <-sess.syncedCh:
	case <-dctx.Done():
		return fail("sync:timeout", fmt.Errorf("cannot sync session: no synced within %s: %w", r.cfg.DialTimeout, dctx.Err()))
	}
	c.mu.Lock()
	if c.state != stConnecting || c.sess != sess {
		// Went offline (churn) while connecting, or a newer connect won.
		if c.sess == sess {
			c.sess = nil
		}
		c.mu.Unlock()
		sess.dropped.Store(true)
		_ = wc.Close()
		return nil
	}
	c.state = stOnline
	c.cur.Store(sess)
	first := !c.listed
	c.listed = true
	c.mu.Unlock()
	r.online.Add(1)
	if first {
		r.addAckConn(c)
	}
	return nil
}

// appendSyncLocked appends c's sync frame; with positions, every chat's
// contiguous position (which the server takes as acked). c.mu held.
func (c *conn) appendSyncLocked(b []byte, positions bool) []byte {
	b = append(b, `{"type":"sync","id":"`+syncID+`"`...)
	if positions {
		n := 0
		for chat, rx := range c.chats {
			if rx.have == 0 {
				continue
			}
			if n == 0 {
				b = append(b, `,"chats":{`...)
			} else {
				b = append(b, ',')
			}
			n++
			b = proto.AppendString(b, chat)
			b = append(b, ':')
			b = strconv.AppendUint(b, rx.have, 10)
			rx.acked = max(rx.acked, rx.have)
		}
		if n > 0 {
			b = append(b, '}')
		}
	}
	return append(b, '}')
}

// syncID is the request id of every conn's sync frame.
const syncID = "s"

func dialErrKind(err error) string {
	var he *wsclient.HandshakeError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return "dial:http_" + strconv.Itoa(he.Status)
	case errors.As(err, &ne) && ne.Timeout():
		return "dial:timeout"
	case strings.Contains(err.Error(), "refused"):
		return "dial:refused"
	case strings.Contains(err.Error(), "address not available"), strings.Contains(err.Error(), "cannot assign"):
		return "dial:no_local_port"
	}
	return "dial:other"
}

// createGroups has each group's creator (members[0]) create its group.
func (r *run) createGroups(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	for _, s := range r.streams {
		if !s.group || !s.ready() {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var b []byte
			// One request id per group: group_create is idempotent by
			// (creator, id), and a population user may create several.
			b = append(b, `{"type":"group_create","id":"g`...)
			b = strconv.AppendInt(b, int64(s.idx), 10)
			b = append(b, `","name":"lt","members":[`...)
			for i, m := range s.receivers() {
				if i > 0 {
					b = append(b, ',')
				}
				b = proto.AppendString(b, m.user)
			}
			b = append(b, "]}"...)
			sess := s.sender().cur.Load()
			if err := sess.wc.WriteText(b); err != nil {
				r.st.err("write")
				return
			}
			select {
			case chat := <-s.okCh:
				s.chat = chat
			case <-time.After(10 * time.Second):
				r.st.err("group_create:timeout")
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
}

func (s *stream) ready() bool {
	for _, c := range s.members {
		if c.cur.Load() == nil {
			return false
		}
	}
	return true
}

// liveStreams returns the streams that run: in pairs and group mode those
// whose every member connected (and whose group was created); in
// population mode every chat but groups that could not be created (users
// that could not connect are retried by the churn and at the end).
func (r *run) liveStreams() []*stream {
	var out []*stream
	for _, s := range r.streams {
		if r.model != nil {
			if !s.group || s.chat != "" {
				out = append(out, s)
			}
			continue
		}
		if s.ready() && (!s.group || s.chat != "") {
			out = append(out, s)
		}
	}
	return out
}

// shardStreams splits streams into at most n shards, round robin.
func shardStreams(streams []*stream, n int) [][]*stream {
	n = max(1, min(n, len(streams)))
	out := make([][]*stream, n)
	for i, s := range streams {
		out[i%n] = append(out[i%n], s)
	}
	return out
}

// sendShard runs the open-loop schedules of a shard of pairs or group
// senders until the window ends. One goroutine per shard (not per sender)
// wakes once for every send due by then, which costs far fewer wakeups and
// timer operations than a timer per sender.
func (r *run) sendShard(ctx context.Context, streams []*stream) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	next := make([]int, len(streams)) // next k per stream
	q := make(dueHeap, 0, len(streams))
	for i, s := range streams {
		if at := s.sched.At(0); at.Before(r.winEnd) {
			q = append(q, dueItem{at: at.UnixNano(), i: int32(i)})
		}
	}
	q.init()
	var frame []byte
	for len(q) > 0 {
		if d := time.Until(time.Unix(0, q[0].at)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		now := time.Now().UnixNano()
		for len(q) > 0 && q[0].at <= now {
			i := q[0].i
			s := streams[i]
			k := next[i]
			if r.sendOne(s, k, q[0].at, &frame) {
				next[i]++
				if at := s.sched.At(k + 1); at.Before(r.winEnd) {
					q[0].at = at.UnixNano()
					q.fix0()
					continue
				}
			}
			q.pop0()
		}
	}
}

// sendOne writes message k of a pairs or group stream; false when the
// write failed (the sender stops).
func (r *run) sendOne(s *stream, k int, due int64, frame *[]byte) bool {
	sess := s.sender().cur.Load()
	if sess == nil {
		return false
	}
	f := append((*frame)[:0], `{"type":"send","id":"`...)
	f = strconv.AppendInt(f, int64(k), 10)
	if s.chat != "" {
		f = append(f, `","chat":`...)
		f = proto.AppendString(f, s.chat)
	} else {
		f = append(f, `","to":"`...)
		f = append(f, s.to...)
		f = append(f, '"')
	}
	f = r.appendBody(f, due, s.idx, k)
	*frame = f
	if err := sess.wc.WriteText(f); err != nil {
		if !r.stopping.Load() {
			r.st.err("write")
		}
		return false
	}
	s.sent.Store(int64(k + 1))
	r.st.onSend(due >= r.winStart.UnixNano())
	return true
}

// appendBody appends `,"body":"lt:<due>:<stream>:<k>[padding]"}`.
func (r *run) appendBody(f []byte, due int64, stream, k int) []byte {
	f = append(f, `,"body":"lt:`...)
	n0 := len(f)
	f = strconv.AppendInt(f, due, 10)
	f = append(f, ':')
	f = strconv.AppendInt(f, int64(stream), 10)
	f = append(f, ':')
	f = strconv.AppendInt(f, int64(k), 10)
	for len(f)-n0+3 < r.cfg.BodySize {
		f = append(f, '.')
	}
	return append(f, `"}`...)
}

// read consumes one session's frames until it closes, acking msg frames.
func (r *run) read(c *conn, sess *session) {
	var f frame
	var aw ackWriter
	wc := sess.wc
	for {
		msg, err := wc.ReadMessage()
		now := time.Now()
		if err != nil {
			if !r.stopping.Load() && !sess.dropped.Load() {
				var ce *wsclient.CloseError
				if errors.As(err, &ce) {
					r.st.err("closed:" + strconv.Itoa(ce.Code))
				} else {
					r.st.err("read")
				}
				r.lostSession(c, sess, 0)
			}
			return
		}
		if err := parseFrame(msg, &f); err != nil {
			r.st.err("bad_frame")
			continue
		}
		switch string(f.typ) {
		case proto.TypeMsg:
			r.onMsg(c, sess, &f, now, &aw)
		case proto.TypeSent:
			r.onSent(c, &f, now)
		case proto.TypeSynced:
			if string(f.id) == syncID && !sess.live.Swap(true) {
				close(sess.syncedCh)
			}
		case proto.TypeGoaway:
			// Pairs and group conns do not reconnect: a goaway ends the
			// conn's part in the run, so it shows up in the report.
			// Population conns reconnect after the hinted delay.
			r.st.err("goaway")
			r.lostSession(c, sess, time.Duration(f.retryAfter)*time.Millisecond)
		case proto.TypeOK:
			if len(f.id) > 1 && f.id[0] == 'g' {
				if i, ok := atoiBytes(f.id[1:]); ok && i < len(r.streams) && r.streams[i].okCh != nil {
					select {
					case r.streams[i].okCh <- string(f.chat):
					default:
					}
				}
			}
		case proto.TypeError:
			r.onError(c, &f)
		}
	}
}

// onMsg handles one msg frame: dedup by (chat, seq), ack, and for first
// copies of generator messages the delivery accounting.
func (r *run) onMsg(c *conn, sess *session, f *frame, now time.Time, aw *ackWriter) {
	if len(f.chat) == 0 || f.seq == 0 {
		r.st.err("bad_msg")
		return
	}
	c.mu.Lock()
	rx, ack, queue := c.addLocked(f.chat, f.seq, false, r.cfg.AckBatch)
	c.mu.Unlock()
	if queue {
		r.queueAck(c)
	}
	if ack != nil {
		if !aw.write(sess.wc, []ackEntry{*ack}) && !r.stopping.Load() && !sess.dropped.Load() {
			r.st.err("write:ack")
		}
		r.st.count(&r.st.acksSent, 1)
	}
	switch {
	case !rx.first:
		r.st.count(&r.st.retransmits, 1)
	case !sess.live.Load() && sess.gen == 0:
		r.st.count(&r.st.backlog, 1)
	default:
		// Live, or the catch-up of a session after a reconnect: those are
		// deliveries of messages sent while the user was away.
		if rx.outOfOrder {
			r.st.count(&r.st.ooo, 1)
		}
		if string(f.kind) == "text" && len(f.body) > 3 && string(f.body[:3]) == "lt:" {
			r.onDeliver(c, sess, f.body, now)
		}
	}
}

// onSent handles a sent frame: the message is durable at the server.
func (r *run) onSent(c *conn, f *frame, now time.Time) {
	si, k, ok := parseID(f.id, c.out)
	if !ok {
		r.st.err("bad_sent")
		return
	}
	if len(f.chat) > 0 && f.seq > 0 {
		c.mu.Lock()
		_, _, queue := c.addLocked(f.chat, f.seq, true, r.cfg.AckBatch)
		c.mu.Unlock()
		if queue {
			r.queueAck(c)
		}
	}
	var due int64
	if c.out != nil {
		due = c.out.sched.At(k).UnixNano()
	} else {
		var found bool
		if due, found = c.unpend(si, k); !found {
			r.st.count(&r.st.dupAcks, 1)
			return
		}
	}
	s := r.streams[si]
	s.mu.Lock()
	dup := s.acked.set(k)
	s.mu.Unlock()
	r.st.onAck(dup, due, now.UnixNano(), r.winStart.UnixNano(), r.winEnd.UnixNano(), len(s.members)-1)
}

// parseID splits a send id: "<k>" for a conn with one stream (out), else
// "<stream>.<k>".
func parseID(id []byte, out *stream) (stream, k int, ok bool) {
	if out != nil {
		k, ok = atoiBytes(id)
		return out.idx, k, ok
	}
	i := 0
	for i < len(id) && id[i] != '.' {
		i++
	}
	if i == len(id) {
		return 0, 0, false
	}
	s, ok1 := atoiBytes(id[:i])
	k, ok2 := atoiBytes(id[i+1:])
	return s, k, ok1 && ok2
}

// atoiBytes parses a non-negative decimal int without allocating.
func atoiBytes(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' || n > (math.MaxInt-9)/10 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// parseBody splits "lt:<due ns>:<stream>:<k>[padding]".
func parseBody(b []byte) (due int64, stream, k int, ok bool) {
	if len(b) < 3 || string(b[:3]) != "lt:" {
		return 0, 0, 0, false
	}
	b = b[3:]
	var parts [3][]byte
	for i := range 2 {
		j := 0
		for j < len(b) && b[j] != ':' {
			j++
		}
		if j == len(b) {
			return 0, 0, 0, false
		}
		parts[i], b = b[:j], b[j+1:]
	}
	for len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	parts[2] = b
	d, ok1 := atoiBytes(parts[0])
	s, ok2 := atoiBytes(parts[1])
	k, ok3 := atoiBytes(parts[2])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return int64(d), s, k, true
}

func (r *run) onDeliver(c *conn, sess *session, body []byte, now time.Time) {
	dueNs, si, k, ok := parseBody(body)
	if !ok || si >= len(r.streams) {
		r.st.err("bad_body")
		return
	}
	c.mu.Lock()
	rx := c.got[si]
	if rx == nil {
		rx = &rxState{}
		c.got[si] = rx
	}
	dup := rx.got.set(k)
	c.mu.Unlock()
	// A message due before this session began reached the user after a
	// reconnect: an offline delivery, measured apart.
	offline := sess.gen > 0 && dueNs < sess.start.UnixNano()
	r.st.onDeliver(dup, offline, dueNs, now.UnixNano(), r.winStart.UnixNano(), r.winEnd.UnixNano())
}

// onError counts an error frame; population sends refused with a
// retryable code are written again after the hinted delay.
func (r *run) onError(c *conn, f *frame) {
	r.st.err("error:" + string(f.code))
	if c.out != nil || r.model == nil {
		return
	}
	si, k, ok := parseID(f.id, nil)
	if !ok {
		return
	}
	switch string(f.code) {
	case "rate_limited", "overloaded", "unavailable", "internal":
	default:
		return
	}
	delay := max(time.Duration(f.retryAfter)*time.Millisecond, 50*time.Millisecond)
	delay += time.Duration(rand.Int64N(int64(delay)))
	time.AfterFunc(delay, func() { r.resend(c, int32(si), int32(k)) })
}

// drain waits up to Grace for outstanding acks and deliveries.
func (r *run) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Grace)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.st.settled() && r.pendingCount() == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *run) pendingCount() int {
	n := 0
	for _, c := range r.conns {
		c.mu.Lock()
		n += len(c.pending)
		c.mu.Unlock()
	}
	return n
}

func (r *run) closeAll() {
	for _, c := range r.conns {
		c.mu.Lock()
		sess := c.sess
		c.mu.Unlock()
		if sess != nil {
			_ = sess.wc.Close()
		}
	}
}
