# Tessera: the two commands a newcomer needs are `make demo` and `make test`.
# Each sets everything up on a fresh clone (virtualenv, compiled core, buf CLI) first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tessera-installed
BUF    := node_modules/.bin/buf
PYTEST_ARGS ?=

.PHONY: setup demo up test test-core lint proto proto-check clean

setup: $(STAMP) $(BUF)

$(STAMP): pyproject.toml setup.py $(wildcard core_ext/*.pyx)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

$(BUF): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(BUF)

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

lint: setup
	cd proto && ../$(BUF) lint
	$(BIN)/python tools/gen_proto.py --check

## Regenerate tessera/**/*_pb2*.py from proto/.
proto: setup
	$(BIN)/python tools/gen_proto.py

clean:
	rm -rf build $(VENV) node_modules core_ext/*.c core_ext/*.so var
