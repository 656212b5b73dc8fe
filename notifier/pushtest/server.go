package pushtest

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/notifier/webpush"
)

// Push is one push the server accepted.
type Push struct {
	Sub       record.PushSubscription // as returned by Subscribe
	Plaintext []byte                  // the decrypted payload
	Header    http.Header             // the request headers
	Claims    webpush.Claims          // the verified VAPID claims
	At        time.Time
}

// Rejection is a push the server refused as malformed.
type Rejection struct {
	Endpoint string
	Status   int
	Reason   string
}

// Server is a Web Push service on loopback. Close it when done.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex               // guards the following
	subs     map[string]*subscription // by endpoint path id
	vapidKey string                   // expected k=, "" = any
	received []Push
	rejected []Rejection
	changed  chan struct{} // closed and replaced whenever received grows
}

type subscription struct {
	sub   record.PushSubscription
	priv  *ecdh.PrivateKey
	auth  []byte
	fails []int // statuses to answer to the next valid pushes, in order
	fail  int   // status answered to every valid push once fails is empty; 0 = accept
}

// NewServer starts a plain-HTTP push service on 127.0.0.1 (subscription
// endpoints are then http://127.0.0.1:<port>/push/<id>).
func NewServer() *Server {
	s := newServer()
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// NewTLSServer is NewServer over HTTPS with a self-signed certificate;
// send with Client().
func NewTLSServer() *Server {
	s := newServer()
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

func newServer() *Server {
	return &Server{subs: map[string]*subscription{}, changed: make(chan struct{})}
}

// URL returns the server's origin (scheme://host:port): the aud a VAPID
// token for it must carry.
func (s *Server) URL() string { return s.srv.URL }

// Client returns an HTTP client that trusts the server (needed for
// NewTLSServer).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetVAPIDKey makes the server refuse (403) pushes whose k= is not key;
// "" accepts any valid key.
func (s *Server) SetVAPIDKey(key string) {
	s.mu.Lock()
	s.vapidKey = key
	s.mu.Unlock()
}

// Subscribe makes a subscription for (user, device) as a browser would: a
// fresh P-256 key pair and 16-byte auth secret, and an endpoint on this
// server.
func (s *Server) Subscribe(user, device string) record.PushSubscription {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("pushtest: cannot generate key: %v", err))
	}
	auth := make([]byte, webpush.AuthSize)
	var id [12]byte
	_, _ = rand.Read(auth)
	_, _ = rand.Read(id[:])
	b64 := base64.RawURLEncoding
	sub := record.PushSubscription{
		User:      user,
		Device:    device,
		Endpoint:  s.srv.URL + "/push/" + hex.EncodeToString(id[:]),
		P256dh:    b64.EncodeToString(priv.PublicKey().Bytes()),
		Auth:      b64.EncodeToString(auth),
		CreatedAt: time.Now().UnixMilli(),
	}
	s.mu.Lock()
	s.subs[hex.EncodeToString(id[:])] = &subscription{sub: sub, priv: priv, auth: auth}
	s.mu.Unlock()
	return sub
}

// Fail makes the endpoint answer status to its next n valid pushes (n < 0:
// to all of them from now on) instead of accepting them. Calls queue up
// in order. A 429 or 503 answer carries Retry-After: 1.
func (s *Server) Fail(endpoint string, status, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := s.subs[idOf(endpoint)]
	if sub == nil {
		panic("pushtest: Fail of an unknown endpoint " + endpoint)
	}
	if n < 0 {
		sub.fail = status
		return
	}
	for range n {
		sub.fails = append(sub.fails, status)
	}
}

// Unsubscribe forgets the endpoint: later pushes to it get 404, as from a
// push service whose user agent unsubscribed.
func (s *Server) Unsubscribe(endpoint string) {
	s.mu.Lock()
	delete(s.subs, idOf(endpoint))
	s.mu.Unlock()
}

func idOf(endpoint string) string {
	_, id, _ := strings.Cut(endpoint, "/push/")
	return id
}

// Received returns the pushes accepted so far, oldest first.
func (s *Server) Received() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.received...)
}

// Rejected returns the pushes refused as malformed so far.
func (s *Server) Rejected() []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Rejection(nil), s.rejected...)
}

// WaitFor waits until at least n pushes have been accepted and returns
// them all, or returns ctx's error with those received so far.
func (s *Server) WaitFor(ctx context.Context, n int) ([]Push, error) {
	for {
		s.mu.Lock()
		got, changed := append([]Push(nil), s.received...), s.changed
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return got, fmt.Errorf("cannot wait for %d pushes (got %d): %w", n, len(got), ctx.Err())
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutPrefix(r.URL.Path, "/push/")
	if !ok || r.Method != http.MethodPost {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8192))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	sub := s.subs[id]
	wantKey := s.vapidKey
	s.mu.Unlock()
	endpoint := s.srv.URL + r.URL.Path
	if sub == nil {
		http.Error(w, "no such subscription", http.StatusNotFound)
		return
	}
	reject := func(status int, format string, args ...any) {
		reason := fmt.Sprintf(format, args...)
		s.mu.Lock()
		s.rejected = append(s.rejected, Rejection{Endpoint: endpoint, Status: status, Reason: reason})
		s.mu.Unlock()
		http.Error(w, reason, status)
	}
	token, key, err := webpush.ParseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		reject(http.StatusUnauthorized, "authorization: %v", err)
		return
	}
	claims, err := webpush.VerifyToken(token, key, s.srv.URL, time.Now())
	if err != nil {
		reject(http.StatusUnauthorized, "vapid: %v", err)
		return
	}
	if wantKey != "" && key != wantKey {
		reject(http.StatusForbidden, "vapid: key %s is not the subscription's application server key", key)
		return
	}
	if ttl, err := strconv.ParseInt(r.Header.Get("TTL"), 10, 64); err != nil || ttl < 0 {
		reject(http.StatusBadRequest, "TTL header %q: want a non-negative integer", r.Header.Get("TTL"))
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		reject(http.StatusBadRequest, "Content-Encoding %q: want aes128gcm", ce)
		return
	}
	plain, err := webpush.Decrypt(body, sub.priv, sub.auth)
	if err != nil {
		reject(http.StatusBadRequest, "payload: %v", err)
		return
	}
	s.mu.Lock()
	status := 0
	if len(sub.fails) > 0 {
		status, sub.fails = sub.fails[0], sub.fails[1:]
	} else if sub.fail != 0 {
		status = sub.fail
	}
	if status == 0 {
		s.received = append(s.received, Push{Sub: sub.sub, Plaintext: plain, Header: r.Header.Clone(), Claims: claims, At: time.Now()})
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	if status != 0 {
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "injected failure", status)
		return
	}
	w.Header().Set("Location", s.srv.URL+"/message/"+strconv.Itoa(len(plain)))
	w.WriteHeader(http.StatusCreated)
}
