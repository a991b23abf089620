# The two commands users need: `make run` (set up and run the main job) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/.installed  ## set up and run the main job on the embedded warehouse
	$(BIN)/bankdw run

test: $(VENV)/.installed-dev  ## lint and run the whole suite
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:  ## stop the embedded server and remove local state
	-$(BIN)/bankdw db stop
	rm -rf .warehouse

bench: $(VENV)/.installed  ## rows/s and peak memory: our extraction vs a bare COPY pipe vs pandas
	$(BIN)/python -m flows.bench $(ARGS)
