# Set-up and everyday commands. `make run` serves the site on the embedded defaults;
# `make test` runs the whole suite. Both install what they need into .venv first.

VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

# The first interpreter that is Python >= 3.12: on PATH, then pyenv's builds.
PYTHON_CANDIDATES := python3.13 python3.12 python3 \
	$(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3) \
	$(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3)
FIND_PYTHON = for p in $(PYTHON_CANDIDATES); do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$p; exit 0; }; \
	done; exit 1

.PHONY: run serve test test-fast lint fmt audit migrate superuser clean

$(PY):
	@py=$$($(FIND_PYTHON)) || { echo "error: Python >= 3.12 is required (Django 6.1 needs it)." \
	  "Install python3.12 or python3.13, or a pyenv build, and run make again." >&2; exit 1; }; \
	echo "Creating $(VENV) with $$py"; $$py -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py migrate --no-input
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(PY) manage.py runserver $${PORT:-127.0.0.1:8000}

# Production (docs/deploy.md): migrate, collect the static files, then WEB_CONCURRENCY
# uvicorn workers on HOST:PORT (chatsite/serve.py). Set DJANGO_ENV=production and the rest.
serve: $(VENV)/.installed-run
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input
	exec $(PY) -m chatsite.serve

# The real third-party clients the tests drive (the openai npm package), from the lockfile.
NODE_CLIENTS := tests/node/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

test: $(VENV)/.installed-dev $(NODE_CLIENTS)
	$(BIN)/pytest $(PYTEST_ARGS)

# The edit loop: everything but the browser, soak and nginx tests (a minute, not four).
test-fast: $(VENV)/.installed-dev $(NODE_CLIENTS)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# What CI fails on besides the tests: lint, formatting and types (mypy, strict).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Known vulnerabilities in the installed dependencies, from PyPI's advisories (the project
# itself is installed editable, so it is not looked up). AUDIT_ARGS: more pip-audit options.
audit: $(VENV)/.installed-dev
	$(BIN)/pip-audit --skip-editable --progress-spinner off $(AUDIT_ARGS)

clean:
	rm -rf $(VENV) *.egg-info

# The streaming benchmark (docs/performance.md): BENCH_SCALE=small for a quick run.
# `bench` stores its figures in bench/baseline.json; `bench-check` fails on a regression.
BENCH_SCALE ?= full

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed-run

.PHONY: bench bench-check bench-sweep
bench: $(VENV)/.installed-bench
	$(PY) -m bench.run --scale $(BENCH_SCALE) --write-baseline

bench-check: $(VENV)/.installed-bench
	$(PY) -m bench.run --scale $(BENCH_SCALE) --check

# Cost as work grows: the peers and the project at rising numbers of active and quiet
# streams; PNG plots in bench/out/plots/. On PostgreSQL with BENCH_DATABASE_URL set.
bench-sweep: $(VENV)/.installed-bench
	$(PY) -m bench.run --scale $(BENCH_SCALE) --only sweep

# The soak test (tests/soak.py, docs/reliability.md) at full size; CI runs it reduced, as
# part of `make test`. Writes its figures to SOAK_REPORT.
SOAK_CONCURRENCY ?= 200
SOAK_USERS ?= 20
SOAK_WARMUP ?= 30
SOAK_DURATION ?= 180
SOAK_REPORT ?= artifacts/soak-full.json

.PHONY: soak
soak: $(VENV)/.installed-dev
	SOAK_CONCURRENCY=$(SOAK_CONCURRENCY) SOAK_USERS=$(SOAK_USERS) SOAK_WARMUP=$(SOAK_WARMUP) \
	  SOAK_DURATION=$(SOAK_DURATION) SOAK_REPORT=$(SOAK_REPORT) \
	  $(BIN)/pytest -q -s tests/test_soak.py
