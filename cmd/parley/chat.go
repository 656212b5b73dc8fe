package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
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
	device := fs.String("device", "terminal", "device id")
	token := fs.String("token", "", "JWT; default: ask the standalone node's /v1/dev/token")
	if err := fs.Parse(args); err != nil {
		return err
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
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", *wsURL, err)
	}
	defer c.Close()
	return term.Run(ctx, c, os.Stdin, os.Stdout)
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
