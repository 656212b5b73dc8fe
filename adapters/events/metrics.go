package events

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Publish error reasons (label "reason" of parley_events_publish_errors_total).
const (
	reasonFull     = "full"     // MaxBufferedRecords pending: Publish returned ErrFull
	reasonClosed   = "closed"   // Publish after Close, or pending at Close
	reasonEncode   = "encode"   // the event did not encode
	reasonTimeout  = "timeout"  // not acknowledged within ProduceTimeout
	reasonCanceled = "canceled" // the caller's ctx had ended
	reasonBroker   = "broker"   // any other error the brokers returned
)

var (
	published       = metrics.NewCounter(`parley_events_published_total`)
	consumed        = metrics.NewCounter(`parley_events_consumed_total`)
	handlerErrors   = metrics.NewCounter(`parley_events_handler_errors_total`)
	deadLettered    = metrics.NewCounter(`parley_events_dead_lettered_total`)
	produceDuration = metrics.NewHistogram(`parley_events_produce_seconds`)

	publishErrors = map[string]*metrics.Counter{}
)

func init() {
	for _, r := range []string{reasonFull, reasonClosed, reasonEncode, reasonTimeout, reasonCanceled, reasonBroker} {
		publishErrors[r] = metrics.NewCounter(`parley_events_publish_errors_total{reason="` + r + `"}`)
	}
}

// throttle lets one log line through per interval and counts the rest, so
// a broker outage logs a line every few seconds, not one per event.
type throttle struct {
	interval   time.Duration
	next       atomic.Int64 // unix ns before which lines are suppressed
	suppressed atomic.Int64 // lines suppressed since the last one logged
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one that was.
func (t *throttle) allow() (bool, int64) {
	now := time.Now().UnixNano()
	next := t.next.Load()
	if now < next || !t.next.CompareAndSwap(next, now+int64(t.interval)) {
		t.suppressed.Add(1)
		return false, 0
	}
	return true, t.suppressed.Swap(0)
}

// kgoLogger sends franz-go's warnings and errors to slog; its info lines
// (connections, metadata, group joins) go at Debug.
type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelInfo
	}
	return kgo.LogLevelWarn
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	case kgo.LogLevelDebug:
		return
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
