package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/api/apicheck"
)

// Every WebSocket frame the suite's clients send and receive (through
// client.Config.Observe: observeContract) and every /v1 HTTP response it
// gets (through http.DefaultTransport) is checked against the contract in
// api/ (asyncapi.json, openapi.json). A mismatch fails the run in TestMain,
// naming the frame; the counts go to $PARLEY_CONTRACT_REPORT when set.
var contract struct {
	once sync.Once
	c    *apicheck.Checker
	err  error
	mu   sync.Mutex
	errs []string
}

func checker() *apicheck.Checker {
	contract.once.Do(func() { contract.c, contract.err = apicheck.New() })
	if contract.err != nil {
		panic(contract.err)
	}
	return contract.c
}

func contractFailed(err error) {
	contract.mu.Lock()
	defer contract.mu.Unlock()
	if len(contract.errs) < 50 {
		contract.errs = append(contract.errs, err.Error())
	}
}

// observeContract is a client.Config.Observe that checks every frame.
func observeContract(out bool, frame []byte) {
	var err error
	if out {
		err = checker().ClientFrame(frame)
	} else {
		err = checker().ServerFrame(frame)
	}
	if err != nil {
		contractFailed(err)
	}
}

// contractTransport checks the responses of the HTTP API (/v1/...).
type contractTransport struct{ base http.RoundTripper }

func (t contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/v1/") {
		return resp, err
	}
	body, rerr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if rerr != nil {
		return resp, nil // the caller sees the short body
	}
	if err := checker().HTTPResponse(req.Method, req.URL.Path, resp.StatusCode, resp.Header.Get("Content-Type"), body); err != nil {
		contractFailed(err)
	}
	return resp, nil
}

func TestMain(m *testing.M) {
	http.DefaultTransport = contractTransport{base: http.DefaultTransport}
	code := m.Run()
	contract.mu.Lock()
	errs := contract.errs
	contract.mu.Unlock()
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "contract: %d frame(s) or response(s) do not match api/*.json:\n  %s\n", len(errs), strings.Join(errs, "\n  "))
		code = 1
	}
	if c := contract.c; c != nil {
		line := fmt.Sprintf("contract: e2e validated %d client frames, %d server frames, %d HTTP responses against api/asyncapi.json and api/openapi.json (%d mismatches)\n",
			c.ClientFrames.Load(), c.ServerFrames.Load(), c.HTTPResponses.Load(), len(errs))
		fmt.Fprint(os.Stderr, line)
		if path := os.Getenv("PARLEY_CONTRACT_REPORT"); path != "" {
			if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
				_, _ = f.WriteString(line)
				_ = f.Close()
			}
		}
	}
	os.Exit(code)
}
