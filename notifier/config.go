package notifier

import (
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/notifier/webhook"
	"github.com/parley-chat/parley/notifier/webpush"
)

// Config configures the notifier (YAML block `notifier`). Zero durations
// and counts mean their defaults, so a partial block keeps working.
type Config struct {
	// VAPIDPublicKey is the application server key browsers subscribe
	// with: base64url of the 65-byte uncompressed P-256 point. Optional
	// (derived from the private key); if set it must match it.
	VAPIDPublicKey string `yaml:"vapid_public_key"`
	// VAPIDPrivateKey is base64url of the raw 32-byte P-256 scalar. Empty:
	// Web Push is off. Make a pair with GenerateVAPID (parley notifier
	// -gen-vapid). Never change it casually: every browser subscription is
	// bound to the public key and must be renewed after a change.
	VAPIDPrivateKey string `yaml:"vapid_private_key"`
	// VAPIDSubject is the operator contact sent to push services: a
	// mailto: or https: URI. Required with Web Push.
	VAPIDSubject string `yaml:"vapid_subject"`
	// WebhookURL receives one signed POST per event (see
	// notifier/webhook). Empty: no webhook.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret is the HMAC key of the webhook signature, at least 16
	// bytes. Required with WebhookURL.
	WebhookSecret string `yaml:"webhook_secret"`
	// TTL is how long a push service keeps a message for an offline
	// device (the TTL header), whole seconds. Default 24h.
	TTL time.Duration `yaml:"ttl"`
	// Attempts is the most tries per device and event, the first included.
	// Default 5.
	Attempts int `yaml:"attempts"`
	// Backoff is the wait before the second try; it doubles per try up to
	// BackoffMax, with jitter (each wait is uniform in [d/2, d]). A
	// Retry-After answer lengthens the wait (up to MaxRetryAfter). Default
	// 200ms.
	Backoff time.Duration `yaml:"backoff"`
	// BackoffMax caps the doubling. Default 10s.
	BackoffMax time.Duration `yaml:"backoff_max"`
	// HTTPTimeout bounds one HTTP request to a push service or the webhook.
	// Default 10s.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// LedgerTTL is how long the push ledger remembers that a message was
	// pushed to a device: a redelivered event older than this is pushed
	// again. Default 7 days (168h).
	LedgerTTL time.Duration `yaml:"ledger_ttl"`
	// Workers is the number of events Run handles at once. Default 4.
	Workers int `yaml:"workers"`
	// QueueSize bounds the events Notify queues for Run; more are dropped
	// and counted. Default 1024.
	QueueSize int `yaml:"queue_size"`
	// Preview puts the text preview in the push payload and webhook body.
	// Off, pushes say only who wrote in which chat (the push service
	// cannot read either way: Web Push payloads are end-to-end
	// encrypted, but the device's lock screen may). Default true.
	Preview bool `yaml:"preview"`
	// HTTPListen is where `parley notifier` serves /healthz, /readyz and
	// /metrics. Empty: none. Not used by the in-process notifier. On an
	// address other than loopback it needs MetricsTokenFile (or
	// MetricsToken): /metrics then asks for that bearer token.
	HTTPListen string `yaml:"http_listen"`
	// MetricsToken (or MetricsTokenFile, a file holding it) is the bearer
	// token /metrics asks for; at least 32 bytes. Empty: none.
	MetricsToken     string `yaml:"metrics_token"`
	MetricsTokenFile string `yaml:"metrics_token_file"`
}

// LoadMetricsToken returns the metrics token given inline or in a file.
func (c Config) LoadMetricsToken() (string, error) {
	return adminauth.Load("notifier", "metrics_token", c.MetricsToken, c.MetricsTokenFile)
}

// MaxRetryAfter caps how long a Retry-After answer can hold a retry.
const MaxRetryAfter = time.Minute

