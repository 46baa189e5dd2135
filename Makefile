# streamlens — the two commands that matter: `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin
FUZZ_WIRE ?= 1500000x
FUZZ_TELEMETRY ?= 200000x
FUZZ_EVENT ?= 700000x
FUZZ_OTLP ?= 200000x
FUZZ_LIST ?= 200000x
FUZZ_OPENSLO ?= 20000x
FUZZ_EMF ?= 100000x
# A ring file per execution: about 400 a second.
FUZZ_RING ?= 8000x
# staticcheck, fetched through the Go module proxy at a pinned version.
STATICCHECK ?= v0.8.2
# Static, stripped and reproducible: no paths, no build id, no VCS stamp.
RELEASE_FLAGS := -trimpath -buildvcs=false -ldflags='-s -w -buildid='

.PHONY: demo test build vet portable fuzz bench generate layer reliability clean

build:
	$(GO) build -o $(BIN)/sandbox ./cmd/sandbox
	$(GO) build -o $(BIN)/demo ./cmd/demo
	$(GO) build -tags lambda.norpc -o $(BIN)/bootstrap ./examples/pricing
	CGO_ENABLED=0 $(GO) build $(RELEASE_FLAGS) -o $(BIN)/extensions/streamlens ./cmd/streamlens

# Builds, starts the local sandbox with the pricing function and the extension,
# fires invocations, prints the summary and writes out/dashboard.html, which
# headless Chromium then renders and checks (installed when missing and
# possible; skipped loudly otherwise).
demo: build
	@scripts/need-node-ric.sh
	$(BIN)/demo -bin $(BIN) -out out
	@scripts/need-chromium.sh
	@scripts/browser-check.sh out/dashboard.html

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags lambda.norpc ./examples/...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...
	@# The client is a module of its own (client/go.mod): ./... does not reach it.
	cd client && $(GO) vet ./... && $(GO) vet -tags streamlens_portable ./...
	cd client && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) ./...

# Runs every test (unit, end-to-end with the real binaries), then each fuzz
# target for a bounded time on top of its committed seed corpus.
test: vet build portable
	@scripts/need-chromium.sh
	@# AWS's Node runtime interface client, for the Node end-to-end tests
	@# (internal/e2e/node_test.go): cached in bin/node-ric, ~3 min the first time.
	@scripts/need-node-ric.sh
	$(GO) test -count=1 ./...
	@# The client is a module of its own (client/go.mod), outside ./... above.
	@# It runs on the function's goroutines and its own timer's: its tests
	@# again under the race detector.
	cd client && $(GO) test -count=1 ./...
	cd client && $(GO) test -race -count=1 ./...
	$(MAKE) fuzz
	scripts/tf-check.sh
	scripts/node-test.sh $(BIN)/extensions/streamlens

# The client builds wherever a function's developer runs go test (macOS,
# Windows, BSD) and with the oldest Go its go.mod declares, its portable
# socket passes the client's behaviour tests (selected on Linux with
# -tags streamlens_portable), and a function module outside the tree can
# use it as README says.
portable:
	@for t in darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64; do \
	  echo "build client, protocol, examples/pricing for $$t"; \
	  (cd client && GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./...) || exit 1; \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./protocol || exit 1; \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -tags lambda.norpc -o /dev/null ./examples/pricing || exit 1; \
	done
	@# The whole tree builds where a contributor works, the extension too
	@# (its event reader is a stub outside Linux, the sandbox Unix-only).
	@for t in darwin/arm64 windows/amd64; do \
	  echo "build ./... for $$t"; \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build ./... || exit 1; \
	done
	cd client && $(GO) vet -tags streamlens_portable ./...
	cd client && $(GO) test -count=1 -tags streamlens_portable ./...
	@# A go.mod's go line is what a module linking it is raised to: the lowest
	@# toolchain it names must build it (fetched through the module proxy).
	@# The client's (what a function imports) is far below the extension's.
	cd client && GOTOOLCHAIN=go$$(sed -n 's/^go //p' go.mod) $(GO) build ./...
	cd client && GOTOOLCHAIN=go$$(sed -n 's/^go //p' go.mod) $(GO) test -count=1 ./...
	GOTOOLCHAIN=go$$(sed -n 's/^go //p' go.mod) $(GO) build ./protocol
	GOTOOLCHAIN=go$$(sed -n 's/^go //p' go.mod) $(GO) build -tags lambda.norpc -o /dev/null ./examples/pricing
	GO=$(GO) scripts/client-module-check.sh

