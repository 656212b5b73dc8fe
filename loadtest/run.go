package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/loadtest/wsc"
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

// conn is one generated client.
type conn struct {
	user     string
	c        *wsc.Conn     // set once hello and synced arrived; nil if setup failed
	ws       *wsc.Conn     // the connection while it is being set up, then == c
	out      *stream       // the stream this conn sends, or nil
	okCh     chan string   // group_create answer (chat id), sender only
	syncedCh chan struct{} // closed by the reader when synced arrives
	live     atomic.Bool   // synced arrived: msg frames count as deliveries
	dropped  atomic.Bool   // setup failed after the reader started: its errors are not counted

	mu    sync.Mutex // guards the following
	got   map[int]*rxState
	chats map[string]*chatRx
}

// rxState is what a conn received of one stream, by message index k.
type rxState struct {
	got bitset
}

// stream is one sender and its receivers.
type stream struct {
	idx       int
	sender    *conn
	receivers []*conn
	to        string // pairs: the peer user
	chat      string // group: the chat id
	sched     Schedule
	sent      atomic.Int64 // sends written (total k)

	mu    sync.Mutex // guards the following
	acked bitset
}

// stats are the shared measurements.
type stats struct {
	mu            sync.Mutex // guards the following
	deliver, ack  Histogram  // measured window, whole run
	ideliver, iak Histogram  // current progress interval
	sent          int64
	sentWin       int64
	acked         int64
	delivered     int64
	deliveredWin  int64
	dups          int64 // the same k delivered under two different (chat, seq)
	ooo           int64
	dupAcks       int64
	retransmits   int64 // msg frames for a (chat, seq) already received
	backlog       int64 // msg frames received before synced
	acksSent      int64
	errs          map[string]int64
}

func (s *stats) err(kind string) {
	s.mu.Lock()
	s.errs[kind]++
	s.mu.Unlock()
}

// run holds one run's state.
type run struct {
	cfg      Config
	log      *slog.Logger
	st       stats
	streams  []*stream
	conns    []*conn
	winStart time.Time
	winEnd   time.Time
	stopping atomic.Bool
	readers  sync.WaitGroup

	ackMu    sync.Mutex // guards ackConns
	ackConns []*conn    // connected conns, for the ack flusher
}

// Run executes one load test and returns its result. Progress lines go to
// progress once a second (nil for none). It returns an error when the
// configuration is invalid or no stream could be set up; partial failures
// are counted in Result.Errors.
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
	r := &run{cfg: cfg, log: log}
	r.st.errs = map[string]int64{}
	r.topology()
	setupStart := time.Now()
	actx, stopAcks := context.WithCancel(context.WithoutCancel(ctx))
	acksDone := make(chan struct{})
	go func() {
		defer close(acksDone)
		r.ackLoop(actx)
	}()
	defer func() {
		stopAcks()
		<-acksDone
	}()
	if err := r.dialAll(ctx, tok); err != nil {
		r.stopping.Store(true)
		r.closeAll()
		return nil, err
	}
	if cfg.Mode == ModeGroup {
		r.createGroups(ctx)
	}
	live := r.liveStreams()
	if len(live) == 0 {
		r.stopping.Store(true)
		r.closeAll()
		return nil, fmt.Errorf("cannot run load test: no stream could be set up (errors: %v)", r.st.errs)
	}
	setup := time.Since(setupStart)
	log.Info("load test connected", "conns", len(r.conns), "streams", len(live), "setup", setup)

	t0 := time.Now().Add(200 * time.Millisecond)
	plan := Plan(t0, len(live), cfg.Rate)
	for i, s := range live {
		s.sched = plan[i]
	}
	r.winStart = t0.Add(cfg.Warmup)
	r.winEnd = r.winStart.Add(cfg.Duration)

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var senders sync.WaitGroup
	for _, s := range live {
		senders.Go(func() { r.send(sctx, s) })
	}
	progDone := make(chan struct{})
	go func() {
		defer close(progDone)
		r.progress(sctx, t0, progress)
	}()
	senders.Wait()
	r.drain(ctx, len(live))
	cancel()
	<-progDone
	// Ack everything received so the server's cursors are current (a
	// rerun with the same user prefix then gets no backlog).
	stopAcks()
	<-acksDone
	r.flushAcks()
	r.stopping.Store(true)
	r.closeAll()
	r.readers.Wait()
	res := r.result(live, setup)
	return res, ctx.Err()
}

