package e2e

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// chaosProxy is a TCP proxy between WebSocket clients and connsrv that
// misbehaves on purpose: it delays every chunk it forwards, cuts
// connections at random moments (RST, or FIN in the middle of a chunk),
// and can cut a connection right after a client "send" frame went through
// to the server while holding back everything the server sends, so the
// server persists the message but its "sent" never reaches the client.
// TCP cannot silently lose bytes without breaking the stream, so every
// fault is a delay or a cut.
//
// Concurrency: the exported-style methods (URL, SetCuts, Stats, Close) are
// safe for concurrent use; each connection runs two pump goroutines.
type chaosProxy struct {
	ln     net.Listener
	target string // connsrv host:port, dialled per accepted connection
	cfg    proxyConfig
	seed   uint64

	cuts atomic.Bool // random cuts happen only while set; delays always

	accepted, dialFails                  atomic.Uint64
	cutsRST, cutsFIN, cutsSend, sendSeen atomic.Uint64

	wg sync.WaitGroup

	mu     sync.Mutex // guards the following
	conns  map[*proxyConn]struct{}
	closed bool
}

// proxyConfig tunes the proxy's faults.
type proxyConfig struct {
	// MaxDelay is the upper bound of the uniform delay before each chunk is
	// forwarded, per direction. Zero means none.
	MaxDelay time.Duration
	// CutProb is the probability that a connection gets a timed cut at a
	// uniform moment in [CutMin, CutMax] after it opened.
	CutProb        float64
	CutMin, CutMax time.Duration
	// RSTProb is the share of timed cuts that are RSTs; the others write a
	// random prefix of the next chunk and close with FIN (mid-stream).
	RSTProb float64
	// SendCutProb is the probability that a client "send" frame makes the
	// proxy freeze the server->client direction and RST the connection
	// shortly (0..SendCutMaxWait) after forwarding the frame.
	SendCutProb    float64
	SendCutMaxWait time.Duration
}

// proxyStats counts what the proxy did.
type proxyStats struct {
	Accepted, DialFails             uint64
	CutsRST, CutsFIN, CutsAfterSend uint64
	SendsSeen                       uint64
}

func (s proxyStats) Cuts() uint64 { return s.CutsRST + s.CutsFIN + s.CutsAfterSend }

// startProxy listens on 127.0.0.1:0 and forwards to target. Cuts are off
// until SetCuts(true). It is closed by t.Cleanup.
func startProxy(t *testing.T, target string, cfg proxyConfig, seed uint64) *chaosProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{ln: ln, target: target, cfg: cfg, seed: seed, conns: make(map[*proxyConn]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	t.Cleanup(p.Close)
	return p
}

// URL is the WebSocket URL clients dial to go through the proxy.
func (p *chaosProxy) URL() string { return "ws://" + p.ln.Addr().String() + "/ws" }

// SetCuts turns random cuts on or off (delays stay on).
func (p *chaosProxy) SetCuts(on bool) { p.cuts.Store(on) }

// Stats returns the counters so far.
func (p *chaosProxy) Stats() proxyStats {
	return proxyStats{
		Accepted: p.accepted.Load(), DialFails: p.dialFails.Load(),
		CutsRST: p.cutsRST.Load(), CutsFIN: p.cutsFIN.Load(), CutsAfterSend: p.cutsSend.Load(),
		SendsSeen: p.sendSeen.Load(),
	}
}

// Close stops accepting, cuts every connection and waits for the pumps.
// Idempotent.
func (p *chaosProxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		c.closeBoth(false)
	}
	p.wg.Wait()
}

func (p *chaosProxy) acceptLoop() {
	defer p.wg.Done()
	for n := uint64(1); ; n++ {
		nc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(nc.(*net.TCPConn), n)
	}
}

// proxyConn is one proxied connection.
type proxyConn struct {
	p          *chaosProxy
	down, up   *net.TCPConn // client side, server side
	frozen     atomic.Bool  // drop server->client chunks: a cut is coming
	finPending atomic.Bool  // the next chunk is cut short and closed with FIN
	closeOnce  sync.Once
	done       chan struct{} // closed by closeBoth
}

func (p *chaosProxy) serve(down *net.TCPConn, n uint64) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		p.dialFails.Add(1)
		_ = down.SetLinger(0)
		_ = down.Close()
		return
	}
	c := &proxyConn{p: p, down: down, up: up.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.closeBoth(false)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()

	rng := rand.New(rand.NewPCG(p.seed, n))
	if p.cfg.CutProb > 0 && rng.Float64() < p.cfg.CutProb {
		span := p.cfg.CutMax - p.cfg.CutMin
		after := p.cfg.CutMin
		if span > 0 {
			after += time.Duration(rng.Int64N(int64(span) + 1))
		}
		rst := rng.Float64() < p.cfg.RSTProb
		timer := time.AfterFunc(after, func() { c.timedCut(rst) })
		defer timer.Stop()
	}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() {
		defer pumps.Done()
		c.pump(c.down, c.up, true, rand.New(rand.NewPCG(p.seed, n<<1)))
	}()
	go func() {
		defer pumps.Done()
		c.pump(c.up, c.down, false, rand.New(rand.NewPCG(p.seed, n<<1|1)))
	}()
	pumps.Wait()
}

