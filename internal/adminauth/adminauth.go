package adminauth

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// MinTokenSize is the shortest admin token accepted.
const MinTokenSize = 32

// Load returns the admin token given inline or, when inline is empty,
// read from file (surrounding white space trimmed); "" when both are
// empty. prefix names the settings in errors ("connsrv" gives
// connsrv.metrics_token and connsrv.metrics_token_file with name
// "metrics_token").
func Load(prefix, name, inline, file string) (string, error) {
	if inline != "" && file != "" {
		return "", fmt.Errorf("%s.%s and %s.%s_file: set one", prefix, name, prefix, name)
	}
	tok := inline
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s.%s_file: %w", prefix, name, err)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok != "" && len(tok) < MinTokenSize {
		return "", fmt.Errorf("%s.%s: %d bytes, want at least %d (e.g. openssl rand -hex 32)", prefix, name, len(tok), MinTokenSize)
	}
	return tok, nil
}

// Loopback reports whether a listen address ("host:port") is on loopback:
// a loopback IP or "localhost". An empty host (every interface) is not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrOpen is returned by Check for a listener beyond loopback without a
// token.
var ErrOpen = errors.New("serves /metrics beyond loopback without a token")

// Check refuses a listener that is not on loopback when there is no token.
func Check(listen, token string) error {
	if listen != "" && token == "" && !Loopback(listen) {
		return ErrOpen
	}
	return nil
}

// Allowed reports whether an Authorization header value carries token with
// the Bearer scheme (any case, RFC 7235), compared in constant time. An
// empty token allows every request.
func Allowed(authorization, token string) bool {
	if token == "" {
		return true
	}
	got, ok := Bearer(authorization)
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// Bearer returns the credentials of an Authorization header value with the
// Bearer scheme, matched in any case (RFC 7235), and false for any other
// scheme or none.
func Bearer(authorization string) (string, bool) {
	scheme, rest, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}
