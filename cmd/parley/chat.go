package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/client/term"
)

func runChat(args []string) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	wsURL := fs.String("url", "ws://127.0.0.1:8080/ws", "WebSocket URL of a connection node")
	httpURL := fs.String("http", "http://127.0.0.1:8081", "HTTP API of a logic node (for a development token)")
	user := fs.String("user", "", "user id (required unless -token is given)")
	device := fs.String("device", "terminal", "device id (with -token: the token's dev claim when it has one)")
	token := fs.String("token", "", "JWT; default: ask the standalone node's /v1/dev/token")
	state := fs.String("state", "auto", "file keeping this device's delivery positions between runs (auto: the user cache dir; empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token != "" {
		// A token bound to a device runs as that device only (another
		// ?device= is refused), and names the user.
		sub, dev := tokenNames(*token)
		deviceSet := false
		fs.Visit(func(f *flag.Flag) { deviceSet = deviceSet || f.Name == "device" })
		if dev != "" && !deviceSet {
			*device = dev
		}
		if sub != "" {
			*user = sub // the server runs the session as the token's user
		}
	}
	if *state == "auto" {
		*state = ""
		if dir, err := os.UserCacheDir(); err == nil && *user != "" {
			*state = filepath.Join(dir, "parley", *user+"-"+*device+".json")
		}
	}
	ctx, stop := signalContext()
	defer stop()
	tok := *token
	if tok == "" {
		if *user == "" {
			return fmt.Errorf("-user or -token is required")
		}
		var err error
		if tok, err = devToken(ctx, *httpURL, *user, *device); err != nil {
			return err
		}
	}
	cfg := client.Default()
	cfg.URL, cfg.Token, cfg.Device = *wsURL, tok, *device
	cfg.Resume = loadPositions(*state)
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", *wsURL, err)
	}
	defer c.Close()
	done := make(chan struct{})
	defer close(done)
	go func() { // keep the positions current so a crash re-downloads little
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				savePositions(*state, c.Positions())
			}
		}
	}()
	err = term.Run(ctx, c, os.Stdin, os.Stdout)
	savePositions(*state, c.Positions())
	return err
}

// loadPositions reads the positions saved by an earlier run (none if the
// file is missing or unreadable: the server then sends what the device has
// not acknowledged and history fills the rest).
func loadPositions(path string) map[string]uint64 {
	if path == "" {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var pos map[string]uint64
	if json.Unmarshal(data, &pos) != nil {
		return nil
	}
	return pos
}

// savePositions writes positions atomically (temp file and rename).
func savePositions(path string, pos map[string]uint64) {
	if path == "" || len(pos) == 0 {
		return
	}
	data, err := json.Marshal(pos)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	tmp := path + ".tmp"
	if os.WriteFile(tmp, data, 0o600) == nil {
		_ = os.Rename(tmp, path)
	}
}

// devToken asks a standalone node for a development token.
func devToken(ctx context.Context, base, user, device string) (string, error) {
	u := strings.TrimRight(base, "/") + "/v1/dev/token?user=" + url.QueryEscape(user) + "&device=" + url.QueryEscape(device)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot get a dev token from %s (is parley standalone running?): %w", base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("cannot get a dev token: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		return "", fmt.Errorf("cannot read dev token answer %q", body)
	}
	return out.Token, nil
}

// tokenNames reads the sub and dev claims of a JWT without verifying it
// (the server does); empty when it cannot be read.
func tokenNames(tok string) (sub, dev string) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", ""
	}
	var c struct {
		Sub string `json:"sub"`
		Dev string `json:"dev"`
	}
	if json.Unmarshal(b, &c) != nil {
		return "", ""
	}
	return c.Sub, c.Dev
}
