package logic

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Push subscription endpoints (docs/protocol.md, "Push subscriptions"):
//
//	POST   /v1/push/subscriptions  register the token device's Web Push subscription
//	DELETE /v1/push/subscriptions  remove it
//	GET    /v1/push/vapid          the VAPID public key for PushManager.subscribe
//
// Limits on what a client may register.
const (
	maxPushEndpoint = 2048 // bytes of the endpoint URL
	pushP256dhLen   = 65   // an uncompressed P-256 point
	pushAuthLen     = 16   // the RFC 8291 auth secret
)

// SetVAPIDPublicKey sets the VAPID public key (base64url, an uncompressed
// P-256 point) that GET /v1/push/vapid returns; "" answers 404 (Web Push
// not configured). Safe for concurrent use, before or after Run.
func (s *Service) SetVAPIDPublicKey(k string) { s.vapidPublicKey.Store(&k) }

func (s *Service) vapidKey() string {
	if p := s.vapidPublicKey.Load(); p != nil {
		return *p
	}
	return ""
}

// pushSubscriptionBody is the browser's PushSubscription.toJSON().
type pushSubscriptionBody struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// servePushSubscriptions handles POST and DELETE /v1/push/subscriptions for
// the token's (user, device).
func (s *Service) servePushSubscriptions(rctx context.Context, ctx *fasthttp.RequestCtx, claims auth.Claims) {
	if claims.Device == "" {
		httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "the token names no device: push subscriptions are per device"))
		return
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodPost:
		var body pushSubscriptionBody
		if err := json.Unmarshal(ctx.PostBody(), &body); err != nil {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "invalid JSON body"))
			return
		}
		sub, err := validPushSubscription(body)
		if err != nil {
			httpError(ctx, fasthttp.StatusBadRequest, proto.Errorf(proto.CodeBadRequest, "%v", err))
			return
		}
		sub.User, sub.Device, sub.CreatedAt = claims.User, claims.Device, s.now().UnixMilli()
		if err := s.store.PutPushSubscription(rctx, sub); err != nil {
			s.writeJSON(ctx, nil, s.storeError(err))
			return
		}
		s.writeJSON(ctx, sub, nil)
		ctx.SetStatusCode(fasthttp.StatusCreated)
	case fasthttp.MethodDelete:
		if err := s.store.DeletePushSubscription(rctx, claims.User, claims.Device); err != nil {
			s.writeJSON(ctx, nil, s.storeError(err))
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "no such endpoint"))
	}
}

// serveVAPID answers GET /v1/push/vapid.
func (s *Service) serveVAPID(ctx *fasthttp.RequestCtx) {
	k := s.vapidKey()
	if k == "" {
		httpError(ctx, fasthttp.StatusNotFound, proto.Errorf("not_found", "web push is not configured on this server"))
		return
	}
	s.writeJSON(ctx, map[string]string{"public_key": k}, nil)
}

// validPushSubscription checks a client's subscription and returns it with
// its keys in canonical form (base64url without padding).
func validPushSubscription(b pushSubscriptionBody) (record.PushSubscription, error) {
	var sub record.PushSubscription
	if b.Endpoint == "" {
		return sub, fmt.Errorf("endpoint: required")
	}
	if len(b.Endpoint) > maxPushEndpoint {
		return sub, fmt.Errorf("endpoint: longer than %d bytes", maxPushEndpoint)
	}
	u, err := url.Parse(b.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return sub, fmt.Errorf("endpoint: not an absolute http(s) URL without user info or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(u.Hostname()) {
			return sub, fmt.Errorf("endpoint: http:// is allowed only for loopback hosts; use https://")
		}
	default:
		return sub, fmt.Errorf("endpoint: scheme must be https")
	}
	p256dh, err := decodeB64URL(b.Keys.P256dh)
	if err != nil || len(p256dh) != pushP256dhLen {
		return sub, fmt.Errorf("keys.p256dh: want the base64url encoding of a %d-byte uncompressed P-256 point", pushP256dhLen)
	}
	if _, err := ecdh.P256().NewPublicKey(p256dh); err != nil {
		return sub, fmt.Errorf("keys.p256dh: not a point on P-256")
	}
	authSecret, err := decodeB64URL(b.Keys.Auth)
	if err != nil || len(authSecret) != pushAuthLen {
		return sub, fmt.Errorf("keys.auth: want the base64url encoding of %d bytes", pushAuthLen)
	}
	sub.Endpoint = b.Endpoint
	sub.P256dh = base64.RawURLEncoding.EncodeToString(p256dh)
	sub.Auth = base64.RawURLEncoding.EncodeToString(authSecret)
	return sub, nil
}

// decodeB64URL decodes base64url with or without padding.
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
