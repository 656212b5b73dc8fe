// Package pushtest is a real Web Push service for tests: an HTTP server on
// loopback that hands out subscriptions (Subscribe), checks every push the
// way a strict push service would, decrypts it with the subscription's
// private key, and records it. Tests of the notifier and the fleet
// integration tests push to it over real HTTP, so no part of the Web Push
// stack is mocked.
//
// On POST <endpoint> the server checks, in order: the endpoint exists
// (else 404); Authorization is "vapid t=<jwt>, k=<key>" with an ES256
// signature valid for k, aud equal to the server's origin, exp in the
// future and at most 24h ahead (else 401), and k equal to the expected key
// if SetVAPIDKey was called (else 403); a TTL header with a non-negative
// integer and Content-Encoding aes128gcm (else 400); the body decrypts
// per RFC 8291 (else 400). A request that fails a check is recorded in
// Rejected with the reason. A valid push then meets any failures queued
// by Fail (answered with that status, not recorded as received) and
// otherwise is recorded in Received and answered 201 Created.
//
// Concurrency: every method of Server is safe for concurrent use.
//
// Tier: notifier (test support). Do not use it in production code.
package pushtest
