# Two commands on a fresh clone with only Python >= 3.11:
#   make run   -> .venv, install, proxy on 127.0.0.1:8080 in front of the bundled mock
#   make test  -> .venv, install with test extras, the whole suite
#   make lint  -> the same .venv; ruff (rules and formatting) and mypy --strict
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test lint demo bench lock clean

# Recipes are quiet (@) so that `make run` leaves stdout to the proxy's JSON events;
# progress goes to stderr.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "LLM Pulse needs Python >= 3.11"'
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)

# Installs are pinned with hashes (requirements*.lock) so a tampered release cannot
# slip in; the package itself goes in editable, without re-resolving dependencies.
$(VENV)/.run-installed: $(BIN)/python requirements.lock pyproject.toml
	@echo "installing (requirements.lock, hashes checked)" >&2
	@$(PIP) install --require-hashes -r requirements.lock >&2
	@$(PIP) install --no-deps --no-build-isolation -e . >&2
	@touch $@

$(VENV)/.test-installed: $(BIN)/python requirements-test.lock pyproject.toml
	@echo "installing with test extras (requirements-test.lock, hashes checked)" >&2
	@$(PIP) install --require-hashes -r requirements-test.lock >&2
	@$(PIP) install --no-deps --no-build-isolation -e . >&2
	@touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	@$(BIN)/pulse-proxy

# Needs `make run` serving in another terminal: a traffic mix that fires every alert.
demo: $(VENV)/.run-installed
	@$(BIN)/pulse-proxy demo

# The whole suite, one pytest-xdist worker per core.  Most tests wait on sockets and
# subprocesses, so two workers finish sooner even on two cores.  Whole files go to one
# worker (loadfile): a module's fixtures (the wheel build, the Docker image, a shared
# proxy) are then built once, and the image tests run one after another.
# For a quicker loop leave out the tests that take tens of seconds (memory soaks, the
# wheel build, real Prometheus, images):   make test PYTEST_ARGS='-m "not slow"'
# One process, as before:                  make test PYTEST_ARGS='-n 0'
PYTEST_ARGS ?=
test: $(VENV)/.test-installed
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

# ruff (lint and format check) and mypy --strict, as .ci/run does before the tests.
lint: $(VENV)/.test-installed
	VENV=$(VENV) .ci/lint

bench: $(VENV)/.test-installed
	$(BIN)/python bench/overhead.py

# Regenerate the lock files after changing dependencies in pyproject.toml.  The locks
# name packages and hashes only: this machine's own index settings stay out of them.
lock:
	$(PIP) install pip-tools
	$(BIN)/pip-compile -q --allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --extra otel -o requirements.lock pyproject.toml requirements-build.in requirements-compat.in
	$(BIN)/pip-compile -q --allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links --extra test --extra otel -o requirements-test.lock pyproject.toml requirements-build.in requirements-compat.in

clean:
	rm -rf $(VENV) build *.egg-info