// topology builds the users, connections and streams.
func (r *run) topology() {
	p := r.cfg.UserPrefix
	newConn := func(user string) *conn {
		c := &conn{user: user, got: map[int]*rxState{}, syncedCh: make(chan struct{})}
		r.conns = append(r.conns, c)
		return c
	}
	if r.cfg.Mode == ModePairs {
		for i := range r.cfg.Pairs {
			a := newConn(fmt.Sprintf("%s-a%d", p, i))
			b := newConn(fmt.Sprintf("%s-b%d", p, i))
			s := &stream{idx: i, sender: a, receivers: []*conn{b}, to: b.user}
			a.out = s
			r.streams = append(r.streams, s)
		}
		return
	}
	for g := range r.cfg.Groups {
		s := &stream{idx: g}
		for m := range r.cfg.GroupSize {
			c := newConn(fmt.Sprintf("%s-g%dm%d", p, g, m))
			if m == 0 {
				s.sender = c
				c.out = s
				c.okCh = make(chan string, 1)
			} else {
				s.receivers = append(s.receivers, c)
			}
		}
		r.streams = append(r.streams, s)
	}
}

// dialAll connects every conn and starts its reader once hello arrived.
func (r *run) dialAll(ctx context.Context, tok TokenFunc) error {
	ips, _ := wsc.ParseIPRange(r.cfg.SourceIPs)
	// Several URLs (comma separated): connections go round robin over the
	// connection nodes, so a pair's sender and receiver sit on different
	// nodes.
	var dialers []*wsc.Dialer
	for _, u := range strings.Split(r.cfg.URL, ",") {
		dialers = append(dialers, &wsc.Dialer{URL: strings.TrimSpace(u), Timeout: r.cfg.DialTimeout, ReadBuffer: 4096})
	}
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, c := range r.conns {
		if ctx.Err() != nil {
			break
		}
		var local net.IP
		if len(ips) > 0 {
			local = ips[i%len(ips)]
		}
		d := dialers[i%len(dialers)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := r.dialOne(ctx, d, tok, c, local); err != nil {
				if failed.Add(1) <= 5 {
					r.log.Warn("cannot connect", "user_id", c.user, "err", err)
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func (r *run) dialOne(ctx context.Context, d *wsc.Dialer, tok TokenFunc, c *conn, local net.IP) error {
	token, err := tok(c.user, "lt")
	if err != nil {
		r.st.err("token")
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	wc, err := d.Dial(dctx, token, "lt", local)
	if err != nil {
		r.st.err(dialErrKind(err))
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
		_ = wc.Close()
		r.st.err("dial:hello")
		return err
	}
	// Sync, then wait for synced: the server has loaded the session's
	// cursors and pushed any backlog, so live messages are next. The
	// reader acks the backlog meanwhile (it may exceed the window).
	c.ws = wc
	r.readers.Go(func() { r.read(c, wc) })
	if err := wc.WriteText([]byte(`{"type":"sync","id":"` + syncID + `"}`)); err != nil {
		c.dropped.Store(true)
		_ = wc.Close()
		r.st.err("write")
		return fmt.Errorf("cannot send sync: %w", err)
	}
	select {
	case <-c.syncedCh:
	case <-dctx.Done():
		c.dropped.Store(true)
		_ = wc.Close()
		r.st.err("sync:timeout")
		return fmt.Errorf("cannot sync session: no synced within %s: %w", r.cfg.DialTimeout, dctx.Err())
	}
	c.c = wc
	r.addAckConn(c)
	return nil
}

// syncID is the request id of every conn's sync frame.
const syncID = "s"

func dialErrKind(err error) string {
	var he *wsc.HandshakeError
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

// createGroups has each group's sender create its group.
func (r *run) createGroups(ctx context.Context) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, r.cfg.DialConcurrency)
	for _, s := range r.streams {
		if !s.ready() {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var b []byte
			b = append(b, `{"type":"group_create","id":"g","name":"lt","members":[`...)
			for i, m := range s.receivers {
				if i > 0 {
					b = append(b, ',')
				}
				b = proto.AppendString(b, m.user)
			}
			b = append(b, "]}"...)
			if err := s.sender.c.WriteText(b); err != nil {
				r.st.err("write")
				return
			}
			select {
			case chat := <-s.sender.okCh:
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
	if s.sender.c == nil {
		return false
	}
	for _, c := range s.receivers {
		if c.c == nil {
			return false
		}
	}
	return true
}

func (r *run) liveStreams() []*stream {
	var out []*stream
	for _, s := range r.streams {
		if s.ready() && (r.cfg.Mode == ModePairs || s.chat != "") {
			out = append(out, s)
		}
	}
	return out
}

// send runs one sender's open-loop schedule until the window ends.
func (r *run) send(ctx context.Context, s *stream) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var frame []byte
	pad := r.cfg.BodySize
	for k := 0; ; k++ {
		due := s.sched.At(k)
		if !due.Before(r.winEnd) {
			return
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		frame = append(frame[:0], `{"type":"send","id":"`...)
		frame = strconv.AppendInt(frame, int64(k), 10)
		if s.chat != "" {
			frame = append(frame, `","chat":`...)
			frame = proto.AppendString(frame, s.chat)
		} else {
			frame = append(frame, `","to":"`...)
			frame = append(frame, s.to...)
			frame = append(frame, '"')
		}
		frame = append(frame, `,"body":"lt:`...)
		n0 := len(frame)
		frame = strconv.AppendInt(frame, due.UnixNano(), 10)
		frame = append(frame, ':')
		frame = strconv.AppendInt(frame, int64(s.idx), 10)
		frame = append(frame, ':')
		frame = strconv.AppendInt(frame, int64(k), 10)
		for len(frame)-n0+3 < pad {
			frame = append(frame, '.')
		}
		frame = append(frame, `"}`...)
		if err := s.sender.c.WriteText(frame); err != nil {
			if !r.stopping.Load() {
				r.st.err("write")
			}
			return
		}
		s.sent.Store(int64(k + 1))
		inWin := !due.Before(r.winStart)
		r.st.mu.Lock()
		r.st.sent++
		if inWin {
			r.st.sentWin++
		}
		r.st.mu.Unlock()
	}
}

// inFrame is the subset of server frames the generator reads.
type inFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Chat string `json:"chat"`
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"`
	Body string `json:"body"`
	Code string `json:"code"`
}

// read consumes one conn's frames until it closes, acking msg frames.
func (r *run) read(c *conn, wc *wsc.Conn) {
	var f inFrame
	var ackBuf []byte
	for {
		msg, err := wc.ReadMessage()
		now := time.Now()
		if err != nil {
			if !r.stopping.Load() && !c.dropped.Load() {
				var ce *wsc.CloseError
				if errors.As(err, &ce) {
					r.st.err("closed:" + strconv.Itoa(ce.Code))
				} else {
					r.st.err("read")
				}
			}
			return
		}
		f = inFrame{}
		if err := json.Unmarshal(msg, &f); err != nil {
			r.st.err("bad_frame")
			continue
		}
		switch f.Type {
		case proto.TypeMsg:
			ackBuf = r.onMsg(c, wc, &f, now, ackBuf)
		case proto.TypeSent:
			r.onSent(c, f.ID, f.Chat, f.Seq, now)
		case proto.TypeSynced:
			if f.ID == syncID && !c.live.Swap(true) {
				close(c.syncedCh)
			}
		case proto.TypeGoaway:
			// The generator does not reconnect: a goaway ends the conn's
			// part in the run, so it shows up in the report.
			r.st.err("goaway")
		case proto.TypeOK:
			if c.okCh != nil && f.ID == "g" {
				select {
				case c.okCh <- f.Chat:
				default:
				}
			}
		case proto.TypeError:
			r.st.err("error:" + f.Code)
		}
	}
}

// onMsg handles one msg frame: dedup by (chat, seq), ack, and for first
// copies of generator messages the delivery accounting.
func (r *run) onMsg(c *conn, wc *wsc.Conn, f *inFrame, now time.Time, ackBuf []byte) []byte {
	if f.Chat == "" || f.Seq == 0 {
		r.st.err("bad_msg")
		return ackBuf
	}
	c.mu.Lock()
	rx, ack := c.addLocked(f.Chat, f.Seq, false, r.cfg.AckBatch)
	c.mu.Unlock()
	if ack != nil {
		var ok bool
		if ackBuf, ok = writeAcks(wc, []ackEntry{*ack}, ackBuf); !ok && !r.stopping.Load() {
			r.st.err("write:ack")
		}
		r.st.mu.Lock()
		r.st.acksSent++
		r.st.mu.Unlock()
	}
	switch {
	case !rx.first:
		r.st.mu.Lock()
		r.st.retransmits++
		r.st.mu.Unlock()
	case !c.live.Load():
		r.st.mu.Lock()
		r.st.backlog++
		r.st.mu.Unlock()
	default:
		if rx.outOfOrder {
			r.st.mu.Lock()
			r.st.ooo++
			r.st.mu.Unlock()
		}
		if f.Kind == "text" && strings.HasPrefix(f.Body, "lt:") {
			r.onDeliver(c, f.Body, now)
		}
	}
	return ackBuf
}

func (r *run) onSent(c *conn, id, chat string, seq uint64, now time.Time) {
	s := c.out
	k, err := strconv.Atoi(id)
	if s == nil || err != nil || k < 0 {
		r.st.err("bad_sent")
		return
	}
	if chat != "" && seq > 0 {
		c.mu.Lock()
		c.addLocked(chat, seq, true, r.cfg.AckBatch)
		c.mu.Unlock()
	}
	s.mu.Lock()
	dup := s.acked.set(k)
	s.mu.Unlock()
	due := s.sched.At(k)
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	if dup {
		r.st.dupAcks++
		return
	}
	r.st.acked++
	if !due.Before(r.winStart) && due.Before(r.winEnd) {
		lat := now.Sub(due).Nanoseconds()
		r.st.ack.Record(lat)
		r.st.iak.Record(lat)
	}
}

// parseBody splits "lt:<due ns>:<stream>:<k>[padding]".
func parseBody(b string) (due int64, stream, k int, ok bool) {
	rest, _ := strings.CutPrefix(b, "lt:")
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 {
		return 0, 0, 0, false
	}
	due, err1 := strconv.ParseInt(parts[0], 10, 64)
	stream, err2 := strconv.Atoi(parts[1])
	ks := strings.TrimRight(parts[2], ".")
	k, err3 := strconv.Atoi(ks)
	if err1 != nil || err2 != nil || err3 != nil || stream < 0 || k < 0 {
		return 0, 0, 0, false
	}
	return due, stream, k, true
}

func (r *run) onDeliver(c *conn, body string, now time.Time) {
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

	due := time.Unix(0, dueNs)
	r.st.mu.Lock()
	defer r.st.mu.Unlock()
	if dup {
		// Not a retransmit (those repeat a (chat, seq) and were dropped
		// before): the server stored the same send twice.
		r.st.dups++
		return
	}
	r.st.delivered++
	if !due.Before(r.winStart) && due.Before(r.winEnd) {
		r.st.deliveredWin++
		lat := now.Sub(due).Nanoseconds()
		r.st.deliver.Record(lat)
		r.st.ideliver.Record(lat)
	}
}

// drain waits up to Grace for outstanding acks and deliveries.
func (r *run) drain(ctx context.Context, nLive int) {
	deadline := time.Now().Add(r.cfg.Grace)
	fanout := int64(1)
	if r.cfg.Mode == ModeGroup {
		fanout = int64(r.cfg.GroupSize - 1)
	}
	for time.Now().Before(deadline) && ctx.Err() == nil {
		r.st.mu.Lock()
		done := r.st.acked == r.st.sent && r.st.delivered >= r.st.acked*fanout
		r.st.mu.Unlock()
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *run) closeAll() {
	for _, c := range r.conns {
		if c.c != nil {
			_ = c.c.Close()
		}
	}
}

// progress prints one line a second until ctx is done.
func (r *run) progress(ctx context.Context, t0 time.Time, w io.Writer) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent, lastDel int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r.st.mu.Lock()
			sent, del, rtx := r.st.sent, r.st.delivered, r.st.retransmits
			d := r.st.ideliver.Summarize()
			a := r.st.iak.Summarize()
			r.st.ideliver.Reset()
			r.st.iak.Reset()
			var nerr int64
			for _, n := range r.st.errs {
				nerr += n
			}
			r.st.mu.Unlock()
			if w == nil {
				continue
			}
			phase := "warmup"
			if !now.Before(r.winStart) {
				phase = "measure"
			}
			if !now.Before(r.winEnd) {
				phase = "drain"
			}
			fmt.Fprintf(w, "%5.1fs %-7s sent %6d/s delivered %6d/s deliver p50 %7.2fms p99 %8.2fms max %8.2fms | sent-ack p99 %8.2fms | retransmits %d errors %d\n",
				now.Sub(t0).Seconds(), phase, sent-lastSent, del-lastDel, d.P50, d.P99, d.Max, a.P99, rtx, nerr)
			lastSent, lastDel = sent, del
		}
	}
}
