package logic

import (
	"sync"
	"testing"

	"github.com/parley-chat/parley/api/apicheck"
)

// The contract (api/asyncapi.json, api/openapi.json) every frame the fake
// connection node receives is checked against.
var contractOnce struct {
	sync.Once
	c   *apicheck.Checker
	err error
}

func contract(t *testing.T) *apicheck.Checker {
	contractOnce.Do(func() { contractOnce.c, contractOnce.err = apicheck.New() })
	if contractOnce.err != nil {
		t.Fatal(contractOnce.err)
	}
	return contractOnce.c
}
