// Package apicheck validates WebSocket frames and HTTP responses against
// Parley's contract (package api): tests call it on everything they see,
// so a frame or response the documents do not describe fails the test
// that saw it. The published schemas are open (unknown fields allowed);
// the Checker closes every object schema, so it also catches a field the
// documents do not name. Counts of what passed are kept for the report
// the e2e suite prints.
//
// Concurrency: a Checker is safe for concurrent use.
//
// Tier: test support; imports api and a JSON Schema validator
// (santhosh-tekuri/jsonschema). Never imported by a binary.
package apicheck