// timedCut is the random cut scheduled at accept.
func (c *proxyConn) timedCut(rst bool) {
	if !c.p.cuts.Load() {
		return
	}
	if rst {
		if c.closeBoth(true) {
			c.p.cutsRST.Add(1)
		}
		return
	}
	c.finPending.Store(true)
	// With no traffic the next chunk may never come: close anyway.
	time.AfterFunc(300*time.Millisecond, func() {
		if c.finPending.Load() && c.closeBoth(false) {
			c.p.cutsFIN.Add(1)
		}
	})
}

// closeBoth closes both sides, with RST (linger 0) when rst is set. It
// reports whether this call did it.
func (c *proxyConn) closeBoth(rst bool) bool {
	did := false
	c.closeOnce.Do(func() {
		did = true
		if rst {
			_ = c.down.SetLinger(0)
			_ = c.up.SetLinger(0)
		}
		_ = c.down.Close()
		_ = c.up.Close()
		close(c.done)
	})
	return did
}

// pump copies src to dst chunk by chunk, delaying each chunk and applying
// the faults. toServer marks the client->server direction, where the
// WebSocket frames are parsed to find sends.
func (c *proxyConn) pump(src, dst *net.TCPConn, toServer bool, rng *rand.Rand) {
	defer c.closeBoth(false)
	var sc wsScanner
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if d := c.p.cfg.MaxDelay; d > 0 {
				select {
				case <-time.After(time.Duration(rng.Int64N(int64(d) + 1))):
				case <-c.done:
					return
				}
			}
			if !toServer && c.frozen.Load() {
				continue // a cut after a send is pending: the client must not see the answer
			}
			if c.finPending.Load() && c.p.cuts.Load() {
				k := rng.IntN(len(chunk) + 1)
				_, _ = dst.Write(chunk[:k])
				if c.closeBoth(false) {
					c.p.cutsFIN.Add(1)
				}
				return
			}
			if toServer {
				if c.forwardClient(chunk, dst, &sc, rng) {
					return
				}
				continue
			}
			if _, werr := dst.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forwardClient forwards a client->server chunk; after a send frame it may
// freeze the other direction and cut. It reports whether the connection
// is done.
func (c *proxyConn) forwardClient(chunk []byte, dst *net.TCPConn, sc *wsScanner, rng *rand.Rand) bool {
	ends := sc.feed(chunk)
	c.p.sendSeen.Add(uint64(len(ends)))
	for _, end := range ends {
		if !c.p.cuts.Load() || rng.Float64() >= c.p.cfg.SendCutProb {
			continue
		}
		c.frozen.Store(true)
		if _, err := dst.Write(chunk[:end]); err != nil {
			c.closeBoth(true)
			return true
		}
		// Give the server a moment (or not) to read and persist the send;
		// its answer is dropped either way.
		if w := c.p.cfg.SendCutMaxWait; w > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(w) + 1)))
		}
		if c.closeBoth(true) {
			c.p.cutsSend.Add(1)
		}
		return true
	}
	if _, err := dst.Write(chunk); err != nil {
		return true
	}
	return false
}

// wsScanner follows the client->server byte stream of a WebSocket
// connection (HTTP upgrade request, then masked frames) across arbitrary
// chunk boundaries and finds the frames that carry a "send" request.
type wsScanner struct {
	httpDone bool
	httpTail []byte // last bytes of the HTTP head seen so far (to find CRLFCRLF across chunks)
	hdr      []byte // header bytes of the current frame
	inFrame  bool   // header complete; payload bytes remain
	text     bool   // current frame is a text (or continuation) frame
	masked   bool
	key      [4]byte
	remain   uint64 // payload bytes left
	pos      int    // payload offset (for the mask)
	head     []byte // first bytes of the unmasked payload
}

const scanHead = 48 // bytes of payload kept: {"type":"send" comes first

var sendMarker = []byte(`"type":"send"`)

