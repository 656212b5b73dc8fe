package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestRuntimeConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    RuntimeConfig
		want string // "" = valid
	}{
		{"zero", RuntimeConfig{}, ""},
		{"all set", RuntimeConfig{GCPercent: 50, MemoryLimitMB: 512, MaxProcs: 4}, ""},
		{"gc off with a limit", RuntimeConfig{GCPercent: -1, MemoryLimitMB: 512}, ""},
		{"gc off without a limit", RuntimeConfig{GCPercent: -1}, "memory_limit_mb too"},
		{"gc off with GOMEMLIMIT", RuntimeConfig{GCPercent: -1}, "env:GOMEMLIMIT"},
		{"gc below -1", RuntimeConfig{GCPercent: -2}, "runtime.gc_percent -2"},
		{"negative limit", RuntimeConfig{MemoryLimitMB: -1}, "runtime.memory_limit_mb -1"},
		{"negative procs", RuntimeConfig{MaxProcs: -3}, "runtime.max_procs -3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(string) string { return "" }
			want := tt.want
			if k, ok := strings.CutPrefix(tt.want, "env:"); ok { // valid with k set
				getenv = func(v string) string {
					if v == k {
						return "1GiB"
					}
					return ""
				}
				want = ""
			}
			err := tt.c.validate(getenv)
			switch {
			case want == "" && err != nil:
				t.Fatalf("got %v, want no error", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Fatalf("got %v, want an error with %q", err, want)
			}
		})
	}
}

func TestRuntimeConfigApply(t *testing.T) {
	oldGC := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	oldProcs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		debug.SetGCPercent(oldGC)
		debug.SetMemoryLimit(oldLimit)
		runtime.GOMAXPROCS(oldProcs)
	})
	noEnv := func(string) string { return "" }
	c := RuntimeConfig{GCPercent: 37, MemoryLimitMB: 300, MaxProcs: oldProcs + 1}
	c.apply(noEnv)
	if got := debug.SetGCPercent(100); got != 37 {
		t.Errorf("GC percent %d, want 37", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != 300<<20 {
		t.Errorf("memory limit %d, want %d", got, 300<<20)
	}
	if got := runtime.GOMAXPROCS(oldProcs); got != oldProcs+1 {
		t.Errorf("GOMAXPROCS %d, want %d", got, oldProcs+1)
	}

	// The environment wins.
	env := func(k string) string {
		return map[string]string{"GOGC": "80", "GOMEMLIMIT": "1GiB", "GOMAXPROCS": "1"}[k]
	}
	c.apply(env)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent %d, want 100 (untouched)", got)
	}
	if got := debug.SetMemoryLimit(math.MaxInt64); got != math.MaxInt64 {
		t.Errorf("GOMEMLIMIT set: memory limit %d, want untouched", got)
	}
	if got := runtime.GOMAXPROCS(0); got != oldProcs {
		t.Errorf("GOMAXPROCS set: %d, want %d (untouched)", got, oldProcs)
	}
}

func TestEmbeddedStoreProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	cpus := runtime.NumCPU()
	noEnv := func(string) string { return "" }
	type procsCase struct {
		name      string
		backend   string
		maxProcs  int
		procs     int // GOMAXPROCS before
		env       func(string) string
		wantProcs int
	}
	tests := []procsCase{
		{"pebble doubles", "pebble", 0, cpus, noEnv, 2 * cpus},
		{"scylla is left alone", "scylla", 0, cpus, noEnv, cpus},
		{"runtime.max_procs wins", "pebble", 5, cpus, noEnv, cpus},
		{"GOMAXPROCS wins", "pebble", 0, cpus, func(k string) string {
			if k == "GOMAXPROCS" {
				return "1"
			}
			return ""
		}, cpus},
	}
	if cpus > 1 {
		tests = append(tests, procsCase{"a CPU limit below the CPU count is left alone", "pebble", 0, cpus - 1, noEnv, cpus - 1})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GOMAXPROCS(tt.procs)
			cfg := defaultFileConfig()
			cfg.Store.Backend = tt.backend
			cfg.Runtime.MaxProcs = tt.maxProcs
			embeddedStoreProcs(&cfg, tt.env)
			if got := runtime.GOMAXPROCS(0); got != tt.wantProcs {
				t.Errorf("GOMAXPROCS %d, want %d", got, tt.wantProcs)
			}
		})
	}
}
