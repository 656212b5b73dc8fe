package logic

import (
	"errors"

	"github.com/VictoriaMetrics/metrics"

	"github.com/parley-chat/parley/internal/record"
	"github.com/parley-chat/parley/logic/breaker"
)

// ErrStoreUnavailable is returned without calling the store while the
// circuit breaker is open. Clients see a retryable "unavailable" error.
var ErrStoreUnavailable = breaker.ErrOpen

// BreakerConfig configures the store circuit breaker (logic/breaker).
type BreakerConfig = breaker.Config

// storeMetrics are the store-call metrics the breaker updates: every store
// call of the logic tier goes through it (guarded.go).
var storeMetrics = breaker.Metrics{
	Opens:       metrics.NewCounter(`parley_logic_store_breaker_opens_total`),
	Rejected:    metrics.NewCounter(`parley_logic_store_breaker_rejected_total`),
	Calls:       metrics.NewCounter(`parley_logic_store_calls_total`),
	Errors:      metrics.NewCounter(`parley_logic_store_errors_total`),
	SlowExcused: metrics.NewCounter(`parley_logic_store_slow_calls_excused_total`),
	Latency:     metrics.NewHistogram(`parley_logic_store_call_duration_seconds`),
}

// storeFailed reports whether err is a store failure: not-found and
// conflict are answers, not failures.
func storeFailed(err error) bool {
	return err != nil && !errors.Is(err, record.ErrNotFound) && !errors.Is(err, record.ErrConflict)
}
