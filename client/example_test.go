package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/parley-chat/parley/client"
)

func Example() {
	cfg := client.Default()
	cfg.URL = "ws://127.0.0.1:8080/ws"
	cfg.Token = "eyJ..." // a JWT for alice
	cfg.Device = "laptop"
	cfg.Resume = loadPositions() // what the last run handed to the app; nil at first

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	go func() {
		for m := range c.Messages() { // closed when the client stops
			fmt.Printf("[%s #%d] %s: %s\n", m.Chat, m.Seq, m.From, m.Body)
			// After processing: every message up to these positions is
			// done; the next run resumes right after them.
			savePositions(c.Positions())
		}
	}()
	if err := c.WaitSynced(ctx); err != nil { // everything missed is on Messages
		log.Print(err)
	}

	sent, err := c.SendTo(ctx, "bob", "hello")
	var perr *client.Error
	switch {
	case errors.As(err, &perr):
		log.Printf("server refused: %s (retryable %v)", perr.Code, perr.Retryable)
	case err != nil:
		log.Print(err)
	default:
		fmt.Println("sent", sent.Chat, sent.Seq)
	}
}

func loadPositions() map[string]uint64 { return nil }
func savePositions(map[string]uint64)  {}
