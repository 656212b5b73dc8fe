// Package bench is Parley's connection-density harness: it opens many
// authenticated, idle WebSocket connections to a connection node, holds
// them, and reports what they cost the server — resident memory from
// /proc/PID/status, Go heap from the server's Prometheus metrics, and
// kernel socket memory from /proc/net/sockstat — before and after, per
// connection, plus the ramp-up rate and failures by reason.
//
// Each connection is upgraded by internal/wsclient's Dialer (DialRaw) and
// handed to an epoll poller, one goroutine for all of them, that parses
// frames and writes masked ones with wsclient's frame functions, so an
// idle connection costs no goroutine and no buffer. Like a real client it
// sends sync after hello and counts as established once synced arrived
// (Config.Sync), and acks any msg it gets. Connections are spread
// over local source addresses (127.0.0.x) so the ephemeral port range is
// not the limit; the open-files limit of one process is. So a run above
// Config.PerProc connections starts ceil(Conns/PerProc) client processes
// (Config.Worker, talking to Run over pipes: Worker), and StartServers
// starts one logic node and several connsrv processes sharing the port
// (SO_REUSEPORT) for counts one connsrv process cannot hold; Sweep runs
// one such measurement per count on fresh servers (docs/tuning.md).
//
// Concurrency: Run is safe to call from any goroutine (one run at a time
// per process is sensible: it raises RLIMIT_NOFILE). The parsing helpers
// are pure functions.
//
// Tier: tooling (client side); imports internal/wsclient and no tier;
// Linux only for the /proc readings and the poller.
package bench
