# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app
HOST ?= 127.0.0.1
PORT ?= 5000
MIN_VENV := .venv-min

.PHONY: run test test-min lint bench bench-peers package clean

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
	$(FLASK) activity migrate
	$(FLASK) seed-demo --if-empty
	$(FLASK) ensure-admin
	$(FLASK) activity backfill
	FLASK_ACTIVITY_BACKGROUND_TASKS=true $(FLASK) run --host $(HOST) --port $(PORT)

## test: set up with dev tools, lint, run the whole suite on SQLite, then again on PostgreSQL
## (TEST_POSTGRES_URL, default the local server; that run is skipped when none answers, unless REQUIRE_POSTGRES=1)
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	@if [ "$(REQUIRE_POSTGRES)" = "1" ] || $(BIN)/python tests/postgres_support.py; then \
	  $(BIN)/python -m pytest --backend=postgresql; \
	else echo "No PostgreSQL answers at $${TEST_POSTGRES_URL:-the local server}: the PostgreSQL run is skipped."; fi

$(MIN_VENV)/.installed: requirements-min.txt
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/pip install --quiet -r requirements-min.txt
	touch $@

## test-min: the suite on the lowest versions the package declares, on SQLite (without the browser and
## packaging tests: playwright and build are not there; nor the gunicorn hosts: CI pins one gunicorn for both runs)
test-min: $(MIN_VENV)/.installed
	REQUIRE_BROWSER= $(MIN_VENV)/bin/python -m pytest --ignore=tests/test_activity_dashboard.py \
	  --ignore=tests/test_packaging.py --ignore=tests/test_multiworker.py --ignore=tests/test_several_hosts.py

## package: build the sdist and wheel, and install the wheel into a fresh venv
package: $(VENV)/.installed-dev
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m pytest -q tests/test_packaging.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

## bench: the performance figures the issues ask for (not part of the tests)
bench: $(VENV)/.installed-dev
	@missed=""; for script in bench/bench_*.py; do \
	  echo "== $$script"; $(BIN)/python $$script || missed="$$missed $$script"; echo; \
	done; \
	if [ -n "$$missed" ]; then echo "Over target (see above):$$missed"; else echo "Every benchmark met its target."; fi

PEERS_VENV := .venv-peers

$(PEERS_VENV)/.installed: bench/requirements-peers.txt
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install --quiet -r bench/requirements-peers.txt
	touch $@

## bench-peers: score statsforecast's AutoETS and MSTL and Prophet on the forecast benchmark's protocol
## (several minutes; writes bench/forecast_peers.json, which `make bench` compares against)
bench-peers: $(PEERS_VENV)/.installed
	$(PEERS_VENV)/bin/python bench/peers_forecast.py

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache .ruff_cache tests/artifacts dist build *.egg-info
