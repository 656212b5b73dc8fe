package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

// wsURLFromListen turns a connsrv listen address (gnet form
// "tcp://127.0.0.1:8080") into a WebSocket URL.
func wsURLFromListen(listen string) string {
	host := strings.TrimPrefix(listen, "tcp://")
	if strings.HasPrefix(host, ":") {
		host = "127.0.0.1" + host
	}
	return "ws://" + host + "/ws"
}

// devTokens signs tokens locally with the configured secret.
func devTokens(a auth.Config) func(user, device string) (string, error) {
	return func(user, device string) (string, error) {
		return auth.Issue(a, user, device, 2*time.Hour, time.Now())
	}
}

// tool is the setup the measuring commands (bench, loadtest) share: the
// -url, -json and -q flags, the config (for the token secret and the
// default URL), a logger and a context cancelled by SIGINT/SIGTERM.
type tool struct {
	url    *string
	asJSON *bool
	quiet  *bool

	cfg      fileConfig
	log      *slog.Logger
	ctx      context.Context
	stop     context.CancelFunc
	progress io.Writer // nil with -q
}

// addToolFlags registers the shared flags on fs.
func addToolFlags(fs *flag.FlagSet) *tool {
	return &tool{
		url:    fs.String("url", "", "WebSocket URL of a connection node (default: from connsrv.listen in the config)"),
		asJSON: fs.Bool("json", false, "print the result as JSON on stdout (progress stays on stderr)"),
		quiet:  fs.Bool("q", false, "no progress lines"),
	}
}

// setup parses args and prepares the run; done is true after -check-config.
// The caller must call t.stop when done is false and err is nil.
func (t *tool) setup(fs *flag.FlagSet, args []string) (done bool, err error) {
	t.cfg, done, err = loadConfig(fs, args, "configs/standalone.yaml", func(c *fileConfig) error { return c.Auth.Validate() })
	if err != nil || done {
		return done, err
	}
	if t.log, err = newLogger(t.cfg.Log, os.Stderr); err != nil {
		return false, err
	}
	if *t.url == "" {
		*t.url = wsURLFromListen(t.cfg.Connsrv.Listen)
	}
	t.ctx, t.stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if !*t.quiet {
		t.progress = os.Stderr
	}
	return false, nil
}

// report prints res as JSON with -json, or as text through write; a run
// cut short by a signal still reports what it measured.
func (t *tool) report(res any, runErr error, write func(io.Writer) error) error {
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if *t.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Println()
	return write(os.Stdout)
}
