package logic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/parley-chat/parley/api"
	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/gostats"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// DevTokenTTL is the lifetime of tokens from POST /v1/dev/token (capped
// at auth.max_lifetime).
const DevTokenTTL = 24 * time.Hour

// MaxHTTPBodyBytes is the largest HTTP request body the API reads; a
// larger one is answered 413 too_large (as a JSON error) whatever its size.
const MaxHTTPBodyBytes = 64 << 10

func (s *Service) newHTTPServer() *fasthttp.Server {
	if s.cfg.WebDir != "" {
		fs := &fasthttp.FS{
			Root:               s.cfg.WebDir,
			IndexNames:         []string{"index.html"},
			Compress:           false,
			AcceptByteRange:    false,
			GenerateIndexPages: false,
			PathNotFound: func(ctx *fasthttp.RequestCtx) {
				httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such file"))
			},
		}
		s.web = fs.NewRequestHandler()
	}
	return &fasthttp.Server{
		Handler:            s.serveHTTP,
		Name:               httpServerName,
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       10 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: MaxHTTPBodyBytes,
		ErrorHandler:       httpReadError,
		Logger:             httpLogger{s},
	}
}

// httpServerName is the Server header of every answer.
const httpServerName = "parley"

// lingerTimeout and lingerBytes bound how long and how much of a
// refused request body is drained before its connection closes (see
// lingerConn).
const (
	lingerTimeout = 2 * time.Second
	lingerBytes   = 32 << 20
)

// httpReadError answers a request fasthttp could not read (it never
// reached serveHTTP) with the API's JSON error body: 413 too_large for a
// body over MaxHTTPBodyBytes (by Content-Length or once a chunked body
// passes it), 431 for a header over the read buffer, 408 for a read
// timeout, else 400. fasthttp writes the answer after what it still
// buffers for earlier pipelined requests, then closes the connection; a
// too-large body's connection lingers at that close (lingerConn).
func httpReadError(ctx *fasthttp.RequestCtx, err error) {
	start := time.Now()
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		httpError(ctx, fasthttp.StatusRequestEntityTooLarge, proto.Errorf(proto.CodeTooLarge, "request body exceeds %d bytes", MaxHTTPBodyBytes))
		if lc, ok := ctx.Conn().(*lingerConn); ok {
			lc.linger.Store(true)
		}
	case errors.As(err, &small):
		httpError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, proto.Errorf(proto.CodeBadRequest, "request header too large"))
	case errors.As(err, &ne) && ne.Timeout():
		httpError(ctx, fasthttp.StatusRequestTimeout, proto.Errorf(proto.CodeBadRequest, "request timeout"))
	default:
		httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "malformed HTTP request"))
	}
	ctx.SetConnectionClose()
	observeHTTP("other", ctx.Response.StatusCode(), start)
}

// lingerListener hands out lingerConns.
type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerConn is an HTTP connection that, once marked (a request body
// refused as too large, unread), half-closes at Close and discards what
// the client still sends — at most lingerBytes, for at most lingerTimeout
// — before closing. fasthttp refuses an oversized body without reading
// it; closing a socket with unread input sends a TCP RST, which can
// destroy the 413 before the client reads it (Go's net/http server
// lingers the same way).
type lingerConn struct {
	net.Conn
	linger atomic.Bool
}

func (c *lingerConn) Close() error {
	if c.linger.Load() {
		if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
		}
	}
	return c.Conn.Close()
}

type httpLogger struct{ s *Service }

func (l httpLogger) Printf(format string, args ...any) {
	l.s.log.Debug("fasthttp", "msg", strings.TrimSpace(format), "args", args)
}

// httpReply collects the answer frame of a request made over HTTP.
type httpReply chan []byte

func (h httpReply) reply(frame []byte) {
	select {
	case h <- bytes.Clone(frame):
	default:
	}
}

