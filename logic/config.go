package logic

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/parley-chat/parley/internal/adminauth"
	"github.com/parley-chat/parley/internal/tierlink"
	"github.com/parley-chat/parley/internal/tlsconf"
	"github.com/parley-chat/parley/logic/lease"
)

// Config configures a logic node.
type Config struct {
	// NodeID names this node in tier-link hellos and logs. Default (and
	// when empty): hostname-pid.
	NodeID string `yaml:"node_id"`
	// LinkListen is the TCP address connection nodes dial. Default "127.0.0.1:7070".
	LinkListen string `yaml:"link_listen"`
	// HTTPListen is the address of the HTTP API (history, chats, REST send,
	// presence, push subscriptions, the web client) and of /healthz and
	// /readyz. Default "127.0.0.1:8081"; empty disables HTTP.
	HTTPListen string `yaml:"http_listen"`
	// AdminListen is the address of the admin listener: /metrics (and
	// /healthz, /readyz). Default "127.0.0.1:8091"; empty: none. On an
	// address other than loopback it needs AdminTokenFile (or AdminToken):
	// /metrics then asks for "Authorization: Bearer <token>".
	AdminListen string `yaml:"admin_listen"`
	// AdminToken (or AdminTokenFile, a file holding it) is the bearer token
	// /metrics asks for; at least 32 bytes. Empty: none (loopback only).
	AdminToken     string `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
	// Shards is the number of chat shard workers. Default 256.
	Shards int `yaml:"shards"`
	// ShardQueue is the depth of each shard's request queue; a full queue
	// answers "overloaded". Default 1024.
	ShardQueue int `yaml:"shard_queue"`
	// QueueDeadline is the longest a request may wait in its shard's queue:
	// one that waited longer is answered "overloaded" (retryable, with a
	// retry-after) when the shard reaches it, instead of adding to a
	// backlog that cannot meet the delivery SLO (an ack is dropped: the
	// next one carries it). 0 waits without bound. Default 500ms.
	QueueDeadline time.Duration `yaml:"queue_deadline"`
	// BatchMax is the most sends a shard worker appends in one store call. Default 128.
	BatchMax int `yaml:"batch_max"`
	// ReadWorkers bounds concurrent read requests (history, chats, ...). Default 64.
	ReadWorkers int `yaml:"read_workers"`
	// MaxBodyBytes is the largest message body in bytes. Default 16384.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// StoreTimeout bounds every store call. Default 5s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// LinkQueueLimit is the most bytes queued for one link before the link
	// is closed as too slow. Default 64 MiB.
	LinkQueueLimit int `yaml:"link_queue_limit"`
	// LinkWriteTimeout bounds one write to a tier or peer link; a link
	// whose peer reads nothing for this long is closed. Default 10s.
	LinkWriteTimeout time.Duration `yaml:"link_write_timeout"`
	// LinkIdleTimeout closes a link that sent nothing (not even a ping) for
	// this long. Default 60s.
	LinkIdleTimeout time.Duration `yaml:"link_idle_timeout"`
	// HeartbeatInterval is announced to clients in the hello frame. Default 30s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// WebDir, when set, is a directory of static files (the web client)
	// served at / by the HTTP API. Default empty (none).
	WebDir string `yaml:"web_dir"`
	// DevTokens enables POST /v1/dev/token, which signs a token for any user.
	// For standalone development only. Default false.
	DevTokens bool `yaml:"dev_tokens"`
	// DeliveryWindow is the most unacked messages in flight per chat per
	// session. Default 512.
	DeliveryWindow int `yaml:"delivery_window"`
	// RetransmitTimeout: pushes not acked this long are pushed again.
	// Default 5s.
	RetransmitTimeout time.Duration `yaml:"retransmit_timeout"`
	// SyncGrace: a session that sent no sync this long after opening is
	// caught up from its stored cursors anyway. Default 500ms.
	SyncGrace time.Duration `yaml:"sync_grace"`
	// CatchupWorkers bounds concurrent catch-up runs. Default 32.
	CatchupWorkers int `yaml:"catchup_workers"`
	// CatchupPage is the most messages read per store call during a
	// catch-up. Default 200.
	CatchupPage int `yaml:"catchup_page"`
	// SendRate is each user's sustained send rate in messages per second
	// (token bucket); 0 disables the limit. Default 20.
	SendRate float64 `yaml:"send_rate"`
	// SendBurst is the bucket size: sends allowed back to back. Default 20.
	SendBurst int `yaml:"send_burst"`
	// Breaker fails store calls fast while the store is slow or failing.
	Breaker BreakerConfig `yaml:"breaker"`
	// ChatCacheSize is the most chats whose seq and members a node keeps in
	// memory. Default 100000.
	ChatCacheSize int `yaml:"chat_cache_size"`
	// MaxSessionsPerUser caps a user's concurrent connections (devices and
	// tabs). A user's sessions all live on the user's home node, so the cap
	// holds across the fleet; the oldest session over it is closed with
	// 4004. Default 16; 0 means no limit.
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// HTTPTLS serves the HTTP API over TLS 1.3 when cert_file is set
	// (certificates re-read when the files change). Default off.
	HTTPTLS tlsconf.Config `yaml:"http_tls"`
	// LinkTLS serves the tier link over TLS 1.3 when cert_file is set;
	// ca_file/server_name verify peers this node dials (other logic nodes),
	// client_ca_file requires client certificates. Default off.
	LinkTLS tlsconf.Config `yaml:"link_tls"`
	// LinkSecret authenticates the tier and peer links: every connsrv and
	// logic node of a fleet holds the same secret (at least 32 bytes) and
	// proves it in the link handshake (a challenge-response; the secret
	// never crosses the wire). LinkSecretFile reads it from a file instead
	// (set one). A node with a link listener needs a secret or mutual TLS
	// (link_tls.client_ca_file); standalone makes a random secret at every
	// start. Default empty.
	LinkSecret     string `yaml:"link_secret"`
	LinkSecretFile string `yaml:"link_secret_file"`
	// Cluster configures how this node finds and talks to the other logic
	// nodes of a fleet. Empty peers and no directory: a single node.
	Cluster ClusterConfig `yaml:"cluster"`
	// MarksInterval is how often acks (device cursors) and read markers are
	// written to the store, coalesced: at most one write per device and
	// chat per interval (less an eighth), the writes spread over the
	// interval, and a mark is durable within this interval plus an eighth
	// and two store calls (logic/marks). Default 1s.
	MarksInterval time.Duration `yaml:"marks_interval"`
	// Lease times the sequencing leases, used when the store sequences
	// under leases (store.scylla.sequencing: lease; see logic/lease): duration
	// D (default 3s), margin ε (500ms), renew (D/3) and poll (500ms). A dead
	// node's chats can take new messages again D + ε + poll after its last
	// renewal.
	Lease lease.Config `yaml:"lease"`
}

// ClusterConfig configures a logic node's place in a fleet.
type ClusterConfig struct {
	// Enabled makes the node take part in a ring (accept peer links) even
	// with no peers listed and no directory; either of those enables it too.
	// Default false: a single node.
	Enabled bool `yaml:"enabled"`
	// Peers are the link addresses of other logic nodes (host:port), dialed
	// at start; nodes found in the directory or that dial this one are added.
	// Listing this node itself is harmless. Default none.
	Peers []string `yaml:"peers"`
	// Advertise is the link address others dial to reach this node. Default:
	// link_listen when it names a host, else the host name with its port.
	Advertise string `yaml:"advertise"`
	// ForwardTimeout bounds a request forwarded to the node that owns its
	// chat; the client gets a retryable error after it. Default 10s.
	ForwardTimeout time.Duration `yaml:"forward_timeout"`
	// PeerPingInterval is how often an idle peer link is pinged; a peer
	// silent for three intervals is dropped from the ring. Default 1s.
	PeerPingInterval time.Duration `yaml:"peer_ping_interval"`
	// RegisterInterval is how often the node re-registers in the directory
	// and reads the live node list. Default 1s.
	RegisterInterval time.Duration `yaml:"register_interval"`
	// LocationRefresh is how often the locations of this node's sessions are
	// refreshed in the directory (keep it under the directory's location
	// TTL). Default 30s.
	LocationRefresh time.Duration `yaml:"location_refresh"`
	// RehomeSpread spreads the goaway sent to sessions whose home moved to a
	// node that joined. Default 3s.
	RehomeSpread time.Duration `yaml:"rehome_spread"`
}

// Default returns the default configuration.
func Default() Config {
	host, _ := os.Hostname()
	return Config{
		NodeID:             host + "-" + strconv.Itoa(os.Getpid()),
		LinkListen:         "127.0.0.1:7070",
		HTTPListen:         "127.0.0.1:8081",
		AdminListen:        "127.0.0.1:8091",
		Shards:             256,
		ShardQueue:         1024,
		QueueDeadline:      500 * time.Millisecond,
		BatchMax:           128,
		ReadWorkers:        64,
		MaxBodyBytes:       16 << 10,
		StoreTimeout:       5 * time.Second,
		LinkQueueLimit:     64 << 20,
		LinkWriteTimeout:   10 * time.Second,
		LinkIdleTimeout:    60 * time.Second,
		HeartbeatInterval:  30 * time.Second,
		ChatCacheSize:      100000,
		MaxSessionsPerUser: 16,
		DeliveryWindow:     512,
		RetransmitTimeout:  5 * time.Second,
		SyncGrace:          500 * time.Millisecond,
		CatchupWorkers:     32,
		CatchupPage:        200,
		MarksInterval:      time.Second,
		SendRate:           20,
		SendBurst:          20,
		HTTPTLS:            tlsconf.Default(),
		LinkTLS:            tlsconf.Default(),
		Cluster: ClusterConfig{ForwardTimeout: 10 * time.Second, PeerPingInterval: time.Second,
			RegisterInterval: time.Second, LocationRefresh: 30 * time.Second, RehomeSpread: 3 * time.Second},
		Breaker: BreakerConfig{Latency: 500 * time.Millisecond, Failures: 5, FailureRatio: 0.5, Window: 10 * time.Second, Cooldown: 2 * time.Second},
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.NodeID) > 255 {
		bad("logic.node_id must be at most 255 bytes")
	}
	if c.LinkListen == "" {
		bad("logic.link_listen is required")
	}
	if c.Shards < 1 || c.Shards > 65536 {
		bad("logic.shards must be in 1..65536, got %d", c.Shards)
	}
	if c.ShardQueue < 1 {
		bad("logic.shard_queue must be positive, got %d", c.ShardQueue)
	}
	if c.QueueDeadline < 0 {
		bad("logic.queue_deadline must not be negative, got %s", c.QueueDeadline)
	}
	if c.BatchMax < 1 {
		bad("logic.batch_max must be positive, got %d", c.BatchMax)
	}
	if c.ReadWorkers < 1 {
		bad("logic.read_workers must be positive, got %d", c.ReadWorkers)
	}
	if c.MaxBodyBytes < 1 || c.MaxBodyBytes > 1<<20 {
		bad("logic.max_body_bytes must be in 1..1048576, got %d", c.MaxBodyBytes)
	}
	if c.StoreTimeout <= 0 {
		bad("logic.store_timeout must be positive, got %s", c.StoreTimeout)
	}
	if c.LinkWriteTimeout <= 0 {
		bad("logic.link_write_timeout must be positive, got %v", c.LinkWriteTimeout)
	}
	if c.LinkQueueLimit < 1<<16 {
		bad("logic.link_queue_limit must be at least 65536, got %d", c.LinkQueueLimit)
	}
	if c.LinkIdleTimeout <= 0 {
		bad("logic.link_idle_timeout must be positive, got %s", c.LinkIdleTimeout)
	}
	if c.HeartbeatInterval <= 0 {
		bad("logic.heartbeat_interval must be positive, got %s", c.HeartbeatInterval)
	}
	if c.MaxSessionsPerUser < 0 {
		bad("logic.max_sessions_per_user must not be negative, got %d", c.MaxSessionsPerUser)
	}
	if c.ChatCacheSize < 1 {
		bad("logic.chat_cache_size must be positive, got %d", c.ChatCacheSize)
	}
	if c.DeliveryWindow < 1 {
		bad("logic.delivery_window must be positive, got %d", c.DeliveryWindow)
	}
	if c.RetransmitTimeout <= 0 {
		bad("logic.retransmit_timeout must be positive, got %s", c.RetransmitTimeout)
	}
	if c.SyncGrace <= 0 {
		bad("logic.sync_grace must be positive, got %s", c.SyncGrace)
	}
	if c.MarksInterval <= 0 {
		bad("logic.marks_interval must be positive, got %s", c.MarksInterval)
	}
	if c.CatchupWorkers < 1 {
		bad("logic.catchup_workers must be positive, got %d", c.CatchupWorkers)
	}
	errs = append(errs, c.Breaker.Validate("logic.breaker.")...)
	if err := c.Lease.Validate("logic.lease"); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.Cluster.validate()...)
	if err := c.HTTPTLS.ValidateAs("logic.http_tls"); err != nil {
		errs = append(errs, err)
	}
	if err := c.LinkTLS.ValidateAs("logic.link_tls"); err != nil {
		errs = append(errs, err)
	}
	if tok, err := adminToken(c); err != nil {
		errs = append(errs, err)
	} else if adminauth.Check(c.AdminListen, tok) != nil {
		bad("logic.admin_listen %s serves /metrics beyond loopback: set logic.admin_token_file (a bearer token for your scraper; e.g. openssl rand -hex 32) or bind it to loopback", c.AdminListen)
	}
	if secret, err := tierlink.LoadSecret("logic", c.LinkSecret, c.LinkSecretFile); err != nil {
		errs = append(errs, err)
	} else if c.LinkListen != "" && len(secret) == 0 && c.LinkTLS.ClientCAFile == "" {
		bad("logic.link_listen %s: the tier link must be authenticated: set logic.link_secret_file (the same secret on every connsrv and logic node; e.g. openssl rand -hex 32) or mutual TLS (logic.link_tls with client_ca_file)", c.LinkListen)
	}
	if addr, off := c.linkBeyondLoopback(); off {
		t := c.LinkTLS
		if t.CertFile == "" || t.ClientCAFile == "" || t.CAFile == "" {
			bad("logic: link address %s is beyond loopback, where tier and peer links need mutual TLS 1.3: set logic.link_tls.cert_file and key_file (this node's certificate), client_ca_file and ca_file (the fleet CA); make them with parley certs init and parley certs issue -name <node> -host <the address others dial> (docs/tls.md)", addr)
		}
	}
	if c.SendRate < 0 {
		bad("logic.send_rate must not be negative, got %g", c.SendRate)
	}
	if c.SendRate > 0 && c.SendBurst < 1 {
		bad("logic.send_burst must be positive when send_rate is set, got %d", c.SendBurst)
	}
	if c.CatchupPage < 1 || c.CatchupPage > 200 {
		bad("logic.catchup_page must be in 1..200, got %d", c.CatchupPage)
	}
	return errors.Join(errs...)
}

// linkBeyondLoopback returns the first link address of the node (where it
// listens, advertises itself or dials peers) that is not on loopback.
func (c Config) linkBeyondLoopback() (string, bool) {
	addrs := append([]string{c.LinkListen, c.Cluster.Advertise}, c.Cluster.Peers...)
	for _, a := range addrs {
		if a != "" && !adminauth.Loopback(a) {
			return a, true
		}
	}
	return "", false
}

func (c ClusterConfig) validate() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			bad("logic.cluster.peers: %q is not host:port", p)
		}
	}
	if c.Advertise != "" {
		if h, _, err := net.SplitHostPort(c.Advertise); err != nil || h == "" {
			bad("logic.cluster.advertise: %q is not host:port", c.Advertise)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"forward_timeout", c.ForwardTimeout}, {"peer_ping_interval", c.PeerPingInterval},
		{"register_interval", c.RegisterInterval}, {"location_refresh", c.LocationRefresh}, {"rehome_spread", c.RehomeSpread}} {
		if d.v <= 0 {
			bad("logic.cluster.%s must be positive, got %s", d.key, d.v)
		}
	}
	return errs
}

// adminToken returns the admin bearer token given inline or in a file.
func adminToken(c Config) (string, error) {
	return adminauth.Load("logic", "admin_token", c.AdminToken, c.AdminTokenFile)
}
