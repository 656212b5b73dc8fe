package logic

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// Operating metrics of the logic tier: the SLI histograms, RED for
// tier-link requests and HTTP endpoints, and queue depths. Every metric
// lives in the process-wide default set (served at /metrics on
// logic.http_listen); deploy/monitoring/README.md says what each means and
// which dashboards and alerts use it.
//
// The SLI and RED latency histograms are Prometheus histograms (cumulative
// "le" buckets), so histogram_quantile works in plain Prometheus as well as
// in VictoriaMetrics. The older VictoriaMetrics histograms (vmrange
// buckets: store calls, forwards) are unchanged.
//
// Several Service values may run in one process (tests): the queue-depth
// gauges are registered once and sum over every running Service and every
// open link.

// latencyBuckets are the upper bounds (seconds) of request and SLI
// histograms. 0.1 is a bound: the time-to-sent SLO (p99 < 100 ms) reads
// exactly from the buckets.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10}

// deliveredBuckets reach a day: a device that was offline acks on its
// return.
var deliveredBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400}

// SLI histograms.
var (
	// timeToSent: a send's receipt by this node to its "sent" answer, on
	// the node the client's session is on (a forwarded send is observed
	// there, when the owner's answer comes back, not on the owner).
	timeToSent = metrics.NewPrometheusHistogramExt(`parley_logic_time_to_sent_seconds`, latencyBuckets)
	// timeToPush: a message's store timestamp to its live push to a
	// recipient session (not counting the sending device's own copy).
	timeToPush = metrics.NewPrometheusHistogramExt(`parley_logic_time_to_push_seconds`, latencyBuckets)
	// timeToDelivered: a message's store timestamp to the first ack that
	// covers it from a recipient device, by path (see observeDelivered).
	timeToDelivered = map[string]*metrics.PrometheusHistogram{}
)

// Delivery paths of parley_logic_time_to_delivered_seconds.
const (
	pathLive    = "live"    // the acking session was open when the message was stored
	pathCatchup = "catchup" // stored before the acking session opened (the device was away)
	pathUnknown = "unknown" // the ack came from another logic node: its session is not known here
)

// requestTypes are the client frame types counted by the request RED
// metrics; any other type counts as "other" (bounded label values).
var requestTypes = []string{
	proto.TypeSend, proto.TypeAck, proto.TypeRead, proto.TypeHistory, proto.TypeChats,
	proto.TypeGroupCreate, proto.TypeGroupAdd, proto.TypeGroupRemove, proto.TypeGroupLeave, proto.TypeGroupRole,
	proto.TypeMembers, proto.TypePresence, proto.TypePing, proto.TypeSync, proto.TypeSettings, "other",
}

// requestMetrics is the RED set of one request type.
type requestMetrics struct {
	typ     string
	total   *metrics.Counter
	seconds *metrics.PrometheusHistogram
}

var requestsByType = map[string]*requestMetrics{}

// httpRoutes are the route labels serveHTTP sets; any other counts as "other".
var httpRoutes = []string{
	"healthz", "readyz", "metrics", "dev_token", "web", "chats", "presence",
	"push_subscriptions", "push_vapid", "settings", "history", "send", "members", "other",
}

// httpRouteMetrics is the RED set of one HTTP route.
type httpRouteMetrics struct {
	byClass [6]*metrics.Counter // index status/100; 0 for anything outside 100..599
	seconds *metrics.PrometheusHistogram
}

var httpByRoute = map[string]*httpRouteMetrics{}

func init() {
	for _, p := range []string{pathLive, pathCatchup, pathUnknown} {
		timeToDelivered[p] = metrics.NewPrometheusHistogramExt(`parley_logic_time_to_delivered_seconds{path="`+p+`"}`, deliveredBuckets)
	}
	for _, t := range requestTypes {
		requestsByType[t] = &requestMetrics{
			typ:     t,
			total:   metrics.NewCounter(`parley_logic_requests_total{type="` + t + `"}`),
			seconds: metrics.NewPrometheusHistogramExt(`parley_logic_request_duration_seconds{type="`+t+`"}`, latencyBuckets),
		}
	}
	for _, r := range httpRoutes {
		m := &httpRouteMetrics{seconds: metrics.NewPrometheusHistogramExt(`parley_logic_http_request_duration_seconds{route="`+r+`"}`, latencyBuckets)}
		for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
			m.byClass[i] = metrics.NewCounter(`parley_logic_http_requests_total{route="` + r + `",status="` + class + `"}`)
		}
		httpByRoute[r] = m
	}
}