// Default returns the defaults: no Web Push keys and no webhook (both
// off), TTL 24h, 5 attempts, backoff 200ms..10s, HTTP timeout 10s, ledger
// 7 days, 4 workers, queue 1024, preview on.
func Default() Config {
	return Config{
		TTL:         24 * time.Hour,
		Attempts:    5,
		Backoff:     200 * time.Millisecond,
		BackoffMax:  10 * time.Second,
		HTTPTimeout: 10 * time.Second,
		LedgerTTL:   7 * 24 * time.Hour,
		Workers:     4,
		QueueSize:   1024,
		Preview:     true,
	}
}

// withDefaults fills zero fields that mean "default".
func (c Config) withDefaults() Config {
	d := Default()
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.Attempts == 0 {
		c.Attempts = d.Attempts
	}
	if c.Backoff == 0 {
		c.Backoff = d.Backoff
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = d.HTTPTimeout
	}
	if c.LedgerTTL == 0 {
		c.LedgerTTL = d.LedgerTTL
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.QueueSize == 0 {
		c.QueueSize = d.QueueSize
	}
	return c
}

// WebPush reports whether Web Push is configured.
func (c Config) WebPush() bool { return c.VAPIDPrivateKey != "" }

// Webhook reports whether the webhook is configured.
func (c Config) Webhook() bool { return c.WebhookURL != "" }

// Validate reports every problem at once; errors name the key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("notifier.%s: "+format, append([]any{key}, args...)...))
	}
	if tok, err := c.LoadMetricsToken(); err != nil {
		errs = append(errs, err)
	} else if adminauth.Check(c.HTTPListen, tok) != nil {
		bad("http_listen", "%s serves /metrics beyond loopback: set notifier.metrics_token_file (a bearer token for your scraper) or bind it to loopback", c.HTTPListen)
	}
	switch {
	case c.VAPIDPrivateKey != "":
		if _, err := webpush.ParseVAPID(c.VAPIDPublicKey, c.VAPIDPrivateKey); err != nil {
			bad("vapid_private_key", "%v", err)
		}
		if err := webpush.CheckSubject(c.VAPIDSubject); err != nil {
			bad("vapid_subject", "%v", err)
		}
	case c.VAPIDPublicKey != "":
		bad("vapid_private_key", "required with vapid_public_key")
	}
	switch {
	case c.WebhookURL != "":
		if _, err := webhook.New(c.WebhookURL, c.WebhookSecret, nil); err != nil {
			bad("webhook_url", "%v", err)
		}
	case c.WebhookSecret != "":
		bad("webhook_url", "required with webhook_secret")
	}
	if c.TTL < 0 || (c.TTL > 0 && c.TTL < time.Second) || c.TTL > 28*24*time.Hour {
		bad("ttl", "must be between 1s and 672h (or 0 for the default), got %s", c.TTL)
	}
	if c.Attempts < 0 || c.Attempts > 100 {
		bad("attempts", "must be between 1 and 100 (or 0 for the default), got %d", c.Attempts)
	}
	if c.Backoff < 0 {
		bad("backoff", "must not be negative, got %s", c.Backoff)
	}
	if c.BackoffMax < 0 || (c.BackoffMax > 0 && c.BackoffMax < c.Backoff) {
		bad("backoff_max", "must be at least backoff (%s), got %s", c.Backoff, c.BackoffMax)
	}
	if c.HTTPTimeout < 0 {
		bad("http_timeout", "must not be negative, got %s", c.HTTPTimeout)
	}
	if c.LedgerTTL < 0 || (c.LedgerTTL > 0 && c.LedgerTTL < time.Minute) {
		bad("ledger_ttl", "must be at least 1m (or 0 for the default), got %s", c.LedgerTTL)
	}
	if c.Workers < 0 || c.Workers > 1024 {
		bad("workers", "must be between 1 and 1024 (or 0 for the default), got %d", c.Workers)
	}
	if c.QueueSize < 0 {
		bad("queue_size", "must not be negative, got %d", c.QueueSize)
	}
	return errors.Join(errs...)
}

// GenerateVAPID makes a new VAPID key pair for the config (base64url
// public point and private scalar), for `parley notifier -gen-vapid`.
func GenerateVAPID() (public, private string, err error) {
	v, err := webpush.GenerateVAPID()
	if err != nil {
		return "", "", err
	}
	return v.PublicKey(), v.PrivateKey(), nil
}
