package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/parley-chat/parley/internal/auth"
)

func runToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	user := fs.String("user", "", "user id (required)")
	device := fs.String("device", "", "device id to embed (optional)")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	cfg, done, err := loadConfig(fs, args, "", func(c *fileConfig) error { return c.Auth.Validate() })
	if err != nil || done {
		return err
	}
	if *user == "" {
		return fmt.Errorf("-user is required")
	}
	tok, err := auth.Issue(cfg.Auth, *user, *device, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
