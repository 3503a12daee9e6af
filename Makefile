# weir — build, test and run the control plane locally.
#
#   make run           weir on the local AWS emulator with a demo job, watched
#                      until Ctrl-C, which stops everything it started
#   make test          gofmt, vet, staticcheck, and every test (race detector on)
#                      against the local AWS emulator, which it starts and stops,
#                      then the short fault campaigns (make chaos-short) and
#                      schemathesis against the config API (make api-fuzz)
#   make build         sam build: the Lambda functions' arm64 bootstraps under
#                      .aws-sam/build, offline, with the pinned SAM CLI
#   make api-fuzz      schemathesis (pinned) against the config API served
#                      locally from api/openapi.yaml, bounded in time
#   make emulator-up   start the local AWS emulator (moto) on 127.0.0.1:4566
#   make emulator-down stop it
#   make lint          gofmt, vet, staticcheck and cfn-lint of template.yaml
#   make bench         scale and cost benchmark (a few minutes): prints a table
#                      and writes bench/report.json; micro-benchmarks: make microbench
#   make fuzz          every fuzz target for FUZZTIME each (default 30s)
#   make chaos         a long fault campaign on the emulator (CHAOS_SEEDS,
#                      CHAOS_DURATION, CHAOS_JOBS); writes chaos/report.json
#   make localstack-up / localstack-down
#                      LocalStack in Docker with the same resources (optional)

SHELL := /bin/bash
GO ?= go
EMULATOR_PORT ?= 4566
EMULATOR := localstack/emulator.sh
CFN_LINT := .venv/emulator/bin/cfn-lint

# The SDK reads these; they point everything at the emulator.
export AWS_ENDPOINT_URL ?= http://127.0.0.1:$(EMULATOR_PORT)
export AWS_REGION ?= us-east-1
export AWS_ACCESS_KEY_ID ?= test
export AWS_SECRET_ACCESS_KEY ?= test

.PHONY: run localstack-up localstack-down test lint fmt-check vet staticcheck template-lint unit emulator-up emulator-down bench microbench build api-fuzz fuzz chaos chaos-short

# run builds and starts the emulator, the controller, the config API and
# the scheduler stand-in, creates the demo job and watches it; see
# scripts/run.sh for its settings (WEIR_API_PORT, WEIR_RUN_FOR, ...).
# Ctrl-C is how it ends: its exit status 130 is not a failure here.
run:
	@EMULATOR_PORT=$(EMULATOR_PORT) scripts/run.sh || [ $$? -eq 130 ]

# localstack-up starts LocalStack (Docker) with the stack's resources,
# created by its ready hook from template.yaml.
localstack-up:
	@mkdir -p bin/linux .localstack
	CGO_ENABLED=0 GOOS=linux GOARCH=$$($(GO) env GOARCH) $(GO) build -o bin/linux/weir-resources ./cmd/weir-resources
	EMULATOR_PORT=$(EMULATOR_PORT) docker compose -f localstack/compose.yaml up -d --wait
	@echo "LocalStack is up; run weir on it with: WEIR_EMULATOR=external AWS_ENDPOINT_URL=http://127.0.0.1:$(EMULATOR_PORT) make run"

localstack-down:
	EMULATOR_PORT=$(EMULATOR_PORT) docker compose -f localstack/compose.yaml down

