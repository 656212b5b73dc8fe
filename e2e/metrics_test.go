package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/parley-chat/parley/client"
)

// fleetOnlyMetrics are metric names the dashboard and alert rules use that
// a standalone process does not expose: they appear only on a logic node
// in a fleet (peer ring, Redis directory, Kafka) or on the notifier tier,
// and VictoriaMetrics histograms appear only after their first
// observation. Each was checked against the code that registers it
// (`grep -rn 'parley_<name>' --include=*.go .`); e2e/fleet_test.go runs
// the fleet that exposes them.
var fleetOnlyMetrics = map[string]string{
	"parley_logic_forward_seconds_sum":      "logic/cluster.go: histogram of forwards between logic nodes (fleet)",
	"parley_logic_forward_seconds_count":    "logic/cluster.go: histogram of forwards between logic nodes (fleet)",
	"parley_directory_call_seconds_sum":     "adapters/directory: per-op histogram, observed only with Redis configured",
	"parley_directory_call_seconds_count":   "adapters/directory: per-op histogram, observed only with Redis configured",
	"parley_events_produce_seconds_sum":     "adapters/events: histogram, observed only with Kafka configured",
	"parley_events_produce_seconds_count":   "adapters/events: histogram, observed only with Kafka configured",
	"parley_notifier_pushes_total":          "notifier: created per result on the first Web Push (VAPID keys configured)",
	"parley_notifier_webhooks_total":        "notifier: created per result on the first webhook (webhook_url configured)",
	"parley_notifier_push_seconds_sum":      "notifier: histogram, first Web Push",
	"parley_notifier_push_seconds_count":    "notifier: histogram, first Web Push",
	"parley_notifier_webhook_seconds_sum":   "notifier: histogram, first webhook",
	"parley_notifier_webhook_seconds_count": "notifier: histogram, first webhook",
}

// scrape fetches a /metrics page and returns its series by name with
// labels.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: status %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("scrape %s: bad line %q", url, line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad value in %q", url, line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return out
}

