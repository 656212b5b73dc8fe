// Package webpush sends Web Push messages: RFC 8030 (the HTTP push
// protocol), RFC 8291 (message encryption, with the aes128gcm content
// coding of RFC 8188) and RFC 8292 (VAPID, voluntary application server
// identification). It is what the notifier uses to reach browsers and
// UnifiedPush distributors, and what notifier/pushtest checks against.
//
// # Flow
//
// A user agent subscribes at its push service and hands the application
// server (us) the subscription: an endpoint URL, its P-256 public key
// (p256dh) and a 16-byte auth secret (record.PushSubscription). To push,
// Sender.Send
//
//  1. encrypts the payload (Encrypt): an ephemeral P-256 key pair and a
//     random 16-byte salt per message; ECDH with the user agent's key;
//     IKM = HKDF-SHA256(salt=auth, ikm=ecdh secret, info="WebPush: info"
//     0x00 ua_public as_public, 32 bytes); CEK = HKDF(salt, IKM,
//     "Content-Encoding: aes128gcm" 0x00, 16) and NONCE = HKDF(salt, IKM,
//     "Content-Encoding: nonce" 0x00, 12); one AES-128-GCM record of
//     plaintext || 0x02 (the last-record padding delimiter);
//  2. signs a VAPID JWT (ES256; aud = scheme://host of the endpoint;
//     exp at most 24h ahead; sub = the operator's mailto: or https:
//     contact) and sends `Authorization: vapid t=<jwt>, k=<public key>`;
//  3. POSTs the body with TTL, Urgency and optionally Topic headers and
//     maps the answer to a typed Result (Outcome).
//
// The body layout (RFC 8188 section 2.1, with RFC 8291's key id):
//
//	salt    16 bytes
//	rs       4 bytes  big-endian record size (4096)
//	idlen    1 byte   = 65
//	keyid   65 bytes  the application server's ephemeral public key (uncompressed point)
//	record           AES-128-GCM(plaintext || 0x02) || 16-byte tag
//
// A message is one record, so the plaintext is at most MaxPayload bytes
// (the whole body then fits the 4096 bytes every push service accepts).
//
// # Outcomes
//
//	Delivered  2xx (201 Created is the RFC's answer)
//	Gone       404, 410: the subscription is dead; delete it
//	Retryable  429 (with Retry-After), 5xx, network errors, a done ctx
//	Permanent  any other status (400, 403, 413, ...), or a message or
//	           subscription we cannot even encode: retrying cannot help
//
// # Concurrency
//
// VAPID and Sender are safe for concurrent use; Sender caches one VAPID
// token per audience (push service origin) and renews it before expiry.
// Encrypt, Decrypt and the token functions are pure.
//
// Only the Go standard library is used (crypto/ecdh, crypto/ecdsa,
// crypto/hkdf, crypto/aes, crypto/cipher).
//
// Tier: notifier. Imports only internal/record of Parley's packages.
package webpush