func requestMetricsFor(typ string) *requestMetrics {
	if m, ok := requestsByType[typ]; ok {
		return m
	}
	return requestsByType["other"]
}

// requestErrors counts failed requests by type and error code. Codes are
// the server's own (proto.Code*), so the label values are bounded.
func requestErrors(typ, code string) *metrics.Counter {
	return metrics.GetOrCreateCounter(`parley_logic_request_errors_total{type="` + typ + `",code="` + code + `"}`)
}

// requestDone records that r was answered (or, for ack and read, which
// have no answer on success, handled): one request of its type, its
// duration since receipt, and on error its code. Call it once per request,
// where the answer is written. A forwarded request is counted on the node
// that runs it. Safe for concurrent use.
func (s *Service) requestDone(r *request, err error) {
	m := requestMetricsFor(r.in.Type)
	m.total.Inc()
	if !r.recv.IsZero() {
		m.seconds.Update(s.now().Sub(r.recv).Seconds())
	}
	if err != nil {
		code := proto.CodeUnavailable // what replyErr makes of a store error
		var pe *proto.Error
		if errors.As(err, &pe) {
			code = pe.Code
		}
		requestErrors(m.typ, code).Inc()
	}
}

// rejectRequest answers r with err before it reaches a worker (dispatch's
// refusals: rate limit, full queue, invalid target) and counts it like any
// other answered request.
func (s *Service) rejectRequest(r *request, err error) {
	s.requestDone(r, err)
	s.replyErr(r.out, r.in.ID, err)
}

// observeSent records the time-to-sent SLI for a send answered "sent" by
// this node's shard. A forwarded send is observed by the node that
// forwarded it (cluster.completeForward), so it is skipped here.
func (s *Service) observeSent(r *request) {
	if !r.forwarded {
		timeToSent.Update(s.now().Sub(r.recv).Seconds())
	}
}

// observePush records the time-to-push SLI for a live push of m to sess.
// The sending device's own copy is not pushed and not counted.
func (s *Service) observePush(sess *session, m *record.Message) {
	if m.Sender == sess.user && m.Device == sess.device && m.Kind == record.MsgText {
		return
	}
	timeToPush.Update(s.sinceTS(m.TS))
}

// observeDelivered records the time-to-delivered SLI for an ack by r's
// device that moved its cursor from cur: every text message in msgs (the
// newest record.MaxPageLimit of the newly covered range, which the ack
// reads anyway) with seq > cur from another user is observed once, as
// now - its store timestamp. An ack covering more than a page observes the
// newest page only. Messages are attributed to the live path when the
// acking session was open when the message was stored, to catchup when it
// opened later, and to unknown when the ack was forwarded by another logic
// node (the session lives there).
func (s *Service) observeDelivered(r *request, cur uint64, msgs []record.Message) {
	var opened int64 = -1
	if r.from != nil {
		opened = r.from.opened.UnixMilli()
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Seq <= cur || m.Kind != record.MsgText || m.Sender == r.user {
			continue
		}
		path := pathUnknown
		switch {
		case opened < 0:
		case m.TS >= opened:
			path = pathLive
		default:
			path = pathCatchup
		}
		timeToDelivered[path].Update(s.sinceTS(m.TS))
	}
}

// sinceTS returns the seconds from a unix-ms timestamp to now (0 when the
// clock went back).
func (s *Service) sinceTS(ts int64) float64 {
	return max(0, float64(s.now().UnixMilli()-ts)/1000)
}

