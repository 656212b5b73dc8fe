package logic

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/proto"
	"github.com/parley-chat/parley/internal/record"
)

// scrapeDefault returns every series of the process's default metrics set
// (what logic's /metrics serves) by its name with labels.
func scrapeDefault(t *testing.T) map[string]float64 {
	t.Helper()
	var b bytes.Buffer
	metrics.WritePrometheus(&b, false)
	return parseSeries(t, b.Bytes())
}

func parseSeries(t *testing.T, text []byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("bad series line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSeries polls until every series grew by at least its want over
// before; a failure names each series that did not.
func waitSeries(t *testing.T, before map[string]float64, want map[string]float64) map[string]float64 {
	t.Helper()
	var now map[string]float64
	eventually(t, 10*time.Second, func() (bool, string) {
		now = scrapeDefault(t)
		var missing []string
		for name, d := range want {
			if got := now[name] - before[name]; got < d {
				missing = append(missing, fmt.Sprintf("%s grew by %g, want >= %g", name, got, d))
			}
		}
		return len(missing) == 0, "metrics did not move:\n" + strings.Join(missing, "\n")
	})
	return now
}

// TestRequestMetrics drives requests through a service and checks that the
// RED counters and histograms of those request types, the SLI histograms
// and the HTTP RED counters moved.
func TestRequestMetrics(t *testing.T) {
	svc := startService(t, newMemStore())
	n := dialNode(t, svc.LinkAddr())
	before := scrapeDefault(t)
	n.open(1, "mia", "phone")
	n.open(2, "max", "laptop")
	const sends = 5
	chat := record.DirectChatID("mia", "max")
	for i := 0; i < sends; i++ {
		n.send(1, fmt.Sprintf(`{"type":"send","id":"m%d","to":"max","body":"hi %d"}`, i, i))
		n.nextType(1, "sent")
		n.nextType(2, "msg")
	}
	n.send(1, `{"type":"send","id":"big","to":"max","body":"`+strings.Repeat("a", 17000)+`"}`)
	if m := n.nextType(1, "error"); m["code"] != proto.CodeTooLarge {
		t.Fatalf("got %v, want too_large", m)
	}
	n.send(2, fmt.Sprintf(`{"type":"ack","chat":"%s","seq":%d}`, chat, sends))
	n.send(1, `{"type":"history","id":"h","chat":"`+chat+`"}`)
	n.nextType(1, "history")
	for _, path := range []string{"/healthz", "/nope"} {
		resp, err := http.Get("http://" + svc.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}

	waitSeries(t, before, map[string]float64{
		`parley_logic_requests_total{type="send"}`:                                   sends + 1,
		`parley_logic_request_duration_seconds_count{type="send"}`:                   sends + 1,
		`parley_logic_request_errors_total{type="send",code="too_large"}`:            1,
		`parley_logic_requests_total{type="sync"}`:                                   2,
		`parley_logic_requests_total{type="ack"}`:                                    1,
		`parley_logic_requests_total{type="history"}`:                                1,
		`parley_logic_request_duration_seconds_count{type="history"}`:                1,
		`parley_logic_time_to_sent_seconds_count`:                                    sends,
		`parley_logic_time_to_push_seconds_count`:                                    sends,
		`parley_logic_time_to_delivered_seconds_count{path="live"}`:                  sends,
		`parley_logic_http_requests_total{route="healthz",status="2xx"}`:             1,
		`parley_logic_http_requests_total{route="other",status="4xx"}`:               1,
		`parley_logic_http_request_duration_seconds_count{route="healthz"}`:          1,
		`parley_logic_time_to_sent_seconds_bucket{le="+Inf"}`:                        sends,
		`parley_logic_request_duration_seconds_bucket{type="send",le="+Inf"}`:        sends + 1,
		`parley_logic_time_to_delivered_seconds_bucket{path="live",le="+Inf"}`:       sends,
		`parley_logic_http_request_duration_seconds_bucket{route="healthz",le="10"}`: 1,
	})
	got := scrapeDefault(t)
	for _, g := range []string{
		"parley_logic_shard_queue_depth", "parley_logic_shard_queue_depth_max", "parley_logic_catchup_running",
		"parley_logic_catchup_waiting", "parley_logic_push_queue_depth", "parley_logic_presence_queue_depth",
		"parley_logic_directory_queue_depth", "parley_logic_pending_forwards", "parley_logic_link_queue_bytes",
		"parley_logic_store_breaker_open",
	} {
		if _, ok := got[g]; !ok {
			t.Errorf("gauge %s missing from /metrics", g)
		}
	}
}

// TestQueueGauges checks that the gauges read the running services: a
// service's queues are counted while it runs.
func TestQueueGauges(t *testing.T) {
	svc := newBareService(t, newMemStore(), func(*Config) {})
	untrack := trackService(svc)
	base := scrapeDefault(t)["parley_logic_push_queue_depth"]
	for i := 0; i < 3; i++ {
		svc.pushQ <- PushEvent{Recipient: "u"}
	}
	svc.shards[0].q <- &request{}
	got := scrapeDefault(t)
	if d := got["parley_logic_push_queue_depth"] - base; d != 3 {
		t.Errorf("push queue depth grew by %g, want 3", d)
	}
	if got["parley_logic_shard_queue_depth"] < 1 || got["parley_logic_shard_queue_depth_max"] < 1 {
		t.Errorf("shard queue depth %g max %g, want >= 1", got["parley_logic_shard_queue_depth"], got["parley_logic_shard_queue_depth_max"])
	}
	untrack()
	if d := scrapeDefault(t)["parley_logic_push_queue_depth"] - base; d != 0 {
		t.Errorf("push queue depth after untrack grew by %g, want 0", d)
	}
}

// TestObserveDelivered checks which path each covered message is
// attributed to and which messages count at all.
func TestObserveDelivered(t *testing.T) {
	svc := newBareService(t, newMemStore(), func(*Config) {})
	now := time.UnixMilli(1_000_000)
	svc.now = func() time.Time { return now }
	opened := now.Add(-10 * time.Second)
	sess := &session{user: "bob", device: "d", opened: opened}
	msgs := []record.Message{
		{Seq: 1, Sender: "ann", Kind: record.MsgText, TS: opened.Add(-time.Minute).UnixMilli()},  // covered before: skipped
		{Seq: 2, Sender: "ann", Kind: record.MsgText, TS: opened.Add(-time.Second).UnixMilli()},  // catchup
		{Seq: 3, Sender: "bob", Kind: record.MsgText, TS: opened.Add(time.Second).UnixMilli()},   // own: skipped
		{Seq: 4, Sender: "ann", Kind: record.MsgSystem, TS: opened.Add(time.Second).UnixMilli()}, // system: skipped
		{Seq: 5, Sender: "ann", Kind: record.MsgText, TS: opened.UnixMilli()},                    // live
		{Seq: 6, Sender: "cat", Kind: record.MsgText, TS: now.UnixMilli()},                       // live
	}
	tests := []struct {
		name string
		from *session
		want map[string]float64
	}{
		{"session here", sess, map[string]float64{pathLive: 2, pathCatchup: 1, pathUnknown: 0}},
		{"forwarded", nil, map[string]float64{pathLive: 0, pathCatchup: 0, pathUnknown: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := scrapeDefault(t)
			svc.observeDelivered(&request{user: "bob", from: tt.from}, 1, msgs)
			after := scrapeDefault(t)
			for path, want := range tt.want {
				name := `parley_logic_time_to_delivered_seconds_count{path="` + path + `"}`
				if got := after[name] - before[name]; got != want {
					t.Errorf("%s grew by %g, want %g", name, got, want)
				}
			}
		})
	}
}

// TestRequestDoneLabels checks the bounded labels: an unknown frame type
// counts as "other", a non-protocol error as "unavailable", and a request
// refused before a worker (rejectRequest) is answered and counted.
func TestRequestDoneLabels(t *testing.T) {
	svc := newBareService(t, newMemStore(), func(*Config) {})
	tests := []struct {
		name   string
		typ    string
		err    error
		series []string
	}{
		{"unknown type", "no-such-type", nil, []string{`parley_logic_requests_total{type="other"}`}},
		{"store error", proto.TypeChats, fmt.Errorf("disk on fire"), []string{
			`parley_logic_requests_total{type="chats"}`, `parley_logic_request_errors_total{type="chats",code="unavailable"}`}},
		{"rate limited", proto.TypeSend, &proto.Error{Code: proto.CodeRateLimited, Message: "slow down"}, []string{
			`parley_logic_requests_total{type="send"}`, `parley_logic_request_errors_total{type="send",code="rate_limited"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := scrapeDefault(t)
			out := &capture{}
			svc.rejectRequest(&request{in: proto.Inbound{Type: tt.typ, ID: "x"}, out: out, recv: svc.now()}, tt.err)
			after := scrapeDefault(t)
			for _, s := range tt.series {
				if d := after[s] - before[s]; d != 1 {
					t.Errorf("%s grew by %g, want 1", s, d)
				}
			}
			if len(out.frames) != 1 || !strings.Contains(out.frames[0], `"type":"error"`) {
				t.Errorf("got answers %q, want one error frame", out.frames)
			}
		})
	}
}

// TestObserveHTTPClasses checks the status classes and the route fallback.
func TestObserveHTTPClasses(t *testing.T) {
	tests := []struct {
		route  string
		status int
		series string
	}{
		{"history", 200, `parley_logic_http_requests_total{route="history",status="2xx"}`},
		{"send", 503, `parley_logic_http_requests_total{route="send",status="5xx"}`},
		{"send", 429, `parley_logic_http_requests_total{route="send",status="4xx"}`},
		{"made-up", 302, `parley_logic_http_requests_total{route="other",status="3xx"}`},
		{"chats", 999, `parley_logic_http_requests_total{route="chats",status="other"}`},
	}
	for _, tt := range tests {
		before := scrapeDefault(t)[tt.series]
		observeHTTP(tt.route, tt.status, time.Now())
		if d := scrapeDefault(t)[tt.series] - before; d != 1 {
			t.Errorf("route %s status %d: %s grew by %g, want 1", tt.route, tt.status, tt.series, d)
		}
	}
}
