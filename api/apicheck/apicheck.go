package apicheck

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/parley-chat/parley/api"
)

const (
	asyncURL   = "https://parley.invalid/api/asyncapi.json"
	openapiURL = "https://parley.invalid/api/openapi.json"
)

// Checker validates frames and responses. Safe for concurrent use.
type Checker struct {
	client, server *jsonschema.Schema
	apiError       *jsonschema.Schema // components.schemas.Error of openapi.json
	openapi        map[string]any     // the parsed document, for looking up routes
	compiler       *jsonschema.Compiler
	mu             sync.Mutex
	responses      map[string]*jsonschema.Schema // "METHOD path status" -> schema

	// Counts of what was validated (and passed).
	ClientFrames, ServerFrames, HTTPResponses atomic.Int64
}

// New compiles the contract.
func New() (*Checker, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	docs := map[string][]byte{asyncURL: api.AsyncAPI, openapiURL: api.OpenAPI}
	var openapi map[string]any
	for url, b := range docs {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("cannot parse %s: %w", url, err)
		}
		strict(doc)
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("cannot load %s: %w", url, err)
		}
		if url == openapiURL {
			openapi, _ = doc.(map[string]any)
		}
	}
	ch := &Checker{compiler: c, openapi: openapi, responses: map[string]*jsonschema.Schema{}}
	var err error
	if ch.client, err = c.Compile(asyncURL + "#/components/schemas/ClientFrame"); err != nil {
		return nil, fmt.Errorf("cannot compile ClientFrame: %w", err)
	}
	if ch.server, err = c.Compile(asyncURL + "#/components/schemas/ServerFrame"); err != nil {
		return nil, fmt.Errorf("cannot compile ServerFrame: %w", err)
	}
	if ch.apiError, err = c.Compile(openapiURL + "#/components/schemas/Error"); err != nil {
		return nil, fmt.Errorf("cannot compile Error: %w", err)
	}
	// Every response schema compiles (a broken $ref fails here, not in the
	// middle of a test).
	paths, _ := openapi["paths"].(map[string]any)
	for p, item := range paths {
		ops, _ := item.(map[string]any)
		for method, op := range ops {
			if method == "parameters" {
				continue
			}
			resps, _ := op.(map[string]any)["responses"].(map[string]any)
			for status := range resps {
				if _, err := ch.responseSchema(strings.ToUpper(method), p, status); err != nil {
					return nil, err
				}
			}
		}
	}
	return ch, nil
}

// strict makes the published (open) schemas strict for the check: every
// object schema under components.schemas with "properties" refuses other
// fields, so a field the server sends and the documents do not name
// fails the test that saw it. The dispatchers (ClientFrame, ServerFrame)
// and the subschemas of if, not and the like are left as they are.
func strict(doc any) {
	m, _ := doc.(map[string]any)
	comps, _ := m["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	for name, s := range schemas {
		if name != "ClientFrame" && name != "ServerFrame" {
			closeObject(s)
		}
	}
}

func closeObject(s any) {
	m, ok := s.(map[string]any)
	if !ok {
		return
	}
	if props, ok := m["properties"].(map[string]any); ok {
		if _, set := m["additionalProperties"]; !set {
			m["additionalProperties"] = false
		}
		for _, p := range props {
			closeObject(p)
		}
	}
	closeObject(m["items"])
}

// ClientFrame validates a frame a client sent.
func (c *Checker) ClientFrame(frame []byte) error {
	if err := validate(c.client, frame); err != nil {
		return fmt.Errorf("client frame %s does not match asyncapi.json ClientFrame: %w", trunc(frame), err)
	}
	c.ClientFrames.Add(1)
	return nil
}

// ServerFrame validates a frame the server sent.
func (c *Checker) ServerFrame(frame []byte) error {
	if err := validate(c.server, frame); err != nil {
		return fmt.Errorf("server frame %s does not match asyncapi.json ServerFrame: %w", trunc(frame), err)
	}
	c.ServerFrames.Add(1)
	return nil
}

