# async-request developer commands. `make help` lists them.
# Everything runs from the project's virtualenv (.venv), created on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
PYTEST_ARGS ?=
# `make test-postgres` uses DATABASE_URL, or this server when it is unset.
PG_URL := $(or $(DATABASE_URL),postgresql://root@127.0.0.1:5432/test)
# The sample on PostgreSQL: what touches the database (transport and fault tests do not differ).
PG_TESTS ?= tests/sample tests/integration/test_e2e.py tests/integration/test_stack.py
BENCH ?= $(wildcard bench/*.py)
# `make test-kafka`: the tests that run against one Apache Kafka node (tools/apache_kafka.py),
# the soak on it, and the broker failover on a 3-node cluster of its own (test_failover.py,
# skipped by plain `make test`).
KAFKA_TESTS ?= tests/integration/transport tests/integration/test_e2e.py \
	tests/integration/test_soak.py tests/integration/test_failover.py
JS := clients/js
# The checksum of package-lock.json that node_modules was installed from (as $(STAMP) does).
JS_STAMP := $(JS)/node_modules/.install-stamp

.DEFAULT_GOAL := help
.PHONY: help install run sample stop worker test test-long test-postgres test-kafka kafka-fetch lint typecheck check \
	bench test-js test-browser js-build screenshot

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## create .venv and pip install -e ".[dev]" (again only when pyproject.toml changes)
	@if [ ! -x $(PY) ]; then \
		$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
			|| { echo "async-request needs Python >= 3.11: make PYTHON=python3.11 ..."; exit 1; }; \
		echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV); \
	fi
	@# The stamp holds a checksum of pyproject.toml, not a time: a checkout, a rebase or a
	@# copy can leave pyproject.toml older than the stamp while its content changed.
	@# Our distribution was called async-request before (PyPI's async-request is another
	@# package that also installs `async_request`): drop that install so only one owns it.
	@if [ "$$(cat $(STAMP) 2>/dev/null)" != "$$(cksum < pyproject.toml)" ]; then \
		$(PY) -m pip uninstall -y -q async-request 2>/dev/null || true; \
		echo "$(PY) -m pip install --no-input -e \".[dev]\""; \
		$(PY) -m pip install --no-input -e ".[dev]" && cksum < pyproject.toml > $(STAMP); \
	fi

run: install ## start broker, Redis, web app, worker, Flower in the foreground (Ctrl-C stops all)
	$(PY) tools/devstack.py

sample: run ## the sample project with everything it needs (same as run)

stop: ## stop the stack started by `make run` (from another terminal)
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) tools/devstack.py stop

worker: install ## one more Celery worker in the foreground, against the running `make run` stack
	$(PY) tools/devstack.py worker

test: install js-build ## run the test suite (live broker, Redis, worker, web app started by fixtures)
	$(PY) -m pytest $(PYTEST_ARGS)

test-long: install ## the suites of minutes left out of `make test`: faults, chaos, soak, the launcher (pytest --long=only)
	$(PY) -m pytest --long=only $(PYTEST_ARGS)

test-postgres: install ## sample + end-to-end tests on PostgreSQL (DATABASE_URL, default postgresql://root@127.0.0.1:5432/test)
	@if $(PY) -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=3).close()' \
		'$(PG_URL)' 2>/dev/null; then \
		echo "DATABASE_URL=$(PG_URL) $(PY) -m pytest $(PG_TESTS) $(PYTEST_ARGS)"; \
		DATABASE_URL='$(PG_URL)' $(PY) -m pytest $(PG_TESTS) $(PYTEST_ARGS); \
	else \
		echo "make test-postgres: PostgreSQL does not answer at $(PG_URL); skipped" \
			"(start one or set DATABASE_URL)"; \
	fi

kafka-fetch: install ## fetch Apache Kafka 4.x with Maven into ~/.cache/async-request (once)
	$(PY) tools/apache_kafka.py fetch

test-kafka: kafka-fetch ## transport, end-to-end, soak and broker-failover tests on Apache Kafka (AR_TEST_KAFKA=apache)
	AR_TEST_KAFKA=apache $(PY) -m pytest --long=also $(KAFKA_TESTS) $(PYTEST_ARGS)

test-js: js-build ## the JS client's build, size check and unit tests under Node (also in `make test`)
	node --test $(JS)/test/

js-build: ## clients/js/dist/async-request.min.js; fails over 5 kB min+gzip (npm ci, esbuild; in `make test`)
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "make js-build: no npm on PATH, so the JS client's build and size check are" \
			"SKIPPED (install Node.js >= 18 with npm, e.g. apt-get install nodejs npm)"; \
		exit 0; \
	fi; \
	if [ "$$(cat $(JS_STAMP) 2>/dev/null)" != "$$(cksum < $(JS)/package-lock.json)" ]; then \
		echo "cd $(JS) && npm ci --no-audit --no-fund --ignore-scripts"; \
		(cd $(JS) && npm ci --no-audit --no-fund --ignore-scripts) || exit 1; \
		cksum < $(JS)/package-lock.json > $(JS_STAMP); \
	fi; \
	echo "cd $(JS) && npm run build"; \
	cd $(JS) && npm run --silent build

test-browser: install ## the JS client and /demo/ in the system's Chromium via Playwright (also in `make test`)
	@$(PY) -c 'from tools.browser import unavailable; r = unavailable(); r and print("make test-browser: every test skipped:", r)'
	$(PY) -m pytest tests/browser $(PYTEST_ARGS)

screenshot: install ## docs/demo.png: the /demo/ page mid-run, on a throw-away stack (needs Chromium)
	$(PY) tools/screenshot.py

lint: install ## ruff
	$(PY) -m ruff check .

typecheck: install ## mypy (strict) on async_request
	$(PY) -m mypy async_request

check: lint typecheck test ## lint, types and tests

bench: install ## run the benchmarks in bench/ (BENCH=path to pick one)
	@test -n "$(BENCH)" || { echo "no benchmarks in bench/"; exit 1; }
	@for script in $(BENCH); do echo "== $$script"; $(PY) $$script || exit 1; done
