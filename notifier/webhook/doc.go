// Package webhook delivers push events to an operator's HTTP endpoint,
// signed so the receiver can check they come from this server: the generic
// alternative to Web Push (relay to APNs/FCM, SMS, e-mail, ...).
//
// # Wire format
//
// One POST per event, Content-Type application/json, body Event:
//
//	{"recipient":"bob","chat":"dm:alice:bob","seq":42,"sender":"alice",
//	 "preview":"see you at 6","ts":1700000000000,"devices":["phone"]}
//
// with the headers
//
//	X-Parley-Delivery:  <key>   the same for every retry of one event; dedupe on it
//	X-Parley-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// t is the time of the attempt, so a captured request cannot be replayed
// after the receiver's tolerance. Receivers call Verify with the raw body.
// Several v1= values may appear (secret rotation); one matching is enough.
//
// Answers: 2xx is delivered; 429, 5xx and network errors are retryable
// (Retry-After honoured by the caller); any other status is permanent.
//
// # Concurrency
//
// Client is safe for concurrent use; Sign and Verify are pure.
//
// Tier: notifier. Imports only internal/record of Parley's packages.
package webhook