// feed consumes p and returns, for every send frame that ends in p, the
// offset just past its last byte.
func (s *wsScanner) feed(p []byte) (sendEnds []int) {
	i := 0
	if !s.httpDone {
		old := len(s.httpTail)
		s.httpTail = append(s.httpTail, p...)
		idx := bytes.Index(s.httpTail, []byte("\r\n\r\n"))
		if idx < 0 {
			if len(s.httpTail) > 3 {
				s.httpTail = append(s.httpTail[:0], s.httpTail[len(s.httpTail)-3:]...)
			}
			return nil
		}
		s.httpDone = true
		i = idx + 4 - old
		s.httpTail = nil
	}
	for i < len(p) {
		if !s.inFrame {
			s.hdr = append(s.hdr, p[i])
			i++
			need, ok := s.headerLen()
			if !ok || len(s.hdr) < need {
				continue
			}
			s.parseHeader()
			if s.remain == 0 {
				if s.complete() {
					sendEnds = append(sendEnds, i)
				}
			}
			continue
		}
		n := min(uint64(len(p)-i), s.remain)
		if len(s.head) < scanHead {
			k := min(int(n), scanHead-len(s.head))
			for j := 0; j < k; j++ {
				b := p[i+j]
				if s.masked {
					b ^= s.key[(s.pos+j)%4]
				}
				s.head = append(s.head, b)
			}
		}
		i += int(n)
		s.pos += int(n)
		s.remain -= n
		if s.remain == 0 && s.complete() {
			sendEnds = append(sendEnds, i)
		}
	}
	return sendEnds
}

// headerLen returns the full header length once the first two bytes are in.
func (s *wsScanner) headerLen() (int, bool) {
	if len(s.hdr) < 2 {
		return 0, false
	}
	n := 2
	switch s.hdr[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if s.hdr[1]&0x80 != 0 {
		n += 4
	}
	return n, true
}

func (s *wsScanner) parseHeader() {
	op := s.hdr[0] & 0x0f
	s.text = op == 0x1 || op == 0x0
	s.masked = s.hdr[1]&0x80 != 0
	l := uint64(s.hdr[1] & 0x7f)
	off := 2
	switch l {
	case 126:
		l = uint64(binary.BigEndian.Uint16(s.hdr[2:4]))
		off = 4
	case 127:
		l = binary.BigEndian.Uint64(s.hdr[2:10])
		off = 10
	}
	if s.masked {
		copy(s.key[:], s.hdr[off:off+4])
	}
	s.remain, s.pos, s.inFrame = l, 0, true
	s.head = s.head[:0]
}

// complete ends the current frame and reports whether it was a send.
func (s *wsScanner) complete() bool {
	isSend := s.text && bytes.Contains(s.head, sendMarker)
	s.inFrame = false
	s.hdr = s.hdr[:0]
	return isSend
}

// wsClientFrame returns a masked client frame carrying payload.
func wsClientFrame(t testing.TB, op ws.OpCode, payload string) []byte {
	t.Helper()
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	var b bytes.Buffer
	if err := ws.WriteHeader(&b, h); err != nil {
		t.Fatal(err)
	}
	p := []byte(payload)
	ws.Cipher(p, h.Mask, 0)
	b.Write(p)
	return b.Bytes()
}

const upgradeHead = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"

// scannerStream is an upgrade head and frames, with the offsets where the
// send frames end.
func scannerStream(t testing.TB) ([]byte, []int) {
	long := `{"type":"send","id":"r2","chat":"g:x","body":"` + string(bytes.Repeat([]byte("x"), 300)) + `"}`
	huge := `{"type":"send","id":"r3","chat":"g:x","body":"` + string(bytes.Repeat([]byte("y"), 70000)) + `"}`
	frames := []struct {
		op      ws.OpCode
		payload string
		send    bool
	}{
		{ws.OpText, `{"type":"send","id":"r1","to":"bob","body":"hi"}`, true},
		{ws.OpText, `{"type":"ack","chat":"g:x","seq":3}`, false},
		{ws.OpPing, ``, false},
		{ws.OpText, long, true},
		{ws.OpText, `{"type":"history","id":"h","chat":"g:x","body":"\"type\":\"send\""}`, false},
		{ws.OpBinary, `{"type":"send"}`, false},
		{ws.OpText, huge, true},
	}
	stream := []byte(upgradeHead)
	var ends []int
	for _, f := range frames {
		stream = append(stream, wsClientFrame(t, f.op, f.payload)...)
		if f.send {
			ends = append(ends, len(stream))
		}
	}
	return stream, ends
}

func feedSplit(s *wsScanner, stream []byte, cuts ...int) []int {
	var got []int
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		for _, e := range s.feed(stream[prev:c]) {
			got = append(got, prev+e)
		}
		prev = c
	}
	return got
}

