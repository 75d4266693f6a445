# herd — make targets. The README's two commands are `make run` and `make test`.
GO      ?= go
BIN     := $(CURDIR)/bin
export HERD_OLLAMA_BIN ?= $(BIN)/ollama

.PHONY: all build tools test test-short test-faults fuzz bench run lint vet fmt clean
FUZZTIME ?= 10s

all: build

build: ## build herd, dispatcher and worker into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

tools: ## install the tools the tests need into bin/ (once): the pinned Ollama, nats-server, nats CLI and promtool
	scripts/tools.sh ollama nats-server nats promtool

test: tools ## the full suite: unit, integration, and the real-Ollama tier
	HERD_REQUIRE_OLLAMA=1 $(GO) test -count=1 -timeout 15m ./...

test-faults: tools ## the multi-process fault suite: kills and starves each part under load; prints each scenario's ledger counts
	bash -o pipefail -c "HERD_FAULTS=1 HERD_REQUIRE_OLLAMA=1 $(GO) test -count=1 -timeout 20m -v ./internal/faults/ | grep -v -E '^(=== (RUN|PAUSE|CONT)|PASS$$)'"

test-short: ## unit and fake-backend tests only (no Ollama needed)
	$(GO) test -short -count=1 ./...

fuzz: ## run each fuzz target for FUZZTIME (default 10s); longer: make fuzz FUZZTIME=10m
	$(GO) test ./internal/request/ -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/request/ -run '^$$' -fuzz '^FuzzKey$$' -fuzztime $(FUZZTIME)

bench: tools ## the performance suite; prints ratios against baselines measured in the same run
	bash -o pipefail -c "HERD_BENCH=1 $(GO) test -count=1 -timeout 30m -run 'VsFloor|OllamaBench|Growth' -v ./internal/perf/ | grep -v -E '^(=== |    --- |--- |PASS|ok )'"

run: build ## herd up with the embedded default (managed Ollama serving herd-tiny); installs only the pinned Ollama it runs
	scripts/tools.sh ollama
	$(BIN)/herd up

lint: ## golangci-lint at the pinned version
	scripts/tools.sh golangci-lint
	$(BIN)/golangci-lint run ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)/herd $(BIN)/dispatcher $(BIN)/worker data