// sumSeries adds every series whose name (before the labels) is name and
// whose labels contain each of match.
func sumSeries(m map[string]float64, name string, match ...string) float64 {
	total := 0.0
	for series, v := range m {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range match {
			ok = ok && strings.Contains(labels, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

// TestMetricsShowTraffic runs the standalone binary, sends messages between
// two users (the SDK acks them), and checks that logic's and connsrv's
// /metrics show that traffic: the time-to-sent and time-to-delivered SLI
// histograms, request RED, HTTP RED and connsrv frames. Then it checks
// that every metric the shipped dashboard and alert rules query exists in
// those scrapes or is a documented fleet-only metric.
func TestMetricsShowTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := parleyBinary(t)
	ports := [4]int{freePort(t), freePort(t), freePort(t), freePort(t)}
	p := startStandalone(t, bin, newTestStore(t), ports)
	logicURL := p.adminBase + "/metrics"
	connURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[1])
	logicBefore, connBefore := scrape(t, logicURL), scrape(t, connURL)

	alice := p.dial(t, "alice")
	p.dial(t, "bob") // p.dial consumes bob's messages, so the SDK acks them
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 50
	for i := 0; i < n; i++ {
		if _, err := alice.SendTo(ctx, "bob", fmt.Sprintf("m%d", i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// One refused read: the request error series exist.
	if _, _, err := alice.History(ctx, "dm:bob:carol", client.HistoryQuery{}); err == nil {
		t.Fatal("history of a stranger's chat succeeded, want not_member")
	}

	type check struct {
		what       string
		name       string
		match      []string
		want       float64
		connsrvTab bool
	}
	checks := []check{
		{"time-to-sent count", "parley_logic_time_to_sent_seconds_count", nil, n, false},
		{"time-to-delivered (live) count", "parley_logic_time_to_delivered_seconds_count", []string{`path="live"`}, n, false},
		// A message that reaches the receiver's session before its catch-up
		// started goes out by catch-up, which time-to-push does not count.
		{"time-to-push count", "parley_logic_time_to_push_seconds_count", nil, n / 2, false},
		{"send requests", "parley_logic_requests_total", []string{`type="send"`}, n, false},
		{"send latency count", "parley_logic_request_duration_seconds_count", []string{`type="send"`}, n, false},
		{"ack requests", "parley_logic_requests_total", []string{`type="ack"`}, 1, false},
		{"history errors", "parley_logic_request_errors_total", []string{`type="history"`, `code="not_member"`}, 1, false},
		{"HTTP dev tokens", "parley_logic_http_requests_total", []string{`route="dev_token"`, `status="2xx"`}, 2, false},
		{"HTTP /metrics", "parley_logic_http_requests_total", []string{`route="metrics"`, `status="2xx"`}, 1, false},
		{"connsrv frames in", "parley_connsrv_frames_in_total", nil, n, true},
		{"connsrv frames out", "parley_connsrv_frames_out_total", nil, n, true},
	}
	var logicNow, connNow map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		logicNow, connNow = scrape(t, logicURL), scrape(t, connURL)
		var short []string
		for _, c := range checks {
			before, now := logicBefore, logicNow
			if c.connsrvTab {
				before, now = connBefore, connNow
			}
			if got := sumSeries(now, c.name, c.match...) - sumSeries(before, c.name, c.match...); got < c.want {
				short = append(short, fmt.Sprintf("%s: %s%v grew by %g, want >= %g", c.what, c.name, c.match, got, c.want))
			}
		}
		if len(short) == 0 {
			break
		}
		if time.Now().After(deadline) { // acks are batched by the SDK; 30s is far beyond its 50ms interval
			t.Fatalf("metrics do not show the traffic:\n%s", strings.Join(short, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if q := sumSeries(logicNow, "parley_logic_time_to_sent_seconds_bucket", `le="+Inf"`); q < n {
		t.Errorf("time-to-sent +Inf bucket %g, want >= %d (Prometheus le buckets)", q, n)
	}

	t.Run("dashboard and alerts reference real metrics", func(t *testing.T) {
		exposed := map[string]bool{}
		for _, m := range []map[string]float64{logicNow, connNow} {
			for series := range m {
				name, _, _ := strings.Cut(series, "{")
				exposed[name] = true
			}
		}
		refs := monitoringRefs(t)
		if len(refs) < 50 {
			t.Fatalf("found %d metric names in deploy/monitoring, want many more: is the extraction broken?", len(refs))
		}
		for _, name := range refs {
			if exposed[name] {
				continue
			}
			if _, ok := fleetOnlyMetrics[name]; ok {
				continue
			}
			t.Errorf("deploy/monitoring queries %s, which neither the standalone logic nor connsrv /metrics exposes (and it is not in fleetOnlyMetrics)", name)
		}
		for name := range fleetOnlyMetrics {
			if !slices.Contains(refs, name) {
				t.Errorf("fleetOnlyMetrics lists %s, which deploy/monitoring no longer queries: drop it", name)
			}
			if exposed[name] {
				t.Logf("fleetOnlyMetrics lists %s, which this standalone run exposes: it may be dropped from the list", name)
			}
		}
	})
}

// metricNameRE finds metric names in PromQL: ours, Go runtime and process
// metrics. Prometheus' own "up" is not a scraped metric and is left out.
var metricNameRE = regexp.MustCompile(`\b(?:parley|go|process)_[a-z0-9_]+\b`)

// monitoringRefs returns the sorted distinct metric names queried by the
// dashboard's targets and the alert rules' expressions.
func monitoringRefs(t *testing.T) []string {
	t.Helper()
	var exprs []string
	raw, err := os.ReadFile("../deploy/monitoring/grafana-parley.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-parley.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	f, err := os.Open("../deploy/monitoring/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Expr string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range exprs {
		for _, name := range metricNameRE.FindAllString(e, -1) {
			if !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}
