package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// ServerConfig returns a TLS 1.3-only server configuration that serves
// cfg.CertFile/KeyFile and re-reads them every cfg.ReloadInterval when
// they changed, and a stop func that ends the reloading (the config keeps
// serving the last certificate). It fails when the pair cannot be loaded
// now, when cfg.ClientCAFile cannot be read, or when cfg has no
// certificate (check ServerEnabled first). log may be nil.
//
// Wrap a listener with tls.NewListener(ln, conf); call stop after the
// listener is closed.
func ServerConfig(cfg Config, log *slog.Logger) (*tls.Config, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, fmt.Errorf("cannot build TLS server config: %w", err)
	}
	if !cfg.ServerEnabled() {
		return nil, nil, errors.New("cannot build TLS server config: cert_file is empty")
	}
	r, err := newReloader(cfg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot build TLS server config: %w", err)
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current(), nil
		},
	}
	if cfg.ClientCAFile != "" {
		pool, err := loadPool(cfg.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot build TLS server config: client_ca_file: %w", err)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.DenyFile != "" {
		d, err := newDenyList(cfg.DenyFile, cfg.reloadInterval(), log)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot build TLS server config: %w", err)
		}
		conf.VerifyConnection = d.verify
		if cfg.ClientCAFile == "" && log != nil {
			log.Warn("deny_file is set but client_ca_file is not: clients show no certificate, so nothing is checked against the list on this listener", "deny_file", cfg.DenyFile)
		}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(cfg.reloadInterval())
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				r.check()
			}
		}
	})
	var once sync.Once
	stop := func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	return conf, stop, nil
}

// ClientConfig returns a TLS 1.3-only client configuration for the tier
// link dialers: it verifies the server against cfg.CAFile (system roots
// when empty) and cfg.ServerName (the dialed host when empty), and sends
// cfg.CertFile/KeyFile as a client certificate when set, re-read at most
// once per cfg.ReloadInterval when the files changed.
//
// Dial with tls.Dialer{NetDialer: &d, Config: conf}.
func ClientConfig(cfg Config) (*tls.Config, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cannot build TLS client config: %w", err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: cfg.ServerName}
	if cfg.CAFile != "" {
		pool, err := loadPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot build TLS client config: ca_file: %w", err)
		}
		conf.RootCAs = pool
	}
	if cfg.DenyFile != "" {
		d, err := newDenyList(cfg.DenyFile, cfg.reloadInterval(), slog.Default())
		if err != nil {
			return nil, fmt.Errorf("cannot build TLS client config: %w", err)
		}
		conf.VerifyConnection = d.verify
	}
	if cfg.CertFile != "" {
		r, err := newReloader(cfg, nil)
		if err != nil {
			return nil, fmt.Errorf("cannot build TLS client config: %w", err)
		}
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			r.checkLazily()
			return r.current(), nil
		}
	}
	return conf, nil
}

// loadPool reads a PEM bundle of CA certificates.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cannot parse CA bundle %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// reloader holds the current certificate of one cert/key pair and loads a
// changed pair. current is safe from any goroutine; check and checkLazily
// serialise on mu.
type reloader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	lastLazy          atomic.Int64 // Unix ns of the last lazy check

	reloadsOK, reloadsErr *metrics.Counter
	expiry                *metrics.Gauge

	mu       sync.Mutex  // guards the following
	certSeen os.FileInfo // the files as last loaded or last tried
	keySeen  os.FileInfo
}

func newReloader(cfg Config, log *slog.Logger) (*reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	label := fmt.Sprintf("cert=%q", cfg.CertFile)
	r := &reloader{
		certFile: cfg.CertFile, keyFile: cfg.KeyFile, interval: cfg.reloadInterval(),
		log:        log.With("cert_file", cfg.CertFile),
		reloadsOK:  metrics.GetOrCreateCounter(`parley_tls_cert_reloads_total{` + label + `,result="ok"}`),
		reloadsErr: metrics.GetOrCreateCounter(`parley_tls_cert_reloads_total{` + label + `,result="error"}`),
		expiry:     metrics.GetOrCreateGauge(`parley_tls_cert_expiry_seconds{`+label+`}`, nil),
	}
	ci, ki, err := r.stat()
	if err != nil {
		return nil, err
	}
	c, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, err
	}
	r.certSeen, r.keySeen = ci, ki
	r.install(c)
	return r, nil
}

func (r *reloader) current() *tls.Certificate { return r.cert.Load() }

func (r *reloader) install(c *tls.Certificate) {
	r.cert.Store(c)
	r.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
}

func (r *reloader) stat() (cert, key os.FileInfo, err error) {
	if cert, err = os.Stat(r.certFile); err != nil {
		return nil, nil, fmt.Errorf("cannot stat certificate: %w", err)
	}
	if key, err = os.Stat(r.keyFile); err != nil {
		return nil, nil, fmt.Errorf("cannot stat key: %w", err)
	}
	return cert, key, nil
}

// checkLazily runs check when the last lazy check is older than the
// reload interval (client certificates: no goroutine of their own).
func (r *reloader) checkLazily() {
	now := time.Now().UnixNano()
	last := r.lastLazy.Load()
	if now-last < int64(r.interval) || !r.lastLazy.CompareAndSwap(last, now) {
		return
	}
	r.check()
}

// check loads the pair when either file changed since it was last loaded
// or tried. A pair that fails to load is tried again only after the files
// change again, so a half-written pair (new cert, old key) is retried once
// the key lands, and a broken one is logged and counted once.
func (r *reloader) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	ci, ki, err := r.stat()
	if err != nil {
		// A missing file is the middle of a replacement or a mistake;
		// either way the current certificate stays. Say it once.
		if r.certSeen != nil {
			r.reloadsErr.Inc()
			r.log.Warn("cannot reload TLS certificate; serving the previous one", "err", err)
			r.certSeen, r.keySeen = nil, nil
		}
		return
	}
	if same(r.certSeen, ci) && same(r.keySeen, ki) {
		return
	}
	r.certSeen, r.keySeen = ci, ki
	c, err := loadPair(r.certFile, r.keyFile)
	if err != nil {
		r.reloadsErr.Inc()
		r.log.Warn("cannot reload TLS certificate; serving the previous one", "err", err)
		return
	}
	r.install(c)
	r.reloadsOK.Inc()
	r.log.Info("TLS certificate reloaded", "subject", c.Leaf.Subject.String(), "not_after", c.Leaf.NotAfter)
}

// same reports whether b is the file a was: same inode, size and mtime.
func same(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// loadPair loads and checks a certificate and key; Leaf is set.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cannot load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cannot parse certificate %s: %w", certFile, err)
		}
	}
	return &c, nil
}