func (s *Service) serveHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := string(ctx.Path())
	route := "other"
	defer func() { observeHTTP(route, ctx.Response.StatusCode(), start) }()
	method := string(ctx.Method())
	switch {
	case path == "/healthz":
		route = "healthz"
		ctx.SetBodyString("ok\n")
		return
	case path == "/readyz":
		route = "readyz"
		s.serveReady(ctx, false)
		return
	case path == "/v1/dev/token" && method == fasthttp.MethodPost:
		route = "dev_token"
		s.serveDevToken(ctx)
		return
	case path == "/v1/openapi.json" && (method == fasthttp.MethodGet || method == fasthttp.MethodHead):
		route = "openapi"
		ctx.SetContentType("application/json")
		ctx.SetBody(api.OpenAPI)
		return
	}
	if !strings.HasPrefix(path, "/v1/") {
		if s.web != nil && (method == fasthttp.MethodGet || method == fasthttp.MethodHead) {
			route = "web"
			s.web(ctx)
			return
		}
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such endpoint"))
		return
	}
	claims, err := s.httpAuth(ctx)
	if err != nil {
		httpError(ctx, fasthttp.StatusUnauthorized, proto.Errorf("unauthorized", "%v", err))
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
	defer cancel()
	switch {
	case path == "/v1/chats" && method == fasthttp.MethodGet:
		route = "chats"
		chats, err := s.Chats(rctx, claims.User)
		s.writeJSON(ctx, proto.ChatsAnswer{Chats: chats}, err)
	case path == "/v1/presence" && method == fasthttp.MethodGet:
		route = "presence"
		users := strings.Split(string(ctx.QueryArgs().Peek("users")), ",")
		info, err := s.Presence(rctx, claims.User, users)
		s.writeJSON(ctx, proto.PresenceAnswer{Users: info}, err)
	case path == "/v1/settings" && (method == fasthttp.MethodGet || method == fasthttp.MethodPut):
		route = "settings"
		s.serveSettings(rctx, ctx, claims.User, method == fasthttp.MethodPut)
	case path == "/v1/push/subscriptions":
		route = "push_subscriptions"
		s.servePushSubscriptions(rctx, ctx, claims)
	case path == "/v1/push/vapid" && method == fasthttp.MethodGet:
		route = "push_vapid"
		s.serveVAPID(ctx)
	case strings.HasPrefix(path, "/v1/chats/"):
		rest := strings.TrimPrefix(path, "/v1/chats/")
		chat, sub, _ := strings.Cut(rest, "/")
		switch {
		case sub == "messages" && method == fasthttp.MethodGet:
			route = "history"
			s.serveHistory(rctx, ctx, claims.User, chat)
		case sub == "messages" && method == fasthttp.MethodPost:
			route = "send"
			s.serveSend(ctx, claims, chat)
		case sub == "members" && method == fasthttp.MethodGet:
			route = "members"
			ans, err := s.ChatMembers(rctx, claims.User, chat)
			s.writeJSON(ctx, ans, err)
		default:
			httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such endpoint"))
		}
	default:
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such endpoint"))
	}
}

// httpAuth verifies the token of "Authorization: Bearer <jwt>", else of
// ?token=.
func (s *Service) httpAuth(ctx *fasthttp.RequestCtx) (auth.Claims, error) {
	tok, ok := adminauth.Bearer(string(ctx.Request.Header.Peek("Authorization")))
	if !ok {
		tok = string(ctx.QueryArgs().Peek("token"))
	}
	return s.verifier.Verify(strings.TrimSpace(tok))
}

// serveReady answers a readiness probe: 200 "ready", or 503. With reason
// (the admin listener, the operator's port) a 503 names why; on the HTTP
// API's listener, which clients may reach, it says only "not ready".
func (s *Service) serveReady(ctx *fasthttp.RequestCtx, reason bool) {
	why := s.notReady()
	if why == "" {
		ctx.SetBodyString("ready\n")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
	if !reason {
		why = "not ready"
	}
	ctx.SetBodyString(why + "\n")
}

// notReady returns why this node is not ready, "" when it is.
func (s *Service) notReady() string {
	s.health.mu.Lock()
	draining := s.health.draining
	s.health.mu.Unlock()
	if draining {
		return "draining"
	}
	if s.breaker.Open() {
		return "store circuit open"
	}
	if k := s.leases; k != nil {
		// Not ready to serve its share of chats until it has read the
		// leases and holds those the ring gives it (after a restart: once
		// the last incarnation's leases ran out).
		select {
		case <-k.Ready():
		default:
			return "reading sequencing leases"
		}
		if n := k.Missing(); n > 0 {
			return fmt.Sprintf("taking over %d sequencing leases", n)
		}
	}
	pctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := s.store.LastSeq(pctx, "g:readyz-probe"); err != nil && !errors.Is(err, record.ErrNotFound) {
		return "store unreachable"
	}
	return ""
}

func (s *Service) serveDevToken(ctx *fasthttp.RequestCtx) {
	if !s.cfg.DevTokens {
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "dev tokens are disabled (logic.dev_tokens)"))
		return
	}
	var req struct {
		User   string `json:"user"`
		Device string `json:"device"`
	}
	if body := ctx.PostBody(); len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "invalid JSON body"))
			return
		}
	}
	if req.User == "" {
		req.User = string(ctx.QueryArgs().Peek("user"))
	}
	if req.Device == "" {
		req.Device = string(ctx.QueryArgs().Peek("device"))
	}
	acfg := s.verifier.Config()
	ttl := min(DevTokenTTL, acfg.MaxLifetime) // Config has MaxLifetime's default filled in
	now := s.now()
	tok, err := auth.Issue(acfg, req.User, req.Device, ttl, now)
	if err != nil {
		httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "%v", err))
		return
	}
	s.writeJSON(ctx, map[string]any{"token": tok, "user": req.User, "expires_at": now.Add(ttl).UnixMilli()}, nil)
}

