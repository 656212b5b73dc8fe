package gostats

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

var sink [][]byte

func TestWrite(t *testing.T) {
	old := debug.SetGCPercent(42)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	sink = make([][]byte, 0, 1024)
	for range 1024 {
		sink = append(sink, make([]byte, 1024)) // 1 MiB that stays live
	}
	runtime.GC()
	var buf bytes.Buffer
	Write(&buf)
	got := map[string]float64{}
	for line := range strings.Lines(buf.String()) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			t.Fatalf("bad line %q", line)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("bad value in %q: %v", line, err)
		}
		got[name] = f
	}
	if got["go_gc_gogc_percent"] != 42 {
		t.Errorf("go_gc_gogc_percent %v, want 42\n%s", got["go_gc_gogc_percent"], buf.String())
	}
	if live := got["go_gc_heap_live_bytes"]; live < 1<<20 {
		t.Errorf("go_gc_heap_live_bytes %v, want at least the 1 MiB held live\n%s", live, buf.String())
	}
	runtime.KeepAlive(sink)

	debug.SetGCPercent(-1) // off, as runtime.gc_percent: -1 sets it
	buf.Reset()
	Write(&buf)
	debug.SetGCPercent(42)
	if !strings.Contains(buf.String(), "\ngo_gc_gogc_percent -1\n") {
		t.Errorf("with GC off, want go_gc_gogc_percent -1, got\n%s", buf.String())
	}
}
