package connsrv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
)

// Config configures the connection tier. Zero values mean "use the default"
// where a field says so; Default returns a complete configuration.
type Config struct {
	// Listen is the WebSocket listen address in gnet form,
	// "tcp://host:port" (a bare "host:port" is accepted too).
	// Default "tcp://127.0.0.1:8080". Port 0 picks a free port; Addr
	// reports it.
	Listen string `yaml:"listen"`
	// Multicore runs one event loop per CPU (or NumEventLoop loops).
	// Default true.
	Multicore bool `yaml:"multicore"`
	// NumEventLoop is the number of event loops; 0 means one per CPU
	// (runtime.NumCPU) with Multicore, else one.
	NumEventLoop int `yaml:"num_event_loop"`
	// ReusePort sets SO_REUSEPORT so several processes can share the port.
	// Default false.
	ReusePort bool `yaml:"reuse_port"`

	// LogicAddrs are the logic tier's link addresses ("host:port"). A
	// session goes to its user's home logic node (the rendezvous hash of
	// the user over the nodes with an up link) and there to one of its
	// LinkPoolSize links by session id. Default ["127.0.0.1:7070"].
	LogicAddrs []string `yaml:"logic_addrs"`
	// LinkDial, when set, makes the links to LogicAddrs instead of TCP:
	// standalone links its two tiers in one process (internal/memlink), and
	// LogicAddrs then name its in-process listener. With LinkTLS, TLS runs
	// over what it returns. Not configurable in YAML.
	LinkDial func(ctx context.Context, addr string) (net.Conn, error) `yaml:"-"`
	// LinkPoolSize is the number of TCP links per logic address. Default 4.
	LinkPoolSize int `yaml:"link_pool_size"`
	// NodeID names this node in the link Hello. Default hostname-pid.
	NodeID string `yaml:"node_id"`
	// LinkQueueLimit is the most bytes queued on one link; above it client
	// messages are refused with an "overloaded" error frame. Default 16 MiB.
	LinkQueueLimit int `yaml:"link_queue_limit"`
	// LinkTLS dials the logic nodes over TLS 1.3 when ca_file or
	// server_name is set (cert_file/key_file add a client certificate for
	// logic nodes that require one). Default off: plain TCP.
	LinkTLS tlsconf.Config `yaml:"link_tls"`
	// LinkSecret is the fleet's link secret (logic.link_secret): this node
	// proves it to every logic node in the link handshake and checks the
	// logic node's proof (a challenge-response; the secret never crosses
	// the wire). LinkSecretFile reads it from a file (set one). Without a
	// secret the link needs a client certificate (link_tls.cert_file) for
	// logic nodes that require mutual TLS. Default empty.
	LinkSecret     string `yaml:"link_secret"`
	LinkSecretFile string `yaml:"link_secret_file"`
	// LinkDialTimeout bounds one dial plus the Hello exchange. Default 5s.
	LinkDialTimeout time.Duration `yaml:"link_dial_timeout"`
	// LinkPingInterval is how often an idle link is pinged; a link silent
	// for three intervals is considered dead. Default 5s.
	LinkPingInterval time.Duration `yaml:"link_ping_interval"`
	// LinkWriteTimeout bounds one write to a link. Default 10s.
	LinkWriteTimeout time.Duration `yaml:"link_write_timeout"`
	// LinkBackoffMax caps the reconnect backoff (which starts at 100ms and
	// doubles, with jitter). Default 5s.
	LinkBackoffMax time.Duration `yaml:"link_backoff_max"`

	// MaxFrameSize is the largest client frame payload in bytes; larger
	// frames are closed with 1009. Default 64 KiB.
	MaxFrameSize int `yaml:"max_frame_size"`
	// MaxMessageSize is the largest reassembled client message in bytes;
	// larger messages are closed with 1009. Default 64 KiB.
	MaxMessageSize int `yaml:"max_message_size"`
	// HeartbeatInterval: a client silent this long is sent a WebSocket
	// ping. Default 30s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// IdleTimeout: a client silent this long is closed with 4000.
	// Default 90s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HandshakeTimeout: a connection that has not completed the upgrade
	// within this time is closed. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// WriteQueueLimit is the most bytes waiting for one client (not yet
	// accepted by the kernel); above it the client is closed with 4002.
	// Default 1 MiB.
	WriteQueueLimit int `yaml:"write_queue_limit"`
	// MaxHandshakeSize is the largest HTTP upgrade request head in bytes;
	// larger heads get 431. Default 8 KiB.
	MaxHandshakeSize int `yaml:"max_handshake_size"`

	// ReadBufferCap and WriteBufferCap are gnet's per-connection buffer
	// caps in bytes; 0 means gnet's default (64 KiB).
	ReadBufferCap  int `yaml:"read_buffer_cap"`
	WriteBufferCap int `yaml:"write_buffer_cap"`
	// SocketRecvBuffer and SocketSendBuffer set SO_RCVBUF/SO_SNDBUF in
	// bytes; 0 keeps the kernel default.
	SocketRecvBuffer int `yaml:"socket_recv_buffer"`
	SocketSendBuffer int `yaml:"socket_send_buffer"`
	// TCPNoDelay disables Nagle's algorithm. Default true.
	TCPNoDelay bool `yaml:"tcp_no_delay"`
	// AllowedOrigins lists the Origin header values allowed to upgrade
	// (compared case-insensitively). Empty allows every origin; requests
	// without an Origin header (non-browser clients) are always allowed.
	AllowedOrigins []string `yaml:"allowed_origins"`

	// ProxyProtocol requires every connection to start with a PROXY
	// protocol header (v1 or v2, as sent by HAProxy's send-proxy or
	// send-proxy-v2) before the HTTP upgrade; the client address in it
	// replaces the socket's peer address everywhere (per-IP limit, the
	// Open frame to logic, logs). A missing or malformed header closes the
	// connection. Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// TrustedProxies lists the CIDRs (or bare addresses) of the proxies
	// allowed to connect when ProxyProtocol is on; a connection from any
	// other peer is closed at once. Empty trusts every peer (use a
	// firewall then). Default empty.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// IPConnRate is the number of new connections per second one client
	// IP may open (token bucket, checked at accept, after the PROXY header
	// when ProxyProtocol is on); over it the upgrade is answered with 429
	// Too Many Requests and Retry-After. 0 turns the limit off. Default 20
	// (Default(); a zero Config has it off).
	IPConnRate float64 `yaml:"ip_conn_rate"`
	// IPConnBurst is the bucket size: connections one IP may open at once.
	// 0 with IPConnRate set means max(1, IPConnRate). Default 40.
	IPConnBurst int `yaml:"ip_conn_burst"`
	// IPRateExempt lists CIDRs (or bare addresses) not subject to
	// IPConnRate. Default empty: loopback is limited too.
	IPRateExempt []string `yaml:"ip_rate_exempt"`
	// DrainWindow: on shutdown the server stops accepting at once, then
	// tells its clients to reconnect elsewhere (goaway, then close 1001)
	// in random batches spread evenly over this window, so they reconnect
	// at about sessions/window per second. 0 closes every client with
	// 1001 at once. Default 10s (Default(); a zero Config has 0).
	DrainWindow time.Duration `yaml:"drain_window"`

	// HTTPListen is the address ("host:port") of the small HTTP server with
	// /healthz, /readyz and /metrics. Empty turns it off (the default). On
	// an address other than loopback it needs MetricsTokenFile (or
	// MetricsToken): /metrics then asks for that bearer token (the probes
	// stay open).
	HTTPListen string `yaml:"http_listen"`
	// MetricsToken (or MetricsTokenFile, a file holding it) is the bearer
	// token /metrics asks for; at least 32 bytes. Empty: none.
	MetricsToken     string `yaml:"metrics_token"`
	MetricsTokenFile string `yaml:"metrics_token_file"`
}