func (s *Service) serveHistory(rctx context.Context, ctx *fasthttp.RequestCtx, user, chat string) {
	q := ctx.QueryArgs()
	var p record.Page
	var err error
	parse := func(name string) uint64 {
		v := q.Peek(name)
		if len(v) == 0 || err != nil {
			return 0
		}
		n, perr := strconv.ParseUint(string(v), 10, 64)
		if perr != nil {
			err = proto.Errorf(proto.CodeBadRequest, "%s must be a non-negative integer", name)
		}
		return n
	}
	p.Before, p.After = parse("before"), parse("after")
	p.Forward = len(q.Peek("after")) > 0 // after=0: from the start; after= (empty): no bound
	limit := parse("limit")
	if err == nil && limit > record.MaxPageLimit {
		err = proto.Errorf(proto.CodeBadRequest, "limit must be in 1..%d", record.MaxPageLimit)
	}
	p.Limit = int(limit)
	if err != nil {
		s.writeJSON(ctx, nil, err)
		return
	}
	msgs, more, err := s.History(rctx, user, chat, p)
	if err != nil {
		s.writeJSON(ctx, nil, err)
		return
	}
	b := append([]byte(`{"chat":`), proto.AppendString(nil, chat)...)
	b = append(b, `,"messages":[`...)
	for i := range msgs {
		if i > 0 {
			b = append(b, ',')
		}
		b = proto.AppendMessageObject(b, &msgs[i])
	}
	b = append(b, `],"more":`...)
	b = strconv.AppendBool(b, more)
	b = append(b, '}')
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// serveSend is the REST fallback for sending: the same path as a WebSocket
// send, answered with the sent frame.
func (s *Service) serveSend(ctx *fasthttp.RequestCtx, claims auth.Claims, chat string) {
	var in proto.Inbound
	if err := json.Unmarshal(ctx.PostBody(), &in); err != nil {
		httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "invalid JSON body"))
		return
	}
	in.Type, in.Chat, in.To = proto.TypeSend, chat, ""
	// ?device=, else the token's dev claim, else "http". A send retried
	// over REST after a WebSocket timeout names the session's device, so
	// it is the same request (ids are per device). Without one it is not
	// "default": the sessions of the device "default" would then take it
	// for their own message and never be sent it.
	device := claims.Device
	if q := ctx.QueryArgs(); q.Has("device") {
		d := string(q.Peek("device"))
		if !record.ValidID(d) {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "invalid device id"))
			return
		}
		if device != "" && device != d {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "device does not match the token's dev claim"))
			return
		}
		device = d
	}
	if device == "" {
		device = "http"
	}
	out := make(httpReply, 1)
	s.dispatch(&request{in: in, user: claims.User, device: device, out: out, recv: s.now(), chat: chat})
	select {
	case frame := <-out:
		var f struct {
			Type         string `json:"type"`
			Code         string `json:"code"`
			Message      string `json:"message"`
			RetryAfterMS int64  `json:"retry_after_ms"`
		}
		_ = json.Unmarshal(frame, &f)
		if f.Type == proto.TypeError {
			// The error frame becomes the API's error object.
			httpErrorID(ctx, statusFor(f.Code), &proto.Error{Code: f.Code, Message: f.Message, RetryAfterMS: f.RetryAfterMS}, in.ID)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(frame)
	case <-time.After(s.cfg.StoreTimeout + time.Second):
		httpErrorID(ctx, fasthttp.StatusServiceUnavailable, &proto.Error{Code: proto.CodeUnavailable, Message: "timed out, retry with the same id"}, in.ID)
	}
}

