package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

// TestShippedConfigs loads every file in configs/ the way the binary does,
// so the documented files never drift from the code.
func TestShippedConfigs(t *testing.T) {
	type tc struct {
		file     string
		validate func(*fileConfig) error
		extra    []string
	}
	tests := []tc{
		{"logic.yaml", func(c *fileConfig) error {
			if c.Store.Backend != "scylla" || len(c.Store.Scylla.Hosts) == 0 {
				return fmt.Errorf("got backend %q hosts %v", c.Store.Backend, c.Store.Scylla.Hosts)
			}
			return validateStore(c.Store)
		}, []string{"-set", "store.backend=scylla"}},
		{file: "standalone.yaml", validate: func(c *fileConfig) error {
			if err := standaloneLinkSecret(c); err != nil {
				return err
			}
			return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store), c.Connsrv.Validate())
		}},
		// The tier files ship without secrets: supply them as ops would.
		{file: "connsrv.yaml", validate: func(c *fileConfig) error {
			return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Connsrv.Validate())
		}},
		{file: "logic.yaml", validate: func(c *fileConfig) error {
			return joinErrs(validateLog(c.Log), c.Auth.Validate(), c.Logic.Validate(), validateStore(c.Store))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			args := append([]string{"-config", filepath.Join("..", "..", "configs", tt.file), "-set", "auth.secret=" + strings.Repeat("s", 32),
				"-set", "logic.link_secret=" + strings.Repeat("l", 32), "-set", "connsrv.link_secret=" + strings.Repeat("l", 32),
				"-set", "connsrv.metrics_token=" + strings.Repeat("m", 32),
				// logic.yaml's link_listen is beyond loopback: mutual TLS.
				"-set", "logic.link_tls.cert_file=/etc/parley/tls/logic-1.crt", "-set", "logic.link_tls.key_file=/etc/parley/tls/logic-1.key",
				"-set", "logic.link_tls.client_ca_file=/etc/parley/tls/ca.crt", "-set", "logic.link_tls.ca_file=/etc/parley/tls/ca.crt"}, tt.extra...)
			cfg, _, err := loadConfig(fs, args, "", tt.validate)
			if err != nil {
				t.Fatalf("got %v, want a valid config", err)
			}
			if len(cfg.warnings) > 0 {
				t.Fatalf("a shipped config uses deprecated settings: %q", cfg.warnings)
			}
		})
	}
}

