// Package api holds Parley's machine-readable client contract, the
// documents a client author or a code generator starts from:
//
//   - asyncapi.json, an AsyncAPI 3.0 document of the WebSocket protocol:
//     every frame a client may send and every frame the server sends, as
//     JSON Schemas under components.schemas (ClientFrame and ServerFrame
//     dispatch on "type");
//   - openapi.json, an OpenAPI 3.1 document of the logic tier's HTTP API,
//     served at GET /v1/openapi.json.
//
// docs/protocol.md is the prose and says what the schemas cannot (order,
// idempotency, delivery). The documents are checked against what the
// server really sends: package apicheck validates every frame and response
// the e2e suite and the logic tests see, so the contract and the code
// cannot drift apart unnoticed.
//
// Tier: none (data only); imported by logic (to serve openapi.json) and by
// apicheck.
package api