// Default returns the default configuration.
func Default() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "connsrv"
	}
	return Config{
		Listen:            "tcp://127.0.0.1:8080",
		Multicore:         true,
		LogicAddrs:        []string{"127.0.0.1:7070"},
		LinkPoolSize:      4,
		NodeID:            host + "-" + strconv.Itoa(os.Getpid()),
		LinkQueueLimit:    16 << 20,
		LinkDialTimeout:   5 * time.Second,
		LinkTLS:           tlsconf.Default(),
		LinkPingInterval:  5 * time.Second,
		LinkWriteTimeout:  10 * time.Second,
		LinkBackoffMax:    5 * time.Second,
		MaxFrameSize:      64 << 10,
		MaxMessageSize:    64 << 10,
		HeartbeatInterval: 30 * time.Second,
		IdleTimeout:       90 * time.Second,
		HandshakeTimeout:  10 * time.Second,
		WriteQueueLimit:   1 << 20,
		MaxHandshakeSize:  8 << 10,
		TCPNoDelay:        true,
		IPConnRate:        20,
		IPConnBurst:       40,
		DrainWindow:       10 * time.Second,
	}
}

// withDefaults fills zero fields from Default (booleans excepted).
func (c Config) withDefaults() Config {
	d := Default()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if !strings.Contains(c.Listen, "://") {
		c.Listen = "tcp://" + c.Listen // gnet wants a scheme
	}
	if len(c.LogicAddrs) == 0 {
		c.LogicAddrs = d.LogicAddrs
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt(&c.LinkPoolSize, d.LinkPoolSize)
	setInt(&c.LinkQueueLimit, d.LinkQueueLimit)
	setInt(&c.MaxFrameSize, d.MaxFrameSize)
	setInt(&c.MaxMessageSize, d.MaxMessageSize)
	setInt(&c.WriteQueueLimit, d.WriteQueueLimit)
	setInt(&c.MaxHandshakeSize, d.MaxHandshakeSize)
	setDur(&c.LinkDialTimeout, d.LinkDialTimeout)
	setDur(&c.LinkPingInterval, d.LinkPingInterval)
	setDur(&c.LinkWriteTimeout, d.LinkWriteTimeout)
	setDur(&c.LinkBackoffMax, d.LinkBackoffMax)
	setDur(&c.HeartbeatInterval, d.HeartbeatInterval)
	setDur(&c.IdleTimeout, d.IdleTimeout)
	setDur(&c.HandshakeTimeout, d.HandshakeTimeout)
	if c.NodeID == "" {
		c.NodeID = d.NodeID
	}
	if c.IPConnRate > 0 && c.IPConnBurst == 0 {
		c.IPConnBurst = max(1, int(math.Ceil(c.IPConnRate)))
	}
	return c
}

// parsePrefixes parses CIDRs or bare addresses (a single-address prefix).
func parsePrefixes(key string, list []string) ([]netip.Prefix, []error) {
	var out []netip.Prefix
	var errs []error
	for i, v := range list {
		v = strings.TrimSpace(v)
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("connsrv.%s[%d] must be a CIDR or an IP address, got %q", key, i, v))
			continue
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errs
}

// Validate reports every problem of c at once. Zero values that have a
// default are accepted.
func (c Config) Validate() error {
	var errs []error
	if err := c.LinkTLS.ValidateAs("connsrv.link_tls"); err != nil {
		errs = append(errs, err)
	}
	if tok, err := adminauth.Load("connsrv", "metrics_token", c.MetricsToken, c.MetricsTokenFile); err != nil {
		errs = append(errs, err)
	} else if adminauth.Check(c.HTTPListen, tok) != nil {
		errs = append(errs, fmt.Errorf("connsrv.http_listen %s serves /metrics beyond loopback: set connsrv.metrics_token_file (a bearer token for your scraper; e.g. openssl rand -hex 32) or bind it to loopback", c.HTTPListen))
	}
	if secret, err := tierlink.LoadSecret("connsrv", c.LinkSecret, c.LinkSecretFile); err != nil {
		errs = append(errs, err)
	} else if len(c.LogicAddrs) > 0 && len(secret) == 0 && c.LinkTLS.CertFile == "" {
		errs = append(errs, errors.New("connsrv: the tier link must be authenticated: set connsrv.link_secret_file (the logic nodes' logic.link_secret; e.g. openssl rand -hex 32) or a client certificate for mutual TLS (connsrv.link_tls.cert_file)"))
	}
	for _, a := range c.LogicAddrs {
		if c.LinkDial != nil {
			break // in process: no network to cross
		}
		if !adminauth.Loopback(a) && (c.LinkTLS.CertFile == "" || c.LinkTLS.CAFile == "") {
			errs = append(errs, fmt.Errorf("connsrv.logic_addrs: %s is beyond loopback, where tier links need mutual TLS 1.3: set connsrv.link_tls.cert_file and key_file (this node's certificate) and ca_file (the fleet CA); make them with parley certs init and parley certs issue (docs/tls.md)", a))
			break
		}
	}
	neg := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("connsrv.%s must not be negative, got %d", name, v))
		}
	}
	negDur := func(name string, v time.Duration) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("connsrv.%s must not be negative, got %s", name, v))
		}
	}
	neg("num_event_loop", c.NumEventLoop)
	neg("link_pool_size", c.LinkPoolSize)
	neg("link_queue_limit", c.LinkQueueLimit)
	neg("max_frame_size", c.MaxFrameSize)
	neg("max_message_size", c.MaxMessageSize)
	neg("write_queue_limit", c.WriteQueueLimit)
	neg("max_handshake_size", c.MaxHandshakeSize)
	neg("read_buffer_cap", c.ReadBufferCap)
	neg("write_buffer_cap", c.WriteBufferCap)
	neg("socket_recv_buffer", c.SocketRecvBuffer)
	neg("socket_send_buffer", c.SocketSendBuffer)
	negDur("link_dial_timeout", c.LinkDialTimeout)
	negDur("link_ping_interval", c.LinkPingInterval)
	negDur("link_write_timeout", c.LinkWriteTimeout)
	negDur("link_backoff_max", c.LinkBackoffMax)
	negDur("heartbeat_interval", c.HeartbeatInterval)
	negDur("idle_timeout", c.IdleTimeout)
	negDur("handshake_timeout", c.HandshakeTimeout)
	negDur("drain_window", c.DrainWindow)
	neg("ip_conn_burst", c.IPConnBurst)
	if c.IPConnRate < 0 || math.IsNaN(c.IPConnRate) || math.IsInf(c.IPConnRate, 0) {
		errs = append(errs, fmt.Errorf("connsrv.ip_conn_rate must be a non-negative number, got %v", c.IPConnRate))
	}
	if c.DrainWindow > time.Hour {
		errs = append(errs, fmt.Errorf("connsrv.drain_window must be at most 1h, got %s", c.DrainWindow))
	}
	_, e1 := parsePrefixes("trusted_proxies", c.TrustedProxies)
	_, e2 := parsePrefixes("ip_rate_exempt", c.IPRateExempt)
	errs = append(append(errs, e1...), e2...)
	if c.MaxFrameSize > 1<<30 {
		errs = append(errs, fmt.Errorf("connsrv.max_frame_size must be at most 1 GiB, got %d", c.MaxFrameSize))
	}
	if c.MaxMessageSize > 0 && c.MaxMessageSize > tierlinkMaxPayload {
		errs = append(errs, fmt.Errorf("connsrv.max_message_size must be at most %d (the link frame limit), got %d", tierlinkMaxPayload, c.MaxMessageSize))
	}
	if c.LinkPoolSize > 1024 {
		errs = append(errs, fmt.Errorf("connsrv.link_pool_size must be at most 1024, got %d", c.LinkPoolSize))
	}
	if len(c.NodeID) > 255 {
		errs = append(errs, fmt.Errorf("connsrv.node_id must be at most 255 bytes, got %d", len(c.NodeID)))
	}
	for i, a := range c.LogicAddrs {
		if a == "" || (!strings.Contains(a, ":") && c.LinkDial == nil) {
			errs = append(errs, fmt.Errorf("connsrv.logic_addrs[%d] must be host:port, got %q", i, a))
		}
	}
	if c.HeartbeatInterval > 0 && c.IdleTimeout > 0 && c.IdleTimeout <= c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("connsrv.idle_timeout (%s) must be longer than heartbeat_interval (%s)", c.IdleTimeout, c.HeartbeatInterval))
	}
	return errors.Join(errs...)
}