// TestStoreOldNames: backend cql and the store.cql section, from before
// the config name followed the package's, still load for one release,
// with a warning each, and into the scylla section.
func TestStoreOldNames(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantHosts []string
		warnings  int
		wantErr   string
	}{
		{name: "old backend and section", args: []string{"-set", "store.backend=cql", "-set", "store.cql.hosts=10.0.0.1:9042"}, wantHosts: []string{"10.0.0.1:9042"}, warnings: 2},
		{name: "old section from the environment", args: []string{"-set", "store.backend=scylla"}, env: map[string]string{"PARLEY_STORE_CQL_HOSTS": "10.0.0.2:9042"}, wantHosts: []string{"10.0.0.2:9042"}, warnings: 1},
		{name: "new names", args: []string{"-set", "store.backend=scylla", "-set", "store.scylla.hosts=10.0.0.3:9042"}, wantHosts: []string{"10.0.0.3:9042"}},
		{name: "both sections, one setting each", args: []string{"-set", "store.backend=scylla", "-set", "store.cql.keyspace=ks"}, env: map[string]string{"PARLEY_STORE_SCYLLA_HOSTS": "10.0.0.4:9042"}, wantHosts: []string{"10.0.0.4:9042"}, warnings: 1},
		{name: "one setting under both names", args: []string{"-set", "store.backend=scylla", "-set", "store.scylla.hosts=a:1", "-set", "store.cql.hosts=b:2"}, wantErr: "keep only store.scylla.hosts"},
		{name: "the error shows the warning", args: []string{"-set", "store.backend=scylla", "-set", "store.cql.hosts=a:1", "-set", "store.cql.keyspace=bad-name!"}, wantErr: "warning: store.cql is the old name"},
		{name: "unknown backend", args: []string{"-set", "store.backend=mongo"}, wantErr: "want pebble or scylla"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cfg, _, err := loadConfig(fs, tt.args, "", func(c *fileConfig) error { return validateStore(c.Store) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Store.Backend != "scylla" || !slices.Equal(cfg.Store.Scylla.Hosts, tt.wantHosts) || len(cfg.warnings) != tt.warnings {
				t.Errorf("got backend %q, scylla hosts %v, warnings %q; want scylla, %v and %d warnings",
					cfg.Store.Backend, cfg.Store.Scylla.Hosts, cfg.warnings, tt.wantHosts, tt.warnings)
			}
			var logged bytes.Buffer
			stderr = &logged
			t.Cleanup(func() { stderr = os.Stderr })
			serverLogger(cfg)
			if got := strings.Count(logged.String(), "deprecated setting"); got != tt.warnings {
				t.Errorf("logged %d warnings, want %d: %s", got, tt.warnings, logged.String())
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-set", "connsrv.lisen=x"}, "unknown setting"},
		{[]string{"-set", "auth.secret=short"}, "at least 32 bytes"},
		{[]string{"-set", "log.level=loud"}, "log.level"},
		{[]string{"-set", "debug.pprof_listen=0.0.0.0:6060"}, "only on loopback"},
		{[]string{"-set", "debug.pprof_listen=:6060"}, "only on loopback"},
		{[]string{"-set", "debug.pprof_listen=10.0.0.5:6060"}, "only on loopback"},
		{[]string{"-set", "debug.pprof_listen=example.com:6060"}, "only on loopback"},
		{[]string{"-set", "debug.pprof_listen=127.0.0.1"}, "debug.pprof_listen"},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		_, _, err := loadConfig(fs, tt.args, "", func(c *fileConfig) error { return joinErrs(validateLog(c.Log), c.Auth.Validate()) })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestDevTokensStandaloneOnly: the fleet commands refuse development
// tokens; standalone keeps them.
func TestDevTokensStandaloneOnly(t *testing.T) {
	secret := "-set=auth.secret=" + strings.Repeat("s", 32)
	for _, tc := range []struct {
		run  func([]string) error
		args []string
		want string // "" = configuration ok
	}{
		{runLogic, []string{"-config", "../../configs/logic.yaml", secret, "-set", "logic.dev_tokens=true", "-check-config"}, "logic.dev_tokens"},
		{runConnsrv, []string{"-config", "../../configs/connsrv.yaml", secret, "-set", "logic.dev_tokens=true", "-check-config"}, "logic.dev_tokens"},
		{runLogic, []string{"-config", "../../configs/fleet/logic-1.yaml", "-check-config"}, ""},
		{runStandalone, []string{"-config", "../../configs/standalone.yaml", secret, "-set", "logic.dev_tokens=true", "-check-config"}, ""},
	} {
		err := tc.run(tc.args)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestPprofLoopbackWithoutCmdline(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:6060", "[::1]:6060", "localhost:6060", "127.0.0.2:0"} {
		if err := (DebugConfig{PprofListen: addr}).validate(); err != nil {
			t.Errorf("%s: got %v, want ok", addr, err)
		}
	}
	srv := httptest.NewServer(pprofMux())
	defer srv.Close()
	for path, want := range map[string]int{
		"/debug/pprof/cmdline":           http.StatusNotFound,
		"/debug/pprof/cmdline?x=1":       http.StatusNotFound,
		"/debug/pprof/goroutine?debug=1": http.StatusOK,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, resp.StatusCode, want)
		}
		if strings.Contains(string(body), "test.") && strings.Contains(path, "cmdline") {
			t.Errorf("GET %s served the command line: %q", path, body)
		}
	}
}

func TestPositionsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "alice-terminal.json")
	if got := loadPositions(path); got != nil {
		t.Fatalf("missing file: got %v, want nil", got)
	}
	want := map[string]uint64{"dm:alice:bob": 7, "g:x": 3}
	savePositions(path, want)
	got := loadPositions(path)
	if len(got) != 2 || got["dm:alice:bob"] != 7 || got["g:x"] != 3 {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestSecretFiles: auth.secret_file and logic.link_secret_file keep secrets
// off the command line; setting both forms is an error.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	authFile, linkFile := filepath.Join(dir, "auth"), filepath.Join(dir, "link")
	if err := os.WriteFile(authFile, []byte(strings.Repeat("a", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(linkFile, []byte(strings.Repeat("k", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := []string{"-config", "../../configs/logic.yaml", "-set", "auth.secret_file=" + authFile, "-set", "logic.link_secret_file=" + linkFile,
		"-set", "logic.link_listen=127.0.0.1:7070", "-check-config"}
	if err := runLogic(ok); err != nil {
		t.Fatalf("secret files: got %v, want ok", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-config", "../../configs/logic.yaml", "-set", "auth.secret_file=" + authFile, "-set", "auth.secret=" + strings.Repeat("s", 32), "-set", "logic.link_secret_file=" + linkFile, "-check-config"}, "set one"},
		{[]string{"-config", "../../configs/logic.yaml", "-set", "auth.secret_file=" + filepath.Join(dir, "missing"), "-set", "logic.link_secret_file=" + linkFile, "-check-config"}, "auth.secret_file"},
		{[]string{"-config", "../../configs/logic.yaml", "-set", "auth.secret_file=" + authFile, "-check-config"}, "link_secret"},
		{[]string{"-config", "../../configs/connsrv.yaml", "-set", "auth.secret_file=" + authFile, "-check-config"}, "link_secret"},
	} {
		if err := runLogicOrConnsrv(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// runLogicOrConnsrv runs the command the configuration file is for.
func runLogicOrConnsrv(args []string) error {
	if strings.Contains(args[1], "connsrv") {
		return runConnsrv(args)
	}
	return runLogic(args)
}

func TestTokenNames(t *testing.T) {
	cfg := auth.Default()
	cfg.Secret = strings.Repeat("s", 32)
	tok, err := auth.Issue(cfg, "alice", "phone", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sub, dev := tokenNames(tok); sub != "alice" || dev != "phone" {
		t.Fatalf("got %q %q, want alice phone", sub, dev)
	}
	for _, bad := range []string{"", "x", "a.b.c", "a.!!.c"} {
		if sub, dev := tokenNames(bad); sub != "" || dev != "" {
			t.Errorf("%q: got %q %q, want nothing", bad, sub, dev)
		}
	}
}
