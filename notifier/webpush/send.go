package webpush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Urgency is the RFC 8030 section 5.3 Urgency header value.
type Urgency string

// Urgencies, lowest first.
const (
	UrgencyVeryLow Urgency = "very-low"
	UrgencyLow     Urgency = "low"
	UrgencyNormal  Urgency = "normal"
	UrgencyHigh    Urgency = "high"
)

// MaxTopic is the longest Topic header value (RFC 8030 section 5.4).
const MaxTopic = 32

// Message is one push message.
type Message struct {
	Payload []byte        // plaintext, at most MaxPayload bytes; may be empty
	TTL     time.Duration // how long the push service keeps it for an offline agent; whole seconds, 0 = deliver now or drop
	Urgency Urgency       // "" = not sent (the service assumes normal)
	Topic   string        // "" = none; else at most MaxTopic base64url characters; replaces a pending message with the same topic
}

// Outcome classifies a push attempt.
type Outcome int

// Outcomes; see the package documentation for the mapping of statuses.
const (
	Delivered Outcome = iota + 1
	Gone
	Retryable
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Gone:
		return "gone"
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

// Result is what Send reports.
type Result struct {
	Outcome    Outcome
	Status     int           // HTTP status, 0 if no answer
	RetryAfter time.Duration // from Retry-After on 429/503, 0 if absent
	Err        error         // nil only when Delivered
}

// Sender sends Web Push messages signed with one VAPID key. Safe for
// concurrent use.
type Sender struct {
	vapid   *VAPID
	subject string
	client  *http.Client
	now     func() time.Time

	mu     sync.Mutex // guards tokens
	tokens map[string]cachedToken
}

type cachedToken struct {
	header string
	exp    time.Time
}

// Token lifetimes: a new token lives tokenLifetime and is renewed when
// less than tokenRenew of it is left.
const (
	tokenLifetime = 12 * time.Hour
	tokenRenew    = time.Hour
	maxTokens     = 1024 // distinct audiences cached; cleared when full
	maxErrBody    = 512  // bytes of an error answer quoted in Result.Err
)

// NewSender returns a sender. subject is the VAPID sub claim (mailto: or
// https:). client carries the requests (its Timeout bounds each); nil
// means a client with a 10s timeout.
func NewSender(v *VAPID, subject string, client *http.Client) (*Sender, error) {
	if v == nil {
		return nil, errors.New("cannot create push sender: no vapid key")
	}
	if err := CheckSubject(subject); err != nil {
		return nil, fmt.Errorf("cannot create push sender: %w", err)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Sender{vapid: v, subject: subject, client: client, now: time.Now, tokens: map[string]cachedToken{}}, nil
}

// authorization returns the Authorization header for aud, from the cache
// while the cached token has more than tokenRenew left.
func (s *Sender) authorization(aud string) (string, error) {
	now := s.now()
	s.mu.Lock()
	t, ok := s.tokens[aud]
	s.mu.Unlock()
	if ok && t.exp.Sub(now) > tokenRenew {
		return t.header, nil
	}
	exp := now.Add(tokenLifetime)
	tok, err := s.vapid.Token(Claims{Aud: aud, Exp: exp.Unix(), Sub: s.subject})
	if err != nil {
		return "", err
	}
	h := s.vapid.Authorization(tok)
	s.mu.Lock()
	if len(s.tokens) >= maxTokens {
		clear(s.tokens)
	}
	s.tokens[aud] = cachedToken{header: h, exp: time.Unix(exp.Unix(), 0)}
	s.mu.Unlock()
	return h, nil
}

// ValidTopic reports whether t is a valid Topic header value.
func ValidTopic(t string) bool {
	if len(t) == 0 || len(t) > MaxTopic {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Send encrypts m for sub and POSTs it to sub.Endpoint. It never returns a
// Result without an Outcome.
func (s *Sender) Send(ctx context.Context, sub record.PushSubscription, m Message) Result {
	req, err := s.newRequest(ctx, sub, m)
	if err != nil {
		return Result{Outcome: Permanent, Err: fmt.Errorf("cannot push to %s/%s: %w", sub.User, sub.Device, err)}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return Result{Outcome: Retryable, Err: fmt.Errorf("cannot push to %s/%s: %w", sub.User, sub.Device, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	r := Result{Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		r.Outcome = Delivered
		return r
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		r.Outcome = Gone
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		r.Outcome = Retryable
		r.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
	default:
		r.Outcome = Permanent
	}
	r.Err = fmt.Errorf("cannot push to %s/%s: push service answered %d: %q", sub.User, sub.Device, resp.StatusCode, bytes.TrimSpace(body))
	return r
}

func (s *Sender) newRequest(ctx context.Context, sub record.PushSubscription, m Message) (*http.Request, error) {
	if m.Topic != "" && !ValidTopic(m.Topic) {
		return nil, fmt.Errorf("invalid topic %q: want 1..%d base64url characters", m.Topic, MaxTopic)
	}
	if m.TTL < 0 {
		return nil, fmt.Errorf("invalid ttl %s", m.TTL)
	}
	aud, err := Audience(sub.Endpoint)
	if err != nil {
		return nil, err
	}
	uaPublic, err := decodeB64(sub.P256dh)
	if err != nil {
		return nil, fmt.Errorf("cannot decode p256dh: %w", err)
	}
	authSecret, err := decodeB64(sub.Auth)
	if err != nil {
		return nil, fmt.Errorf("cannot decode auth: %w", err)
	}
	body, err := Encrypt(m.Payload, uaPublic, authSecret)
	if err != nil {
		return nil, err
	}
	authz, err := s.authorization(aud)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.Endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", authz)
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("TTL", strconv.FormatInt(int64(m.TTL/time.Second), 10))
	if m.Urgency != "" {
		req.Header.Set("Urgency", string(m.Urgency))
	}
	if m.Topic != "" {
		req.Header.Set("Topic", m.Topic)
	}
	return req, nil
}

// ParseRetryAfter reads a Retry-After value (delay seconds or an HTTP
// date); 0 when absent, invalid or in the past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