// HTTPResponse validates a JSON response of the HTTP API: the route (path
// with its parameters, e.g. /v1/chats/dm:a:b/messages) and status must be
// in openapi.json, and a JSON body must match the schema given for them. A
// path or method the document does not list must be answered 404 or 405
// with the API's error object.
func (c *Checker) HTTPResponse(method, path string, status int, contentType string, body []byte) error {
	tmpl := c.route(path)
	if tmpl == "" || !c.hasMethod(tmpl, method) {
		if status != 404 && status != 405 {
			return fmt.Errorf("%s %s: not in openapi.json, answered %d (want 404 or 405)", method, path, status)
		}
		if err := validate(c.apiError, body); err != nil {
			return fmt.Errorf("%s %s %d: body %s is not the error object: %w", method, path, status, trunc(body), err)
		}
		c.HTTPResponses.Add(1)
		return nil
	}
	sch, err := c.responseSchema(method, tmpl, fmt.Sprint(status))
	if err != nil && c.hasResponse(method, tmpl, "default") && status >= 400 {
		sch, err = c.responseSchema(method, tmpl, "default")
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if sch != nil && strings.HasPrefix(contentType, "application/json") {
		if err := validate(sch, body); err != nil {
			return fmt.Errorf("%s %s %d: body %s does not match openapi.json: %w", method, path, status, trunc(body), err)
		}
	}
	c.HTTPResponses.Add(1)
	return nil
}

func (c *Checker) hasResponse(method, tmpl, status string) bool {
	paths, _ := c.openapi["paths"].(map[string]any)
	item, _ := paths[tmpl].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	resps, _ := op["responses"].(map[string]any)
	return resps[status] != nil
}

func (c *Checker) hasMethod(tmpl, method string) bool {
	paths, _ := c.openapi["paths"].(map[string]any)
	item, _ := paths[tmpl].(map[string]any)
	return item[strings.ToLower(method)] != nil
}

// route returns the openapi.json path template that path matches.
func (c *Checker) route(path string) string {
	paths, _ := c.openapi["paths"].(map[string]any)
	parts := strings.Split(path, "/")
	for tmpl := range paths {
		t := strings.Split(tmpl, "/")
		if len(t) != len(parts) {
			continue
		}
		ok := true
		for i := range t {
			if !strings.HasPrefix(t[i], "{") && t[i] != parts[i] {
				ok = false
				break
			}
		}
		if ok {
			return tmpl
		}
	}
	return ""
}

// responseSchema compiles (once) the JSON schema of a route's response;
// nil when the response has no JSON body.
func (c *Checker) responseSchema(method, tmpl, status string) (*jsonschema.Schema, error) {
	key := method + " " + tmpl + " " + status
	c.mu.Lock()
	defer c.mu.Unlock()
	if sch, ok := c.responses[key]; ok {
		return sch, nil
	}
	paths, _ := c.openapi["paths"].(map[string]any)
	item, _ := paths[tmpl].(map[string]any)
	op, _ := item[strings.ToLower(method)].(map[string]any)
	if op == nil {
		return nil, fmt.Errorf("method %s of %s not in openapi.json", method, tmpl)
	}
	resps, _ := op["responses"].(map[string]any)
	resp, _ := resps[status].(map[string]any)
	if resp == nil {
		return nil, fmt.Errorf("status %s of %s %s not in openapi.json", status, method, tmpl)
	}
	var sch *jsonschema.Schema
	if content, _ := resp["content"].(map[string]any); content != nil && content["application/json"] != nil {
		ptr := "#/paths/" + escape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + status + "/content/application~1json/schema"
		var err error
		if sch, err = c.compiler.Compile(openapiURL + ptr); err != nil {
			return nil, fmt.Errorf("cannot compile the schema of %s: %w", key, err)
		}
	}
	c.responses[key] = sch
	return sch, nil
}

// escape escapes a JSON pointer token (RFC 6901) and makes it a URL
// fragment.
func escape(s string) string {
	s = strings.ReplaceAll(s, "~", "~0")
	s = strings.ReplaceAll(s, "/", "~1")
	s = strings.ReplaceAll(s, "{", "%7B")
	return strings.ReplaceAll(s, "}", "%7D")
}

func validate(sch *jsonschema.Schema, b []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}

func trunc(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
