package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/record"
)

// Header names.
const (
	SignatureHeader = "X-Parley-Signature"
	DeliveryHeader  = "X-Parley-Delivery"
)

// MinSecret is the shortest secret New accepts, in bytes.
const MinSecret = 16

// Event is the JSON body of a webhook POST.
type Event struct {
	Recipient string   `json:"recipient"`
	ChatID    string   `json:"chat"`
	Seq       uint64   `json:"seq"`
	Sender    string   `json:"sender"`
	Preview   string   `json:"preview,omitempty"`
	TS        int64    `json:"ts"`      // Unix ms
	Devices   []string `json:"devices"` // the recipient's devices with Web Push subscriptions; may be empty
}

// FromPushEvent builds the body of ev.
func FromPushEvent(ev record.PushEvent, devices []string) Event {
	if devices == nil {
		devices = []string{}
	}
	return Event{Recipient: ev.Recipient, ChatID: ev.ChatID, Seq: ev.Seq, Sender: ev.Sender, Preview: ev.Preview, TS: ev.TS, Devices: devices}
}

// Outcome classifies a delivery attempt.
type Outcome int

// Outcomes.
const (
	Delivered Outcome = iota + 1
	Retryable
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
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
	RetryAfter time.Duration // from Retry-After (seconds) on 429/503, else 0
	Err        error         // nil only when Delivered
}

// Client posts events to one URL. Safe for concurrent use.
type Client struct {
	url    string
	secret []byte
	client *http.Client
	now    func() time.Time
}

// New returns a client for url (http or https) signing with secret (at
// least MinSecret bytes). client nil means one with a 10s timeout.
func New(rawURL, secret string, client *http.Client) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("cannot create webhook client: url %q is not an absolute http(s) URL", rawURL)
	}
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("cannot create webhook client: secret of %d bytes, want at least %d", len(secret), MinSecret)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{url: rawURL, secret: []byte(secret), client: client, now: time.Now}, nil
}

// Send posts ev once with delivery key key.
func (c *Client) Send(ctx context.Context, key string, ev Event) Result {
	body, err := json.Marshal(ev)
	if err != nil {
		return Result{Outcome: Permanent, Err: fmt.Errorf("cannot encode webhook event %s: %w", key, err)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Result{Outcome: Permanent, Err: fmt.Errorf("cannot post webhook event %s: %w", key, err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(DeliveryHeader, key)
	req.Header.Set(SignatureHeader, Sign(c.secret, c.now(), body))
	resp, err := c.client.Do(req)
	if err != nil {
		return Result{Outcome: Retryable, Err: fmt.Errorf("cannot post webhook event %s: %w", key, err)}
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	r := Result{Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		r.Outcome = Delivered
		return r
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		r.Outcome = Retryable
		if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
			r.RetryAfter = time.Duration(min(n, 86400)) * time.Second
		}
	default:
		r.Outcome = Permanent
	}
	r.Err = fmt.Errorf("cannot post webhook event %s: receiver answered %d: %q", key, resp.StatusCode, bytes.TrimSpace(msg))
	return r
}

// Sign returns the X-Parley-Signature value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrBadHeader    = errors.New("webhook: malformed signature header")
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrStale        = errors.New("webhook: signature timestamp outside tolerance")
)

// Verify checks a signature header for body as received at now: some v1=
// value must be the HMAC of "<t>.<body>" under secret, and t within
// tolerance of now (either way). It never panics.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: part %q", ErrBadHeader, part)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return fmt.Errorf("%w: v1 is not %d hex bytes", ErrBadHeader, sha256.Size)
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: want t=<unix>,v1=<hex>", ErrBadHeader)
	}
	want := mac([]byte(secret), ts, body)
	ok := false
	for _, s := range sigs {
		ok = hmac.Equal(s, want) || ok
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed at %d, now %d, tolerance %s", ErrStale, sec, now.Unix(), tolerance)
	}
	return nil
}
