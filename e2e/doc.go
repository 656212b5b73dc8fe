// Package e2e holds Parley's end-to-end tests: both tiers and the embedded
// store wired together over real sockets (in-process, as `parley
// standalone` wires them), driven by the Go client SDK and by raw
// WebSocket clients for malformed input, plus a crash test that SIGKILLs the
// real binary. It has no non-test code besides this comment.
package e2e