# The end-to-end tests with time bounds (take-over within the lease, a
# failure ahead of the receive linger) run after the other tests, one
# package at a time, so that no other suite loads the emulator or the cores
# under their clocks. The short fault campaigns (docs/chaos.md) run last, on
# the emulator alone: at least 200 faults each, no violation, figures
# printed.
TIMED_PKGS = ./infra/e2e/...
test: lint
	@$(EMULATOR) up
	@set -o pipefail; status=0; \
	WEIR_INTEGRATION=1 $(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/infra/e2e') || status=$$?; \
	WEIR_INTEGRATION=1 $(GO) test -race -count=1 -p 1 $(TIMED_PKGS) || status=$$?; \
	$(CHAOS_SHORT) || status=$$?; \
	$(EMULATOR) down; exit $$status
	@$(MAKE) --no-print-directory api-fuzz

# build runs sam build with the SAM CLI pinned in tools/sam (its own venv:
# it needs a cfn-lint the emulator's pin excludes). GOFLAGS reaches SAM's go
# build: no RPC fallback in the Lambda library, no symbols, no local paths.
build:
	@tools/venv.sh sam tools/sam/requirements.txt
	SAM_CLI_TELEMETRY=0 GOFLAGS="-trimpath -tags=lambda.norpc -ldflags=-s" \
		.venv/sam/bin/sam build --template-file template.yaml --build-dir .aws-sam/build

api-fuzz:
	@tools/schemathesis/run.sh

lint: fmt-check vet staticcheck template-lint

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.venv/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change these files (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

# template-lint checks template.yaml (SAM transform included) with the
# pinned cfn-lint, offline.
template-lint:
	@$(EMULATOR) install
	$(CFN_LINT) template.yaml

# unit runs the tests that need no emulator.
unit:
	$(GO) test -race -count=1 ./...

# bench runs 1,000, 5,000 and 10,000 simulated jobs through the controller
# on in-memory ports, then the cost model; it stops by itself (BENCH_FLAGS
# passes options, e.g. BENCH_FLAGS='-jobs 1000 -window 10s').
bench:
	$(GO) run ./cmd/weir-bench -out bench/report.json $(BENCH_FLAGS)

microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./core/...

emulator-up:
	@$(EMULATOR) up

emulator-down:
	@$(EMULATOR) down

# FUZZ_TARGETS are package:FuzzFunc pairs. `go test` runs their committed
# seed corpora (testdata/fuzz) every time; `make fuzz` explores beyond them.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./core/protocol:FuzzDecode ./core/protocol:FuzzDecodeMatchesReference ./core/job:FuzzValidIDMatchesItsPattern ./infra/dynamo:FuzzDecodeItem ./infra/dynamo:FuzzStoreReads ./functions/configapi/httpapi:FuzzRequest

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; out=$$(mktemp); \
		if ! $(GO) test "$$pkg" -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) >"$$out" 2>&1; then \
			cat "$$out"; rm -f "$$out"; echo "fuzz: $$fn in $$pkg failed; the failing input is under $$pkg/testdata/fuzz/$$fn"; exit 1; \
		fi; \
		echo "fuzz: $$fn ($$pkg, $(FUZZTIME)): $$(grep -o 'execs: [0-9]*' "$$out" | tail -1 | cut -d' ' -f2) inputs run, none failed or hung"; \
		rm -f "$$out"; \
	done

# A long fault campaign per seed (docs/chaos.md). The defaults inject well
# over 1,000 faults; the report is chaos/report.json.
CHAOS_SEEDS ?= 1,2,3
CHAOS_DURATION ?= 2m
CHAOS_JOBS ?= 4
CHAOS_FLAGS ?=

chaos:
	@$(EMULATOR) up
	@status=0; \
	$(GO) run ./cmd/weir-chaos -seeds $(CHAOS_SEEDS) -duration $(CHAOS_DURATION) -jobs $(CHAOS_JOBS) $(CHAOS_FLAGS) || status=$$?; \
	$(EMULATOR) down; exit $$status

# chaos-short runs the two short campaigns (goroutine controllers, then
# weir-controller processes; at least 250 faults each, about three minutes
# together) as tests against the emulator; make test runs them too.
CHAOS_SHORT = WEIR_INTEGRATION=1 WEIR_CHAOS=1 $(GO) test -race -count=1 -run '^TestShort(Process)?Campaign$$' -v ./chaos

chaos-short:
	@$(EMULATOR) up
	@status=0; \
	$(CHAOS_SHORT) || status=$$?; \
	$(EMULATOR) down; exit $$status
