# Two commands: `make run` (set up and run the core with its demo plugins) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PORT ?= 5000
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# pytest on three pytest-xdist workers, each test file on one of them (module fixtures are built
# once). Most tests wait on processes, sockets and health intervals: with the CLI forked from a
# server (tests/support/cli_server.py) two workers kept the two cores 63 % busy, and three
# finish in 9 min 5 s instead of 10 min 34 s (2026-12-02). TEST_WORKERS=0: one process.
# Files are handed out longest first (tests/conftest.py LONGEST_FILES), not by their test count.
TEST_WORKERS ?= 3
export PYTEST_ADDOPTS := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ADDOPTS)

.PHONY: run test lint bench clean

$(VENV)/.runtime: requirements.txt sdk/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -e sdk
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

%/node_modules/.installed: %/package-lock.json
	npm ci --prefix $* --no-audit --no-fund --loglevel=error
	touch $@

# The examples depend on the SDK as "file:../../sdk-node", which npm installs as a symlink;
# Node resolves the SDK's own import of jose from sdk-node's real path, so sdk-node gets its
# own node_modules, installed before the examples that link it.
NODE_EXAMPLES := examples/node-plugin/node_modules/.installed examples/minimal-node/node_modules/.installed
NODE_DEPS := tests/node/node_modules/.installed sdk-node/node_modules/.installed $(NODE_EXAMPLES)
$(NODE_EXAMPLES): sdk-node/node_modules/.installed

# Browser tests use Debian's chromium (never a browser downloaded by a test tool); the
# deployment test runs Debian's nginx in front of gunicorn; the storage suites also run on a
# throwaway cluster of Debian's PostgreSQL (tests/support/postgres.py), whichever version is there.
SUDO := $(if $(shell [ "$$(id -u)" = 0 ] || echo sudo),sudo)
PG_INITDB := $(or $(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin/initdb))),/usr/lib/postgresql/initdb)
APT_PACKAGES := /usr/bin/chromium /usr/sbin/nginx $(PG_INITDB)
$(APT_PACKAGES):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium nginx-light postgresql

run: $(VENV)/.runtime $(NODE_EXAMPLES)
	PORT=$(PORT) scripts/run_demo.sh

lint: $(VENV)/.test
	ruff format --check .
	ruff check .

# The tests start some 500 Python processes (cores, workers, the CLI, plugins). With the
# machine's PYTHONDONTWRITEBYTECODE set, each would compile the core from source again
# (~0.3 s of CPU each): the tests write their bytecode caches (git-ignored __pycache__).
test: $(VENV)/.test $(NODE_DEPS) $(APT_PACKAGES) lint
	env -u PYTHONDONTWRITEBYTECODE pytest -q

bench: $(VENV)/.test
	$(PY) bench/storage.py
	$(PY) bench/batch.py
	$(PY) bench/proxy.py
	$(PY) bench/shell_cpu.py
	$(PY) bench/scale.py
	$(PY) bench/restore.py

clean:
	rm -rf $(VENV) tests/node/node_modules sdk-node/node_modules examples/*/node_modules
