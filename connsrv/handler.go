package connsrv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/parley-chat/parley/connsrv/proxyproto"
	"github.com/parley-chat/parley/connsrv/wsframe"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/internal/tierlink"
)

const (
	opText = ws.OpText
	opPing = ws.OpPing
	opPong = ws.OpPong
)

// Subprotocol is the WebSocket subprotocol the server selects. A client
// may also pass its token as a second subprotocol "bearer.<token>".
const Subprotocol = "parley.v1"

const bearerProtocolPrefix = "bearer."

// handler implements gnet.EventHandler. Every method runs on an event loop
// and never blocks.
type handler struct {
	gnet.BuiltinEventEngine
	srv *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	h.srv.onBoot(eng)
	return gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	srv := h.srv
	if srv.shutdown.Load() {
		srv.m.reject(rejectDraining)
		return nil, gnet.Close
	}
	peer := addrPortOf(c.RemoteAddr())
	if srv.cfg.ProxyProtocol && len(srv.trusted) > 0 && !prefixesContain(srv.trusted, peer.Addr()) {
		srv.m.reject(rejectProxyUntrusted)
		srv.log.Debug("connection from an untrusted proxy refused", "remote", peer.String())
		return nil, gnet.Close
	}
	id := srv.nextID.Add(1)
	s := &session{c: c, id: id}
	s.lastActive.Store(time.Now().UnixNano())
	c.SetContext(s)
	srv.reg.add(s)
	if !srv.cfg.ProxyProtocol {
		srv.admit(s)
	}
	return nil, gnet.None
}

// addrPortOf returns a socket address as an AddrPort (IPv4-mapped
// addresses unmapped); the zero value for other address types.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (h *handler) OnClose(c gnet.Conn, _ error) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	srv := h.srv
	srv.reg.remove(s.id)
	s.mu.Lock()
	code := s.closeCode
	s.closeCode = 1 // refuse further enqueues
	putOut(s.out)
	s.out = nil
	s.mu.Unlock()
	if s.peerCode != 0 {
		code = s.peerCode
	}
	upgraded := s.state.Load() != stateHandshake || s.sent
	s.state.Store(stateClosing)
	if !upgraded {
		srv.m.closedWith(0)
		return gnet.None
	}
	if code == 0 || code == 1 {
		code = uint16(ws.StatusAbnormalClosure)
	}
	srv.m.open.Dec()
	srv.m.closedWith(code)
	if s.sent {
		s.link.Load().sendClose(s.gen.Load(), s.id, code)
	}
	s.asm = nil
	return gnet.None
}

// OnTraffic runs for inbound bytes and for wake-ups (pending output).
func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	s, ok := c.Context().(*session)
	if !ok {
		return gnet.Close
	}
	switch s.state.Load() {
	case stateHandshake:
		if h.srv.cfg.ProxyProtocol && s.proxySrc == nil {
			switch h.proxyHeader(c, s) {
			case hsWait:
				return h.flush(c, s) // carries out a handshake timeout
			case hsFailed:
				_ = c.Close()
				return gnet.Close
			}
		}
		switch h.handshake(c, s) {
		case hsWait:
			return h.flush(c, s) // carries out a handshake timeout
		case hsFailed:
			_ = c.Close()
			return gnet.Close
		}
		h.readFrames(c, s)
	case stateOpen:
		h.readFrames(c, s)
	default:
		_, _ = c.Discard(-1)
	}
	return h.flush(c, s)
}

// flush writes the pending output in one write and carries out a pending
// close. Loop only.
func (h *handler) flush(c gnet.Conn, s *session) gnet.Action {
	srv := h.srv
	buf, code, reason := s.takeOut()
	st := s.state.Load()
	if code != 0 {
		switch st {
		case stateHandshake:
			_ = c.Close()
			return gnet.Close
		case stateOpen:
			if code == closeSlowConsumer {
				buf = buf[:0]
			}
			if buf == nil {
				buf = getOut(wsframe.MaxHeaderSize + wsframe.MaxControlPayload)
			}
			buf = wsframe.AppendClose(buf, ws.StatusCode(code), reason)
			s.state.Store(stateClosing)
		}
	}
	if len(buf) > 0 {
		_, _ = c.Write(buf)
		srv.m.bytesOut.Add(len(buf))
	}
	putOut(buf)
	if code != 0 {
		_ = c.Close()
		return gnet.Close
	}
	if c.OutboundBuffered() > srv.cfg.WriteQueueLimit {
		s.mu.Lock()
		s.closeCode = closeSlowConsumer
		s.mu.Unlock()
		s.state.Store(stateClosing)
		srv.m.drop(dropSlow)
		_ = c.Close()
		return gnet.Close
	}
	return gnet.None
}