func TestWSScannerFindsSends(t *testing.T) {
	stream, want := scannerStream(t)
	splits := map[string][]int{"whole": nil, "in the head": {10}, "after the head": {len(upgradeHead)}}
	for _, cut := range []int{len(upgradeHead) + 1, len(upgradeHead) + 7, want[0] - 1, want[0], want[1] - 2, want[2] - 5} {
		splits["at "+itoa(cut)] = []int{cut}
	}
	for name, cuts := range splits {
		t.Run(name, func(t *testing.T) {
			var s wsScanner
			if got := feedSplit(&s, stream, cuts...); !equalInts(got, want) {
				t.Fatalf("got send ends %v, want %v", got, want)
			}
		})
	}
	t.Run("byte by byte", func(t *testing.T) {
		var s wsScanner
		cuts := make([]int, 0, len(stream))
		for i := 1; i < len(stream); i++ {
			cuts = append(cuts, i)
		}
		if got := feedSplit(&s, stream, cuts...); !equalInts(got, want) {
			t.Fatalf("got send ends %v, want %v", got, want)
		}
	})
}

// FuzzWSScanner checks that any split of any input gives the same answer
// as feeding it whole, and never panics.
func FuzzWSScanner(f *testing.F) {
	stream, _ := scannerStream(f)
	f.Add(stream[:2000], 700)
	f.Add([]byte(upgradeHead+"\x81\xfe\x00"), 3)
	f.Add([]byte("\r\n\r\n\x81\xff\x00\x00\x00\x00\x00\x00\x00\x01abcdx"), 9)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		var whole, split wsScanner
		want := whole.feed(data)
		if cut < 0 {
			cut = -cut
		}
		cut %= len(data) + 1
		if got := feedSplit(&split, data, cut); !equalInts(got, want) {
			t.Fatalf("split at %d: got %v, want %v", cut, got, want)
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fakeUpstream accepts connections, records what it receives and answers
// "ANSWER" to every chunk past the upgrade head.
func fakeUpstream(t *testing.T) (addr string, got func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var recv []byte
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					mu.Lock()
					recv = append(recv, buf[:n]...)
					pastHead := len(recv) > len(upgradeHead)
					mu.Unlock()
					if err != nil {
						return
					}
					if !pastHead {
						continue
					}
					if _, err := c.Write([]byte("ANSWER")); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(recv)
	}
}

func TestChaosProxy(t *testing.T) {
	send := wsClientFrame(t, ws.OpText, `{"type":"send","id":"r1","to":"bob","body":"hi"}`)
	ack := wsClientFrame(t, ws.OpText, `{"type":"ack","chat":"g:x","seq":3}`)
	cases := []struct {
		name       string
		cfg        proxyConfig
		cuts       bool
		wantAnswer bool
		wantStats  proxyStats
	}{
		{"cuts off forwards", proxyConfig{MaxDelay: 5 * time.Millisecond, SendCutProb: 1}, false, true,
			proxyStats{Accepted: 1, SendsSeen: 1}},
		{"cut after send", proxyConfig{SendCutProb: 1, SendCutMaxWait: 20 * time.Millisecond}, true, false,
			proxyStats{Accepted: 1, SendsSeen: 1, CutsAfterSend: 1}},
		{"timed rst", proxyConfig{CutProb: 1, CutMin: 20 * time.Millisecond, CutMax: 20 * time.Millisecond, RSTProb: 1}, true, false,
			proxyStats{Accepted: 1, CutsRST: 1}}, // cut before the send arrives
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, upstream := fakeUpstream(t)
			p := startProxy(t, addr, tc.cfg, 1)
			p.SetCuts(tc.cuts)
			c, err := net.Dial("tcp", p.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(upgradeHead)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond) // let the timed cut fire first in "timed rst"
			_, _ = c.Write(append(bytes.Clone(send), ack...))
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			var answers []byte
			buf := make([]byte, 1024)
			for !bytes.Contains(answers, []byte("ANSWER")) {
				n, err := c.Read(buf)
				answers = append(answers, buf[:n]...)
				if err != nil {
					break
				}
			}
			if got := bytes.Contains(answers, []byte("ANSWER")); got != tc.wantAnswer {
				t.Fatalf("got answer %v (%q), want %v", got, answers, tc.wantAnswer)
			}
			wantUp := upgradeHead + string(send) + string(ack)
			switch tc.name {
			case "cut after send":
				wantUp = upgradeHead + string(send) // the ack after the send never goes through
			case "timed rst":
				wantUp = upgradeHead
			}
			deadline := time.Now().Add(2 * time.Second)
			for string(upstream()) != wantUp && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := upstream(); string(got) != wantUp {
				t.Fatalf("upstream got %d bytes, want %d", len(got), len(wantUp))
			}
			p.Close()
			if got := p.Stats(); got != tc.wantStats {
				t.Fatalf("got stats %+v, want %+v", got, tc.wantStats)
			}
		})
	}
}
