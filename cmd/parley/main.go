// Command parley runs Parley's tiers and tools:
//
//	parley standalone   both tiers and the embedded store in one process
//	parley connsrv      the connection tier (WebSocket on gnet)
//	parley logic        the logic tier with its store
//	parley notifier     push notifications (Web Push, webhook) from Kafka
//	parley token        print a development JWT
//	parley certs        a fleet's tier-link CA and node certificates
//	parley chat         a terminal chat client
//	parley loadtest     a chat workload with latency histograms
//	parley bench        the connection-density harness
//
// Run "parley <command> -h" for a command's flags.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"standalone": runStandalone,
		"connsrv":    runConnsrv,
		"logic":      runLogic,
		"notifier":   runNotifier,
		"token":      runToken,
		"certs":      runCerts,
		"chat":       runChat,
		"loadtest":   runLoadtest,
		"bench":      runBench,
	}
	name := os.Args[1]
	run, ok := cmds[name]
	if !ok {
		if name != "-h" && name != "--help" && name != "help" {
			fmt.Fprintf(os.Stderr, "parley: unknown command %q\n", name)
		}
		usage()
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "parley %s: %v\n", name, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: parley <command> [flags]

commands:
  standalone  run both tiers and the embedded store in one process
  connsrv     run the connection tier
  logic       run the logic tier
  notifier    deliver push notifications from Kafka (Web Push, webhook)
  token       print a JWT for a user (HS256, or RS256/EdDSA with -key); -gen-key makes a key pair and JWKS
  certs       init a fleet CA, issue and revoke tier-link node certificates (mutual TLS)
  chat        chat in the terminal
  loadtest    generate a chat workload and measure latency
  bench       connection-density harness
`)
}