// requestClose records a close decided on the loop; flush carries it out.
func (s *session) requestClose(code uint16, reason string) {
	s.mu.Lock()
	if s.closeCode == 0 {
		s.closeCode, s.closeReason = code, reason
	}
	s.mu.Unlock()
}

// closeFor maps a wsframe error to a close code and reason.
func closeFor(err error) (uint16, string) {
	var e *wsframe.Error
	if errors.As(err, &e) {
		return uint16(e.Code), e.Reason
	}
	return uint16(ws.StatusInternalServerError), "internal error"
}

// readFrames handles every complete frame buffered and leaves a partial
// frame in gnet's buffer. Loop only.
func (h *handler) readFrames(c gnet.Conn, s *session) {
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return
	}
	srv := h.srv
	maxFrame := int64(srv.cfg.MaxFrameSize)
	off := 0
	for off < len(buf) {
		hd, p, n, err := wsframe.ReadFrame(buf[off:], maxFrame)
		if err != nil {
			s.requestClose(closeFor(err))
			_, _ = c.Discard(-1)
			return
		}
		if n == 0 {
			break
		}
		if off == 0 {
			s.lastActive.Store(time.Now().UnixNano()) // any complete frame is activity
		}
		off += n
		srv.m.framesIn.Inc()
		srv.m.bytesIn.Add(n)
		if !h.handleFrame(s, hd, p) {
			_, _ = c.Discard(-1)
			return
		}
	}
	if off > 0 {
		_, _ = c.Discard(off)
	}
}

// handleFrame handles one complete, unmasked frame. It returns false when
// the session is closing and further input must be ignored. Loop only.
func (h *handler) handleFrame(s *session, hd ws.Header, p []byte) bool {
	srv := h.srv
	switch hd.OpCode {
	case ws.OpPing:
		s.enqueue(srv, opPong, p)
		return true
	case ws.OpPong:
		return true
	case ws.OpClose:
		code, _, err := wsframe.ParseClose(p)
		if err != nil {
			s.requestClose(closeFor(err))
			return false
		}
		s.peerCode = uint16(code)
		if code == ws.StatusNoStatusRcvd {
			code = ws.StatusNormalClosure
		}
		s.requestClose(uint16(code), "")
		return false
	}
	msg, done, err := s.pushData(hd, p, srv.cfg.MaxMessageSize)
	if err != nil {
		s.requestClose(closeFor(err))
		return false
	}
	if !done {
		return true
	}
	if bytes.Contains(msg, refreshMarker) && h.refresh(s, msg) {
		return true // answered here, not forwarded to logic
	}
	switch err := s.link.Load().sendData(s.gen.Load(), s.id, msg); {
	case err == nil:
		return true
	case errors.Is(err, errLinkFull):
		srv.m.drop(dropLinkFull)
		frame := proto.AppendError(nil, "", &proto.Error{Code: proto.CodeOverloaded, Message: "server overloaded, retry later", RetryAfterMS: 1000})
		s.enqueue(srv, opText, frame)
		return true
	default:
		srv.m.drop(dropLinkDown)
		s.requestClose(closeRestart, "logic unavailable")
		return false
	}
}

// pushData runs a data frame through the fragment assembler. A whole
// unfragmented message (the common case) goes through a zero Assembler on
// the stack; the session's own is allocated at the first fragment and
// dropped when the message completes or fails. Loop only.
func (s *session) pushData(hd ws.Header, p []byte, maxMessage int) ([]byte, bool, error) {
	if s.asm == nil && hd.Fin {
		var a wsframe.Assembler
		return a.Push(hd, p, maxMessage)
	}
	if s.asm == nil {
		s.asm = new(wsframe.Assembler)
	}
	msg, done, err := s.asm.Push(hd, p, maxMessage)
	if err != nil || !s.asm.Active() {
		s.asm = nil // msg stays valid: it does not alias the Assembler
	}
	return msg, done, err
}

