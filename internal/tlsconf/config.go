package tlsconf

import (
	"errors"
	"fmt"
	"time"
)

// Config configures one TLS endpoint, server or client side. The zero
// value is TLS off. Embed it under a section of the node config (for
// example logic.http_tls, logic.link_tls, connsrv.link_tls) and validate
// it with ValidateAs(section).
type Config struct {
	// CertFile and KeyFile are PEM files holding this side's certificate
	// chain (leaf first) and its private key. A server needs both: an empty
	// CertFile turns server TLS off. A client sends them as its client
	// certificate when set (mutual TLS). Default empty.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile (server side) is a PEM bundle of the CAs that sign
	// client certificates. When set the server requires and verifies a
	// client certificate on every connection (mutual TLS, for the tier
	// link); read once at start. Default empty (no client certificates).
	ClientCAFile string `yaml:"client_ca_file"`
	// CAFile (client side) is a PEM bundle of the CAs that sign the
	// server's certificate. Default empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName (client side) is the name the server's certificate must
	// carry. Default empty: the host of the dialed address (crypto/tls
	// fills it in when dialing with tls.Dialer).
	ServerName string `yaml:"server_name"`
	// DenyFile lists revoked certificate serial numbers, one per line in
	// hex ('#' comments): a peer presenting one (a client certificate on
	// the server side, which needs ClientCAFile to ask for one; the
	// server's on the client side, which speaks TLS only when
	// ClientEnabled) is refused, as is one signed by a listed CA. The file
	// must exist at start; a change is picked up within ReloadInterval
	// (replace it atomically: a file that changes while it is read is
	// refused, logged and counted, and the previous list stays). Default
	// empty (no deny list).
	DenyFile string `yaml:"deny_file"`
	// ReloadInterval is how often the certificate files are checked for a
	// change (mtime, size or inode); a changed pair is loaded and served to
	// new handshakes. Default 10s; zero means the default; at least 10ms.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Default returns TLS off with the default reload interval.
func Default() Config { return Config{ReloadInterval: 10 * time.Second} }

// ServerEnabled reports whether a server should speak TLS: a certificate
// file is set.
func (c Config) ServerEnabled() bool { return c.CertFile != "" }

// ClientEnabled reports whether a client should speak TLS: any of
// ca_file, server_name or cert_file is set. A client that trusts the
// system roots sets server_name.
func (c Config) ClientEnabled() bool { return c.CAFile != "" || c.ServerName != "" || c.CertFile != "" }

func (c Config) reloadInterval() time.Duration {
	if c.ReloadInterval == 0 {
		return Default().ReloadInterval
	}
	return c.ReloadInterval
}

// RecheckInterval is how often a holder of established connections
// should Recheck them: half the reload interval (the deny file is re-read
// at most once per interval), so a revocation cuts a live link within
// about one interval, as soon as it refuses a new one.
func (c Config) RecheckInterval() time.Duration { return c.reloadInterval() / 2 }

// minReload is the shortest reload interval accepted (tests use tens of
// milliseconds; production leaves the default).
const minReload = 10 * time.Millisecond

// Validate reports every problem at once, naming keys under "tls.".
func (c Config) Validate() error { return c.ValidateAs("tls") }

// ValidateAs reports every problem at once, naming keys under section
// (for example "logic.link_tls"). It checks the settings only; the files
// are read by ServerConfig and ClientConfig.
func (c Config) ValidateAs(section string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(section+"."+format, args...))
	}
	if c.CertFile != "" && c.KeyFile == "" {
		bad("key_file: required with cert_file %q", c.CertFile)
	}
	if c.KeyFile != "" && c.CertFile == "" {
		bad("cert_file: required with key_file %q", c.KeyFile)
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		bad("client_ca_file: needs cert_file and key_file (a server without a certificate cannot ask for client certificates)")
	}
	if c.ReloadInterval < 0 || (c.ReloadInterval > 0 && c.ReloadInterval < minReload) {
		bad("reload_interval: must be 0 (default 10s) or at least %v, got %v", minReload, c.ReloadInterval)
	}
	return errors.Join(errs...)
}
