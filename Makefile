# Latch: one Makefile for building, testing, benchmarking and the demo.
# `sudo make test` and `sudo make demo` work on a fresh Debian machine with
# Go; targets install the Debian packages they need.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/latchnet/latch/cli.Version=$(VERSION)
BIN     := bin/latch
FUZZTIME ?= 15s

# Debian packages the targets need: ip, wg, ping and nc for the tests and
# the demo, shellcheck for the scripts (later issues add clang, chromium,
# postgresql, ...).
DEB_PACKAGES ?= iproute2 wireguard-tools iputils-ping netcat-openbsd shellcheck

.PHONY: all build deps test lint unit fuzz bench demo clean

all: build

build: $(BIN)

$(BIN): $(shell find . -name '*.go' -not -path './bin/*') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/latch

# deps installs the missing Debian packages in DEB_PACKAGES.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# test is what CI runs (.ci/run): formatting, vet, every test, a fuzz smoke run.
test: deps lint unit fuzz

lint:
	@unformatted="$$(gofmt -l $$(find . -name '*.go' -not -path './bin/*'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod verify >/dev/null
	shellcheck scripts/*.sh

unit:
	$(GO) test -count=1 -timeout 20m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./policy

# bench runs every Go benchmark; figures go to docs/benchmarks.md.
BENCHTIME ?= 5s
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count 1 -timeout 60m ./... | tee bench.out

# demo runs a coordinator and four nodes in network namespaces with the
# sample policy and prints the measured connectivity matrix beside the
# predicted one; it stays up until Ctrl-C (DEMO_HOLD=0: exit at once).
demo: deps build
	@echo "== latch policy eval: examples/policy.yaml over examples/inventory.yaml (baseline deny)"
	@$(BIN) policy eval --inventory examples/inventory.yaml --policy examples/policy.yaml
	BIN=$(BIN) ./scripts/demo.sh

clean:
	rm -rf bin bench.out
