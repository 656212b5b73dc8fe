package connsrv

import (
	"encoding/json"
	"errors"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// typeRefresh is the client frame that replaces the session's token:
//
//	{"type":"refresh","id":"<request id>","token":"<jwt>"}
//
// The connection tier answers it itself ({"type":"ok","id":...} or an
// error frame with code auth_failed) and never forwards it to logic.
const typeRefresh = "refresh"

// codeAuthFailed is the error code of a refused refresh token: the session
// keeps its old expiry (and is closed with 4001 when it passes).
const codeAuthFailed = "auth_failed"

// refreshMarker is the cheap test run on every client message before the
// JSON decode: only messages containing it are decoded here.
var refreshMarker = []byte(`"` + typeRefresh + `"`)

type refreshRequest struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Token string `json:"token"`
}

// refresh handles a refresh frame and returns true, or returns false when
// msg is not one (it is then forwarded to logic untouched). The new token
// must verify and name the session's user and, when it carries a device
// claim, the session's device; the session's expiry then moves to the
// token's when that is later. Loop only.
func (h *handler) refresh(s *session, msg []byte) bool {
	var r refreshRequest
	if json.Unmarshal(msg, &r) != nil || r.Type != typeRefresh {
		return false
	}
	srv := h.srv
	if !record.ValidID(r.ID) {
		// Never echo an invalid id (docs/protocol.md, frame rules).
		srv.m.refreshed(refreshInvalid)
		s.enqueue(srv, opText, proto.AppendError(nil, "", &proto.Error{Code: proto.CodeBadRequest, Message: "refresh needs an id (request id): 1-64 of [A-Za-z0-9-_.@]", NullID: r.ID != ""}))
		return true
	}
	fail := func(result, message string) bool {
		srv.m.refreshed(result)
		srv.log.Debug("token refresh refused", "conn_id", s.id, "user_id", s.user, "reason", message)
		s.enqueue(srv, opText, proto.AppendError(nil, r.ID, &proto.Error{Code: codeAuthFailed, Message: message}))
		return true
	}
	claims, err := srv.verifier.Verify(r.Token)
	switch {
	case errors.Is(err, auth.ErrMissing):
		return fail(refreshInvalid, "missing token")
	case errors.Is(err, auth.ErrExpired):
		return fail(refreshInvalid, "token expired")
	case err != nil:
		return fail(refreshInvalid, "invalid token")
	case claims.User != s.user:
		return fail(refreshMismatch, "token is for another user")
	case claims.Device != "" && claims.Device != s.device:
		return fail(refreshMismatch, "token is for another device")
	}
	var exp int64 // 0: the new token never expires
	if !claims.Expires.IsZero() {
		exp = claims.Expires.UnixNano()
	}
	result := refreshUnchanged
	if cur := s.expires.Load(); cur != 0 && (exp == 0 || exp > cur) {
		s.expires.Store(exp)
		result = refreshOK
	}
	srv.m.refreshed(result)
	srv.log.Debug("token refreshed", "conn_id", s.id, "user_id", s.user, "result", result)
	s.enqueue(srv, opText, proto.AppendOK(nil, r.ID, "", 0))
	return true
}
