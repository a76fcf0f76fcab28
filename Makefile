# uploadgate: build, run and test. `make help` lists the targets.

GO           ?= go
BIN          := bin/uploadgate
# The whole `go test` run must end well within the CI's 15 minutes.
TEST_TIMEOUT ?= 10m
# How much `make test` fuzzes each target: a number of inputs, not a duration,
# because a duration ends Go's fuzzing with "context deadline exceeded" when it
# expires in the middle of a slow input (`make fuzz FUZZTIME=10m` for longer).
FUZZTIME     ?= 2000x
# `make bench BENCH_FLAGS='-big-size 256MiB -rounds 3'`; `bin/ulbench run -h` lists the flags.
BENCH_FLAGS  ?= -rounds 5 -s3-size 512MiB
# `make bench SOAK_FLAGS='-uploads 100000'`; `bin/ulbench soak -h` lists the flags.
SOAK_FLAGS   ?=
GOBIN_DIR    := $(shell d=$$($(GO) env GOBIN); [ -n "$$d" ] || d=$$($(GO) env GOPATH)/bin; echo "$$d")
STATICCHECK  := $(GOBIN_DIR)/staticcheck
# Tools installed with `go install` (versitygw) must be found by the tests.
export PATH := $(GOBIN_DIR):$(PATH)

.DEFAULT_GOAL := help
# The steps of `make test` depend on each other (deps before lint before tests).
.NOTPARALLEL:

.PHONY: help build run test lint deps fmt-check vet staticcheck clean fuzz bench faults

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The same static binary as the container image (Dockerfile), with the version
# from git.
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build: ## build bin/uploadgate: static (CGO_ENABLED=0, -trimpath), as in the image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/uploadgate

run: build ## build, then serve on 127.0.0.1:8080 with files under ./data and the demo pages at /demo/
	$(BIN) serve --listen 127.0.0.1:8080 --data-dir ./data --demo-ui

test: deps lint ## install test dependencies, lint, run every test with the race detector, then each fuzz target for FUZZTIME
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	@$(MAKE) --no-print-directory fuzz

lint: fmt-check vet staticcheck ## gofmt check, go vet and staticcheck

deps: ## install what the tests need (Node.js, npm packages, staticcheck); idempotent
	scripts/install-test-deps.sh

fmt-check: ## fail listing the Go files that gofmt would change
	@files=$$(find . \( -name node_modules -o -name '.?*' -o -path ./data -o -path ./bin \) \
		-prune -o -name '*.go' -type f -print | xargs -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed for:"; echo "$$files"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

staticcheck: ## staticcheck ./... (installs the pinned version first)
	@scripts/install-test-deps.sh lint
	$(STATICCHECK) ./...

fuzz: ## run every fuzz target for FUZZTIME (seed corpora in <package>/testdata/fuzz)
	@set -e; for d in $$(grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$d/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$d $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$d; \
		done; \
	done

bench: build ## benchmarks against stock tusd, io.Copy and direct S3 clients, the goals they meet, the session store's bytes per upload and a 50,000-upload soak (docs/performance.md)
	$(GO) build -o bin/ulbench ./cmd/ulbench
	bin/ulbench run -uploadgate $(BIN) $(BENCH_FLAGS)
	$(GO) test -count=1 -run 'Footprint|HistoryBound' -v ./auth/pebblestore ./auth/redisstore
	bin/ulbench soak -uploadgate $(BIN) -redis $(SOAK_FLAGS)

faults: build ## fault suite against the binary: SIGKILL and resume, 1,000 uploads, slowloris, full disk
	$(GO) build -o bin/ulbench ./cmd/ulbench
	bin/ulbench faults -uploadgate $(BIN)

clean: ## remove bin/ (./data is left alone)
	rm -rf bin
