# Parley — run `make help` for the targets.
GO        ?= go
FUZZTIME  ?= 100000x
STATICCHECK_VERSION ?= v0.8.2
GOBIN     := $(shell $(GO) env GOPATH)/bin
CONTRACT_REPORT := $(CURDIR)/.contract-report

.PHONY: help run web build fmt vet lint test test-race test-integration test-web fuzz bench check clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## run the standalone system (both tiers + embedded store + web client) on localhost
	@$(MAKE) --no-print-directory web || echo "web client not built (needs Node.js 20+ and npm); the servers run without it"
	$(GO) run ./cmd/parley standalone -config configs/standalone.yaml

web: ## build the web client into web/dist (needs Node.js 20+ and npm)
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build

build: ## build bin/parley
	$(GO) build -o bin/parley ./cmd/parley

fmt: ## gofmt the tree
	gofmt -s -w $$(git ls-files '*.go')

vet: ## go vet
	$(GO) vet ./...

lint: ## staticcheck (installed into GOPATH/bin on first use)
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

test: ## unit, end-to-end and crash tests
	$(GO) test -count=1 ./...

test-race: ## the tests under the race detector (prints how many frames and responses e2e checked against api/)
	@rm -f $(CONTRACT_REPORT)
	PARLEY_CONTRACT_REPORT=$(CONTRACT_REPORT) $(GO) test -race -count=1 ./...
	@cat $(CONTRACT_REPORT) 2>/dev/null || true

test-integration: ## CQL backend and e2e/chaos on a real Cassandra 5 that the script fetches and starts
	bash scripts/test-integration.sh

test-web: ## web client: SDK unit tests and Playwright tests in Debian's Chromium (installed if missing)
	bash scripts/web-test.sh

fuzz: ## run every fuzz target for FUZZTIME each
	bash scripts/fuzz.sh $(FUZZTIME)

bench: ## hot-path benchmarks (short)
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./connsrv/... ./internal/... ./storage/... ./logic/...

check: ## what CI runs: gofmt check, vet, staticcheck, race tests, integration tests on real services, browser tests, short fuzzing
	@test -z "$$(gofmt -s -l $$(git ls-files '*.go'))" || { gofmt -s -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(MAKE) vet lint test-race test-integration test-web fuzz

clean: ## remove build output and the standalone data dir
	rm -rf bin parley-data web/dist