// Handshake outcomes.
const (
	hsWait = iota
	hsFailed
	hsUpgraded
)

var headEnd = []byte("\r\n\r\n")

const response431 = "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

// proxyHeader consumes the PROXY protocol header: hsWait until it is
// complete, hsFailed when it is missing or malformed, hsUpgraded (go on)
// once consumed. The header's client address becomes the session's remote
// address, which the per-IP limit then checks. Loop only.
func (h *handler) proxyHeader(c gnet.Conn, s *session) int {
	srv := h.srv
	buf, _ := c.Peek(-1)
	hd, n, err := proxyproto.Parse(buf)
	if err != nil {
		reason := rejectProxyInvalid
		if errors.Is(err, proxyproto.ErrMissing) {
			reason = rejectProxyMissing
		}
		srv.m.reject(reason)
		srv.log.Debug("connection without a valid PROXY header refused", "conn_id", s.id, "remote", s.remote().String(), "err", err)
		return hsFailed
	}
	if n == 0 {
		return hsWait
	}
	_, _ = c.Discard(n)
	src := addrPortOf(c.RemoteAddr())
	if !hd.Local {
		src = netip.AddrPortFrom(hd.Src.Addr().Unmap(), hd.Src.Port())
	}
	s.proxySrc = &src
	srv.admit(s)
	return hsUpgraded
}

// response429 answers a connection over its IP's rate.
func response429(retryAfter int32) []byte {
	b := make([]byte, 0, 128)
	b = append(b, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: "...)
	b = strconv.AppendInt(b, int64(retryAfter), 10)
	return append(b, "\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"...)
}

// handshake upgrades the connection once the whole request head is
// buffered. Loop only.
func (h *handler) handshake(c gnet.Conn, s *session) int {
	srv := h.srv
	buf, _ := c.Peek(-1)
	end := bytes.Index(buf, headEnd)
	if end < 0 {
		if len(buf) > srv.cfg.MaxHandshakeSize {
			_, _ = c.Write([]byte(response431))
			srv.m.rejected.Inc()
			return hsFailed
		}
		return hsWait
	}
	end += len(headEnd)
	if end > srv.cfg.MaxHandshakeSize {
		_, _ = c.Write([]byte(response431))
		srv.m.rejected.Inc()
		return hsFailed
	}
	if s.limitedFor > 0 {
		// Answered once the request is read, so the close does not reset
		// the connection before the client sees the 429.
		_, _ = c.Discard(end)
		_, _ = c.Write(response429(s.limitedFor))
		return hsFailed
	}
	u := upgrade{srv: srv, s: s}
	rw := handshakeRW{c: c}
	rw.r.Reset(buf[:end])
	up := ws.Upgrader{
		OnRequest:       u.onRequest,
		OnHeader:        u.onHeader,
		ProtocolCustom:  u.protocol,
		OnBeforeUpgrade: u.beforeUpgrade,
	}
	_, err := up.Upgrade(&rw)
	_, _ = c.Discard(end)
	if err != nil {
		srv.m.rejected.Inc()
		srv.log.Debug("websocket upgrade refused", "conn_id", s.id, "err", err)
		return hsFailed
	}
	if !u.claims.Expires.IsZero() {
		s.expires.Store(u.claims.Expires.UnixNano())
	}
	s.user, s.device = u.claims.User, u.device
	s.lastActive.Store(time.Now().UnixNano())
	s.state.Store(stateOpen)
	srv.m.handshakes.Inc()
	srv.m.open.Inc()
	remote := ""
	if ra := s.remote(); ra.IsValid() {
		remote = ra.String()
	}
	if err := s.link.Load().sendOpen(s, tierlink.Open{User: u.claims.User, Device: u.device, Remote: remote}); err != nil {
		srv.m.drop(dropLinkDown)
		s.requestClose(closeRestart, "logic unavailable")
		return hsUpgraded
	}
	s.sent = true
	srv.log.Debug("session open", "conn_id", s.id, "user_id", u.claims.User, "device", u.device, "remote", remote)
	return hsUpgraded
}

// handshakeRW gives the upgrader exactly the request head and writes its
// response straight to the connection (gnet copies what the socket does
// not take at once), so nothing of the handshake stays with the session.
type handshakeRW struct {
	r bytes.Reader
	c gnet.Conn
}

func (rw *handshakeRW) Read(p []byte) (int, error)  { return rw.r.Read(p) }
func (rw *handshakeRW) Write(p []byte) (int, error) { return rw.c.Write(p) }

// upgrade collects what the upgrader callbacks see and decides.
type upgrade struct {
	srv *Server
	s   *session

	queryToken, headerToken, protoToken string
	queryDevice                         string
	hasDevice                           bool
	queryProtocol                       string // ?protocol=, the client protocol version the client asks for
	origin                              string
	badQuery                            bool

	claims auth.Claims
	device string
}

func (u *upgrade) onRequest(uri []byte) error {
	i := bytes.IndexByte(uri, '?')
	if i < 0 {
		return nil
	}
	q, err := url.ParseQuery(string(uri[i+1:]))
	if err != nil {
		u.badQuery = true
		return nil
	}
	u.queryToken = q.Get("token")
	if d, ok := q["device"]; ok && len(d) > 0 {
		u.queryDevice, u.hasDevice = d[0], true
	}
	u.queryProtocol = q.Get("protocol")
	return nil
}

func (u *upgrade) onHeader(key, value []byte) error {
	switch {
	case bytes.EqualFold(key, []byte("Authorization")):
		const scheme = "bearer "
		if len(value) > len(scheme) && strings.EqualFold(string(value[:len(scheme)]), scheme) {
			u.headerToken = strings.TrimSpace(string(value[len(scheme):]))
		}
	case bytes.EqualFold(key, []byte("Origin")):
		u.origin = string(value)
	}
	return nil
}

// protocol selects Subprotocol and picks a "bearer.<token>" entry.
func (u *upgrade) protocol(v []byte) (string, bool) {
	selected := ""
	for item := range strings.SplitSeq(string(v), ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == Subprotocol:
			selected = Subprotocol
		case strings.HasPrefix(item, bearerProtocolPrefix):
			u.protoToken = item[len(bearerProtocolPrefix):]
		}
	}
	return selected, true
}

