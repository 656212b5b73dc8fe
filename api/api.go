package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the HTTP API (openapi.json).
//
//go:embed openapi.json
var OpenAPI []byte

// AsyncAPI is the AsyncAPI 3.0 document of the WebSocket protocol
// (asyncapi.json).
//
//go:embed asyncapi.json
var AsyncAPI []byte