func (s *Service) writeJSON(ctx *fasthttp.RequestCtx, v any, err error) {
	if err != nil {
		var pe *proto.Error
		if !errors.As(err, &pe) {
			pe = s.storeError(err)
		}
		httpError(ctx, statusFor(pe.Code), pe)
		return
	}
	b, merr := json.Marshal(v)
	if merr != nil {
		httpError(ctx, fasthttp.StatusInternalServerError, proto.Errorf(proto.CodeInternal, "cannot encode answer"))
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func statusFor(code string) int {
	switch code {
	case proto.CodeBadRequest, proto.CodeUnknownType:
		return fasthttp.StatusBadRequest
	case proto.CodeNotMember, proto.CodeForbidden:
		return fasthttp.StatusForbidden
	case proto.CodeChatNotFound:
		return fasthttp.StatusNotFound
	case proto.CodeTooLarge:
		return fasthttp.StatusRequestEntityTooLarge
	case proto.CodeGroupFull, proto.CodeIDReused:
		return fasthttp.StatusConflict
	case proto.CodeRateLimited:
		return fasthttp.StatusTooManyRequests
	case proto.CodeOverloaded, proto.CodeUnavailable:
		return fasthttp.StatusServiceUnavailable
	}
	return fasthttp.StatusInternalServerError
}

func httpError(ctx *fasthttp.RequestCtx, status int, e *proto.Error) {
	httpErrorID(ctx, status, e, "")
}

// httpErrorID is httpError naming the request's id (when valid) in the
// error object.
func httpErrorID(ctx *fasthttp.RequestCtx, status int, e *proto.Error, id string) {
	obj := map[string]any{"code": e.Code, "message": e.Message, "retryable": proto.Retryable(e.Code)}
	if record.ValidID(id) && !e.NullID {
		obj["id"] = id
	}
	b, _ := json.Marshal(map[string]any{"error": obj})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	if e.RetryAfterMS > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.FormatInt((e.RetryAfterMS+999)/1000, 10))
	}
	ctx.SetBody(b)
}

// newAdminServer serves the admin listener: /metrics (behind the admin
// bearer token when one is set), /healthz and /readyz; GET and HEAD only.
func (s *Service) newAdminServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:            s.serveAdmin,
		Name:               httpServerName,
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: 1 << 10,
		Logger:             httpLogger{s},
	}
}

func (s *Service) serveAdmin(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	route := "other"
	defer func() { observeHTTP(route, ctx.Response.StatusCode(), start) }()
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		httpError(ctx, fasthttp.StatusMethodNotAllowed, proto.Errorf(proto.CodeBadRequest, "GET or HEAD only"))
		return
	}
	switch string(ctx.Path()) {
	case "/healthz":
		route = "healthz"
		ctx.SetBodyString("ok\n")
	case "/readyz":
		route = "readyz"
		s.serveReady(ctx, true)
	case "/metrics":
		route = "metrics"
		if s.adminToken != "" {
			if !adminauth.Allowed(string(ctx.Request.Header.Peek("Authorization")), s.adminToken) {
				ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="parley-admin"`)
				httpError(ctx, fasthttp.StatusUnauthorized, proto.Errorf("unauthorized", "the admin bearer token is missing or wrong"))
				return
			}
		}
		ctx.SetContentType("text/plain; version=0.0.4")
		metrics.WritePrometheus(ctx, true)
		gostats.Write(ctx)
	default:
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such endpoint"))
	}
}

// serveSettings answers GET /v1/settings with the user's settings, and PUT
// with a JSON object of the settings to change (each optional) with the
// settings after the change.
func (s *Service) serveSettings(rctx context.Context, ctx *fasthttp.RequestCtx, user string, put bool) {
	var change *struct {
		HideLastSeen *bool `json:"hide_last_seen"`
	}
	var hide *bool
	if put {
		dec := json.NewDecoder(bytes.NewReader(ctx.PostBody()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&change); err != nil || dec.More() || change == nil {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest,
				`the body must be a JSON object of settings: {"hide_last_seen": true|false}`))
			return
		}
		hide = change.HideLastSeen
		if hide != nil {
			if ok, wait := s.sendLimit.allow(user, s.now()); !ok {
				rateLimited.Inc()
				httpError(ctx, fasthttp.StatusTooManyRequests, &proto.Error{Code: proto.CodeRateLimited,
					Message: "too many changes: retry later", RetryAfterMS: max(1, wait.Milliseconds())})
				return
			}
		}
	}
	st, err := s.Settings(rctx, user, hide)
	s.writeJSON(ctx, proto.SettingsAnswer{HideLastSeen: st.HideLastSeen}, err)
}
