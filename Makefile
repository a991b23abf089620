# The two commands users need: `make run` (set up and run the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run install test test-pg15 lint ci bench bench-incremental clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# scripts/install is the one install command: the Dockerfile runs it too (the image gets what
# `make` installs).
$(VENV)/.installed: pyproject.toml scripts/install | $(BIN)/python
	scripts/install $(BIN)/python
	touch $@

$(VENV)/.installed-dev: pyproject.toml scripts/install $(VENV)/.installed
	scripts/install $(BIN)/python dev
	touch $@

run: $(VENV)/.installed  ## set up and run the main job on the embedded warehouse
	$(BIN)/bankdw run

install: $(VENV)/.installed-dev  ## the project and its development tools in .venv

test: $(VENV)/.installed-dev  ## lint and run the whole suite
	$(BIN)/ruff check .
	$(BIN)/pytest

# The end-to-end tests again on PostgreSQL 15 (the embedded server is 16): the pipeline from
# source to gold, feed files (their type checks differ by version), contracts and quarantine,
# incremental builds and the version check. scripts/pg15-server starts a throwaway server from the
# Debian package and sets WAREHOUSE_URL and SOURCE_URL; conftest creates each scenario's databases
# on that server. `make test-pg15 PG15_TESTS=tests` runs the whole suite there.
PG15_BIN := /usr/lib/postgresql/15/bin
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PG15_TESTS ?= tests/test_pipeline.py tests/test_feeds.py tests/test_landing.py \
	tests/test_quarantine.py tests/test_batch_rules.py tests/test_incremental.py \
	tests/test_server_versions.py tests/test_contracts.py

test-pg15: $(VENV)/.installed-dev | $(PG15_BIN)/initdb  ## the end-to-end tests on PostgreSQL 15
	PG_BIN=$(PG15_BIN) scripts/pg15-server $(BIN)/pytest $(PG15_TESTS)

# A clean machine lacks the binaries: CI installs them rather than rely on a step done by hand.
$(PG15_BIN)/initdb:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What .github/workflows/ci.yml runs, here against an embedded Postgres in a temporary folder:
# ruff, the suite, `sqlmesh test`, and a plan into the environment `ci` diffed against prod.
ci: lint test
	scripts/ci-plan

clean:  ## stop the embedded server and remove local state
	-$(BIN)/bankdw db stop
	rm -rf .warehouse

bench: $(VENV)/.installed  ## rows/s and peak memory: our extraction vs a bare COPY pipe vs pandas
	$(BIN)/bankdw bench extraction $(ARGS)

bench-incremental: $(VENV)/.installed  ## the same one-day increment on 30 and 300 days of history
	$(BIN)/bankdw bench incremental $(ARGS)
