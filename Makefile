# One command surface. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := true
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format synth bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-layer.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The CopyBatch Lambda layer: arm64 / CPython 3.12 wheels of requirements-layer.txt (pip only, no Docker).
LAYER_DIR := build/lambda-layer
$(LAYER_DIR)/.installed: requirements-layer.txt | $(BIN)/python
	rm -rf $(LAYER_DIR)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
		--platform manylinux2014_aarch64 --implementation cp --python-version 3.12 \
		--target $(LAYER_DIR)/python -r requirements-layer.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed node_modules/.installed $(LAYER_DIR)/.installed

synth: setup
	npx --no-install cdk synth -q

demo: synth
	$(BIN)/python -m teacopy_local.demo $(DEMO_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# two runs: Lambda code is the package `shared` (asset root lambdas/), the CDK app imports it as `lambdas.shared`
	$(BIN)/mypy lambdas
	$(BIN)/mypy app.py stacks teacopy_local

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