// observeHTTP records one HTTP request on route with its final status.
func observeHTTP(route string, status int, start time.Time) {
	m, ok := httpByRoute[route]
	if !ok {
		m = httpByRoute["other"]
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	m.byClass[class].Inc()
	m.seconds.Update(time.Since(start).Seconds())
}

// Queue depths: gauges computed at scrape time over every running Service
// and open link of the process.
var (
	live struct {
		mu       sync.Mutex // guards the following
		services []*Service
		links    []*link
	}
	// catchupWaiting counts catch-up runs waiting for a worker slot
	// (logic.catchup_workers), over every Service of the process.
	catchupWaiting atomic.Int64

	_ = metrics.NewGauge(`parley_logic_shard_queue_depth`, func() float64 { return sumServices(shardQueue) })
	_ = metrics.NewGauge(`parley_logic_shard_queue_depth_max`, func() float64 { return maxShardQueue() })
	_ = metrics.NewGauge(`parley_logic_lease_acquired`, func() float64 {
		return sumServices(func(s *Service) int { n, _ := s.leaseStats(); return int(n) })
	})
	_ = metrics.NewGauge(`parley_logic_lease_epoch_max`, func() float64 {
		var top uint64
		for _, s := range liveServices() {
			_, e := s.leaseStats()
			top = max(top, e)
		}
		return float64(top)
	})
	_ = metrics.NewGauge(`parley_logic_catchup_running`, func() float64 { return sumServices(func(s *Service) int { return len(s.catchupSem) }) })
	_ = metrics.NewGauge(`parley_logic_catchup_waiting`, func() float64 { return float64(catchupWaiting.Load()) })
	_ = metrics.NewGauge(`parley_logic_push_queue_depth`, func() float64 { return sumServices(func(s *Service) int { return len(s.pushQ) }) })
	_ = metrics.NewGauge(`parley_logic_presence_queue_depth`, func() float64 { return sumServices(func(s *Service) int { return len(s.presenceQ) }) })
	_ = metrics.NewGauge(`parley_logic_directory_queue_depth`, func() float64 { return sumServices(directoryQueue) })
	_ = metrics.NewGauge(`parley_logic_pending_forwards`, func() float64 { return sumServices(pendingForwards) })
	_ = metrics.NewGauge(`parley_logic_link_queue_bytes`, func() float64 { return linkQueueBytes() })
	// parley_logic_sched_lag_seconds is how late the node's wake-up probe
	// has recently woken (its peak over ~1.6 s, per process: the largest
	// over its services): time spent waiting for a CPU.
	_ = metrics.NewGauge(`parley_logic_sched_lag_seconds`, func() float64 {
		var peak time.Duration
		live.mu.Lock()
		for _, s := range live.services {
			peak = max(peak, s.lag.recent())
		}
		live.mu.Unlock()
		return peak.Seconds()
	})
	// parley_logic_store_breaker_open is 1 while the store circuit breaker
	// refuses calls (per process: the number of its services with an open
	// breaker).
	_ = metrics.NewGauge(`parley_logic_store_breaker_open`, func() float64 {
		return sumServices(func(s *Service) int {
			if s.breaker.Open() {
				return 1
			}
			return 0
		})
	})
)

// trackService adds s to the services the gauges read until the returned
// function is called. Run's delivery loop holds it for the Service's life.
func trackService(s *Service) (untrack func()) {
	live.mu.Lock()
	live.services = append(live.services, s)
	live.mu.Unlock()
	return func() {
		live.mu.Lock()
		if i := slices.Index(live.services, s); i >= 0 {
			live.services = slices.Delete(live.services, i, i+1)
		}
		live.mu.Unlock()
	}
}

// trackLink adds l to the links whose queued bytes are summed; untrackLink
// removes it (link.close).
func trackLink(l *link) {
	live.mu.Lock()
	live.links = append(live.links, l)
	live.mu.Unlock()
}

func untrackLink(l *link) {
	live.mu.Lock()
	if i := slices.Index(live.links, l); i >= 0 {
		live.links = slices.Delete(live.links, i, i+1)
	}
	live.mu.Unlock()
}

func liveServices() []*Service {
	live.mu.Lock()
	defer live.mu.Unlock()
	return slices.Clone(live.services)
}

func sumServices(f func(*Service) int) float64 {
	n := 0
	for _, s := range liveServices() {
		n += f(s)
	}
	return float64(n)
}

func shardQueue(s *Service) int {
	n := 0
	for _, sh := range s.shards {
		n += len(sh.q)
	}
	return n
}

func maxShardQueue() float64 {
	n := 0
	for _, s := range liveServices() {
		for _, sh := range s.shards {
			n = max(n, len(sh.q))
		}
	}
	return float64(n)
}

func directoryQueue(s *Service) int {
	if c := s.cluster; c != nil {
		return len(c.dirQ)
	}
	return 0
}

func pendingForwards(s *Service) int {
	c := s.cluster
	if c == nil {
		return 0
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return len(c.pending)
}

// linkQueueBytes sums the bytes waiting in every link's write buffer. It
// takes each link's lock in turn, never two at once.
func linkQueueBytes() float64 {
	live.mu.Lock()
	links := slices.Clone(live.links)
	live.mu.Unlock()
	n := 0
	for _, l := range links {
		l.mu.Lock()
		n += len(l.buf)
		l.mu.Unlock()
	}
	return float64(n)
}

// leaseStats returns the node's lease acquisitions and highest epoch (0, 0
// without leases).
func (s *Service) leaseStats() (uint64, uint64) {
	if s.leases == nil {
		return 0, 0
	}
	return s.leases.Acquired()
}