# The reliability and security tests with their figures (README "Reliability").
reliability:
	set -o pipefail; $(GO) test -count=1 -v -run 'Reliability|Security|Flood|Telemetry|Private|Loopback|DeadCollector|RuntimeDoneMissing|NextComesBeforeTheDeadline|ClosedOutput|InTheWay|KernelDrops|Redirect|Credentials|BudgetCut|Linear|LoseNoRecord' ./cmd/streamlens ./extension/... ./internal/e2e 2>&1 | grep -E 'figure:|^(--- |ok|FAIL)'

# Layer zips for both architectures (extensions/streamlens), reproducible:
# the same sources give the same zip bytes.
layer:
	@for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build $(RELEASE_FLAGS) -o $(BIN)/layer/$$arch/streamlens ./cmd/streamlens && \
	  $(GO) run ./cmd/layer -bin $(BIN)/layer/$$arch/streamlens -out dist/streamlens-layer-$$arch.zip || exit 1; \
	done

# Regenerates the Terraform modules from the metric definitions and slo/slos.json.
generate:
	$(GO) run ./cmd/streamlens-gen

# Every decoder of outside input, fuzzed on top of its committed seed corpus
# (testdata/fuzz/), 15 to 60 s each on 2 cores. Budgets are execution counts, not
# durations: go1.26's fuzz coordinator can fail a duration run with a bare
# "context deadline exceeded" and no crasher (golang/go#75804).
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZ_WIRE)
	$(GO) test ./extension/telemetry -run '^$$' -fuzz '^FuzzTelemetryBatch$$' -fuzztime $(FUZZ_TELEMETRY)
	$(GO) test ./extension/extapi -run '^$$' -fuzz '^FuzzDecodeEvent$$' -fuzztime $(FUZZ_EVENT)
	$(GO) test ./extension/otlpsink -run '^$$' -fuzz '^FuzzPartialSuccess$$' -fuzztime $(FUZZ_OTLP)
	$(GO) test ./extension/config -run '^$$' -fuzz '^FuzzParseList$$' -fuzztime $(FUZZ_LIST)
	$(GO) test ./slo -run '^$$' -fuzz '^FuzzParseOpenSLO$$' -fuzztime $(FUZZ_OPENSLO)
	$(GO) test ./extension/otlpsink -run '^$$' -fuzz '^FuzzDecodePartialSuccess$$' -fuzztime $(FUZZ_OTLP)
	$(GO) test ./extension/config -run '^$$' -fuzz '^FuzzRedactURL$$' -fuzztime $(FUZZ_LIST)
	$(GO) test ./emf -run '^$$' -fuzz '^FuzzAppendValue$$' -fuzztime $(FUZZ_EMF)
	$(GO) test ./extension/ingest -run '^$$' -fuzz '^FuzzRing$$' -fuzztime $(FUZZ_RING)

clean:
	rm -rf $(BIN) out dist

# Benchmarks: every figure is a ratio or a count from this one run (see
# bench/RESULTS.md). Takes about a minute with a warm module cache.
bench:
	@mkdir -p out
	@scripts/need-node-ric.sh
	cd client && $(GO) test -run '^$$' -bench . -benchmem . | tee ../out/bench.txt
	$(GO) test -run '^$$' -bench . -benchmem ./emf | tee -a out/bench.txt
	$(GO) test -run '^$$' -bench 'Ingest|Flush50|EMFBytes|Cardinality|Take' -benchmem -cpu 1 ./extension/state ./extension/emfsink ./extension/ingest | tee -a out/bench.txt
	$(GO) test -run '^$$' -bench SpanExport -benchtime 20x ./extension/otlpsink | tee -a out/bench.txt
	$(GO) test -run '^$$' -bench Scenario -benchtime 1x ./extension/ingest ./internal/e2e | tee -a out/bench.txt
	@echo; $(GO) run ./cmd/benchreport < out/bench.txt
