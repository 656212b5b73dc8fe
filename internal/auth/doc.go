// Package auth verifies and issues the JSON Web Tokens that authenticate
// clients at the WebSocket upgrade and on live connections (connsrv, the
// refresh frame) and on the HTTP API (logic). It is a leaf package shared
// by both tiers.
//
// Tokens are compact JWS signed with HS256 (a shared secret), RS256 (RSA
// keys of at least 2048 bits) or EdDSA (Ed25519). Config.Algorithms is the
// allow-list; a token's alg must be in it and match the type of the key
// it selects, so a public key is never used as an HMAC secret (algorithm
// confusion) and "none" is never accepted. Public keys come from PEM files
// (the kid is the file's base name), a JWKS file (re-read when it changes)
// and a JWKS URL (re-fetched every jwks_refresh, and at most every 10s
// when a token names an unknown kid, so a key rotation at the issuer is
// picked up without a restart). exp, nbf and iat must be JSON numbers, and
// a token may live at most Config.MaxLifetime (default 24h, exp - iat);
// Issue and IssueWith refuse to mint a longer one.
//
// Concurrency: a Verifier is safe for concurrent use. Verify never blocks
// on I/O (it may run on a gnet event loop): JWKS checks run in one
// background goroutine at a time, bounded by Config.JWKSTimeout, and swap
// in an immutable key snapshot. A Signer is immutable.
package auth
