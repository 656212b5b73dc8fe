package gostats

import (
	"fmt"
	"io"
	"runtime/metrics"
)

// The runtime/metrics names read and the Prometheus names written.
var readings = [...]struct{ from, to, help string }{
	{"/gc/heap/live:bytes", "go_gc_heap_live_bytes", "Heap memory occupied by live objects, as of the last GC."},
	{"/gc/gogc:percent", "go_gc_gogc_percent", "The GC target (GOGC or runtime.gc_percent)."},
}

// Write writes go_gc_heap_live_bytes and go_gc_gogc_percent to w.
// A reading this Go runtime does not support is left out.
func Write(w io.Writer) {
	var samples [len(readings)]metrics.Sample
	for i, r := range readings {
		samples[i].Name = r.from
	}
	metrics.Read(samples[:])
	for i, r := range readings {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			continue
		}
		// As int64: the runtime reports GOGC=off (-1) as the uint64 of -1.
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", r.to, r.help, r.to, r.to, int64(samples[i].Value.Uint64()))
	}
}
