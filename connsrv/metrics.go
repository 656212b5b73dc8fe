package connsrv

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// Drop reasons: why a frame did not reach its destination.
const (
	dropNoSession  = "no_session"     // deliver for an unknown session
	dropClosing    = "closing"        // deliver for a session being closed
	dropSlow       = "slow_consumer"  // the client's write queue was full
	dropLinkDown   = "link_down"      // client message while its link was down
	dropLinkFull   = "link_overload"  // client message while its link queue was full
	dropBadLinkMsg = "bad_link_frame" // malformed frame from logic
)

// Rejection reasons: connections refused before the upgrade, by the
// connection tier itself (parley_connsrv_rejected_total{reason}).
const (
	rejectIPRate         = "ip_rate"         // the client IP opened connections too fast (429)
	rejectProxyMissing   = "proxy_missing"   // proxy_protocol on and no PROXY header
	rejectProxyInvalid   = "proxy_invalid"   // malformed or unsupported PROXY header
	rejectProxyUntrusted = "proxy_untrusted" // peer not in trusted_proxies
	rejectDraining       = "draining"        // accepted while draining
)

// Token refresh results (parley_connsrv_token_refresh_total{result}).
const (
	refreshOK        = "ok"        // the session's expiry moved later
	refreshUnchanged = "unchanged" // valid, but not later than the current expiry
	refreshInvalid   = "invalid"   // the token did not verify (auth_failed)
	refreshMismatch  = "mismatch"  // another user or device (auth_failed)
)

// serverMetrics holds the counters of one Server in its own set, so several
// servers in one process (tests) do not share numbers.
type serverMetrics struct {
	set *metrics.Set

	open        *metrics.Gauge
	handshakes  *metrics.Counter
	rejected    *metrics.Counter
	framesIn    *metrics.Counter
	framesOut   *metrics.Counter
	bytesIn     *metrics.Counter
	bytesOut    *metrics.Counter
	linkUp      *metrics.Gauge
	linkRecon   *metrics.Counter
	linkFramesR *metrics.Counter
	linkFramesW *metrics.Counter

	closed map[uint16]*metrics.Counter
	other  *metrics.Counter
	drops  map[string]*metrics.Counter

	rejects     map[string]*metrics.Counter
	refreshes   map[string]*metrics.Counter
	ipBuckets   *metrics.Gauge
	ipFull      *metrics.Counter
	drainLeft   *metrics.Gauge
	drained     *metrics.Counter
	drainActive *metrics.Gauge
}

func newServerMetrics() *serverMetrics {
	s := metrics.NewSet()
	m := &serverMetrics{
		set:         s,
		open:        s.NewGauge("parley_connsrv_connections_open", nil),
		handshakes:  s.NewCounter("parley_connsrv_connections_opened_total"),
		rejected:    s.NewCounter("parley_connsrv_handshakes_rejected_total"),
		framesIn:    s.NewCounter("parley_connsrv_frames_in_total"),
		framesOut:   s.NewCounter("parley_connsrv_frames_out_total"),
		bytesIn:     s.NewCounter("parley_connsrv_bytes_in_total"),
		bytesOut:    s.NewCounter("parley_connsrv_bytes_out_total"),
		linkUp:      s.NewGauge("parley_connsrv_links_up", nil),
		linkRecon:   s.NewCounter("parley_connsrv_link_reconnects_total"),
		linkFramesR: s.NewCounter("parley_connsrv_link_frames_in_total"),
		linkFramesW: s.NewCounter("parley_connsrv_link_frames_out_total"),
		closed:      map[uint16]*metrics.Counter{},
		drops:       map[string]*metrics.Counter{},
		rejects:     map[string]*metrics.Counter{},
		refreshes:   map[string]*metrics.Counter{},
		ipBuckets:   s.NewGauge("parley_connsrv_ip_buckets", nil),
		ipFull:      s.NewCounter("parley_connsrv_ip_buckets_full_total"),
		drainLeft:   s.NewGauge("parley_connsrv_drain_sessions_left", nil),
		drained:     s.NewCounter("parley_connsrv_drained_total"),
		drainActive: s.NewGauge("parley_connsrv_draining", nil),
	}
	for _, r := range []string{rejectIPRate, rejectProxyMissing, rejectProxyInvalid, rejectProxyUntrusted, rejectDraining} {
		m.rejects[r] = s.NewCounter(fmt.Sprintf(`parley_connsrv_rejected_total{reason=%q}`, r))
	}
	for _, r := range []string{refreshOK, refreshUnchanged, refreshInvalid, refreshMismatch} {
		m.refreshes[r] = s.NewCounter(fmt.Sprintf(`parley_connsrv_token_refresh_total{result=%q}`, r))
	}
	for code, reason := range closeReasons {
		m.closed[code] = s.NewCounter(fmt.Sprintf(`parley_connsrv_connections_closed_total{reason=%q}`, reason))
	}
	m.other = s.NewCounter(`parley_connsrv_connections_closed_total{reason="other"}`)
	for _, r := range []string{dropNoSession, dropClosing, dropSlow, dropLinkDown, dropLinkFull, dropBadLinkMsg} {
		m.drops[r] = s.NewCounter(fmt.Sprintf(`parley_connsrv_drops_total{reason=%q}`, r))
	}
	return m
}

// closeReasons names the close codes for the closed-connections counter.
var closeReasons = map[uint16]string{
	0:    "handshake",
	1000: "normal",
	1001: "going_away",
	1002: "protocol_error",
	1003: "unsupported",
	1005: "no_status",
	1006: "abnormal",
	1007: "invalid_payload",
	1008: "policy",
	1009: "too_big",
	1011: "internal",
	1012: "service_restart",
	4000: "idle",
	4001: "token_expired",
	4002: "slow_consumer",
	4003: "overloaded",
	4004: "replaced",
	4005: "auth_failed",
}

func (m *serverMetrics) closedWith(code uint16) {
	if c, ok := m.closed[code]; ok {
		c.Inc()
		return
	}
	m.other.Inc()
}

func (m *serverMetrics) drop(reason string) { m.drops[reason].Inc() }

func (m *serverMetrics) reject(reason string) { m.rejects[reason].Inc() }

func (m *serverMetrics) refreshed(result string) { m.refreshes[result].Inc() }
