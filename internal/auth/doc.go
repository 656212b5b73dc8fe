// Package auth verifies and issues the JSON Web Tokens that authenticate
// clients at the WebSocket upgrade (connsrv) and on the HTTP API (logic).
// It is a leaf package shared by both tiers.
//
// A Verifier is immutable after construction and safe for concurrent use.
package auth
