// Package breaker is the logic tier's circuit breaker in front of the
// store: when the store fails or is slow, calls fail fast with ErrOpen
// instead of queueing behind it, and one probe call at a time tests
// whether it recovered.
//
// It opens when, within Config.Window, at least Config.Failures calls
// failed (an error Failed counts, or a call slower than Config.Latency)
// and they are at least Config.FailureRatio of the calls; after
// Config.Cooldown it lets one probe through, whose success closes it. A
// slow call is excused when the node itself, not the store, was slow: the
// time the process waited for a CPU during the call (Lag) is subtracted
// first.
//
// The core is deterministic: time comes from the clock given to New, and
// the tests drive it with testing/synctest. A Breaker is safe for
// concurrent use; it starts no goroutine.
//
// Tier: logic (a room of it). Imports only the standard library and
// VictoriaMetrics/metrics.
package breaker
