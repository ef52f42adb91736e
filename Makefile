# Two commands: `make run` (set up and run the core with its demo plugins) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
PORT ?= 5000
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: run test lint bench clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.test: $(VENV)/.runtime requirements-test.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
	touch $@

tests/node/node_modules/.installed: tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests use Debian's chromium (never a browser downloaded by a test tool).
/usr/bin/chromium:
	$(if $(shell [ "$$(id -u)" = 0 ] || echo sudo),sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(shell [ "$$(id -u)" = 0 ] || echo sudo),sudo) apt-get install -y -qq chromium

run: $(VENV)/.runtime
	flask --app app init-db
	flask --app app users bootstrap-admin
	gunicorn -w 2 -b 127.0.0.1:$(PORT) app:app

lint: $(VENV)/.test
	ruff format --check .
	ruff check .

test: $(VENV)/.test tests/node/node_modules/.installed /usr/bin/chromium lint
	pytest -q

bench: $(VENV)/.test
	$(PY) bench/storage.py
	$(PY) bench/proxy.py

clean:
	rm -rf $(VENV) tests/node/node_modules
