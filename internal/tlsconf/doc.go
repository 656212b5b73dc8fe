// Package tlsconf builds the crypto/tls configurations of Parley's own TLS
// endpoints: the logic tier's HTTP API (fasthttp) and the tier link (logic
// serves, connection nodes and logic peers dial). Client WebSocket TLS is
// not here: HAProxy terminates it in front of connsrv (gnet has no TLS) and
// forwards plaintext with the PROXY protocol v2; see docs/tls.md and
// scripts/haproxy.sh.
//
// Every configuration is TLS 1.3 only. ServerConfig serves the certificate
// through GetCertificate and re-reads the files when they change (checked
// every Config.ReloadInterval by a goroutine that the returned stop func
// ends): new handshakes get the new certificate, established connections
// keep theirs, and a new pair that fails to load is logged and counted
// while the old one stays in service. ClientConfig verifies the server
// against Config.CAFile (or the system roots) and Config.ServerName, and
// presents Config.CertFile as a client certificate when it is set (mutual
// TLS with a server whose ClientCAFile is set); that client certificate is
// re-read lazily, at most once per ReloadInterval, during handshakes.
//
// Config.DenyFile lists revoked certificate serial numbers; both sides
// refuse a peer presenting one, and re-read the file lazily at handshakes
// when it changed. Recheck runs the same check on an established
// connection: holders of long-lived links call it every RecheckInterval
// and cut a link whose peer was revoked since. NewCA and Issue make a fleet's link CA and node
// certificates (`parley certs`).
//
// Metrics, in the default VictoriaMetrics set (logic's /metrics serves it),
// labelled with the certificate file: parley_tls_cert_reloads_total{cert,
// result="ok"|"error"} and parley_tls_cert_expiry_seconds{cert}, the
// NotAfter of the served leaf as Unix seconds (alert on
// parley_tls_cert_expiry_seconds - time() < 14*86400); and
// parley_tls_deny_reloads_total{file, result} for the deny file.
//
// Concurrency: the *tls.Config values returned are safe for concurrent use
// by any number of listeners and dialers, like any tls.Config; the stop
// func is safe to call more than once. Config methods are pure.
//
// Tier: shared leaf (used by cmd/ to wire logic and connsrv); imports
// nothing of ours.
package tlsconf
