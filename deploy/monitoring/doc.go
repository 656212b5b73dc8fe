// Package monitoring holds what operators need to watch Parley: a Grafana
// dashboard (grafana-parley.json), Prometheus alerting rules (alerts.yaml)
// and a README saying how to scrape each tier and what every panel and
// alert means.
//
// The package has no code of its own. Its test keeps the shipped files
// honest: the dashboard is a Grafana 10 JSON model whose panels all use the
// ${DS_PROMETHEUS} datasource and the job/instance variables, every alert
// rule has a for:, a severity and summary, description and runbook
// annotations whose runbook section exists in the README, and, when
// promtool is installed (Debian: apt-get install prometheus), the rules
// and every dashboard query pass `promtool check rules`. That every metric
// they query exists in a real /metrics scrape is checked by
// e2e/metrics_test.go, which runs the binary.
package monitoring
