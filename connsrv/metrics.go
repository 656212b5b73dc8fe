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
