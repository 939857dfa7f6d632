# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

## run: set up, migrate, seed demo data once, create the admin once, summarize, serve
run: $(VENV)/.installed
	$(FLASK) migrate
	$(FLASK) seed-demo --if-empty
	$(FLASK) ensure-admin
	$(FLASK) activity backfill
	FLASK_ACTIVITY_BACKGROUND_TASKS=true $(FLASK) run --host $(HOST) --port $(PORT)

## test: set up with dev tools, lint, run the whole suite
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

## bench: the performance figures the issues ask for (not part of the tests)
bench: $(VENV)/.installed-dev
	@missed=""; for script in bench/bench_*.py; do \
	  echo "== $$script"; $(BIN)/python $$script || missed="$$missed $$script"; echo; \
	done; \
	if [ -n "$$missed" ]; then echo "Over target (see above):$$missed"; else echo "Every benchmark met its target."; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/artifacts