func reject(status int, reason string) error {
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

func (u *upgrade) beforeUpgrade() (ws.HandshakeHeader, error) {
	srv := u.srv
	if u.origin != "" && len(srv.cfg.AllowedOrigins) > 0 {
		ok := false
		for _, o := range srv.cfg.AllowedOrigins {
			if strings.EqualFold(o, u.origin) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, reject(403, "origin not allowed")
		}
	}
	if u.badQuery {
		return nil, reject(400, "malformed query")
	}
	if v := u.queryProtocol; v != "" && !proto.SupportedVersion(v) {
		// docs/protocol.md, "Compatibility": a client asking for a version
		// this server does not speak is refused here, naming what it does.
		return nil, reject(400, fmt.Sprintf("client protocol %.16q not supported: this server speaks %d..%d", v, proto.MinVersion, proto.Version))
	}
	token := u.headerToken
	if token == "" {
		token = u.protoToken
	}
	if token == "" {
		token = u.queryToken
	}
	claims, err := srv.verifier.Verify(token)
	if err != nil {
		switch {
		case errors.Is(err, auth.ErrMissing):
			return nil, reject(401, "missing token")
		case errors.Is(err, auth.ErrExpired):
			return nil, reject(401, "token expired")
		default:
			return nil, reject(401, "invalid token")
		}
	}
	device := "default"
	switch {
	case u.hasDevice:
		if !record.ValidID(u.queryDevice) {
			return nil, reject(400, "invalid device id")
		}
		if claims.Device != "" && claims.Device != u.queryDevice {
			// A device-bound token runs as its device only.
			return nil, reject(400, "device does not match the token's dev claim")
		}
		device = u.queryDevice
	case claims.Device != "":
		device = claims.Device
	}
	if srv.shutdown.Load() {
		return nil, reject(503, "server shutting down")
	}
	l := srv.pickLink(claims.User, u.s.id)
	if l == nil {
		return nil, reject(503, "logic tier unavailable")
	}
	u.s.link.Store(l)
	u.claims, u.device = claims, device
	return nil, nil
}
