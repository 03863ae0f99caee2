# Two entry points for a fresh machine with Python 3.11 and pip: `make run` and `make test`.
# Each creates the virtualenv and installs the locked requirements (requirements-dev.txt: requirements/dev.txt,
# every audience's, with hashes) on first use and when they change, then the project itself (editable), for
# the `filesync` command.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck unit bench release lock loadtest soak clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

run: $(VENV)/.installed
	$(PY) -m service --host $(HOST) --port $(PORT)

# Ruff, then the layer contracts in pyproject.toml ([tool.importlinter]).
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: $(VENV)/.installed
	$(PY) -m mypy

# Two workers by default (CI's two cores); `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= 2

unit: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(VENV)/.installed
	$(PY) -m tools.bench $(BENCH)

# A deployable release (docs/operations.md, "Deploy"): the committed tree plus a wheelhouse of the service's lock
# (requirements/service.txt, hash-checked: no emulator, no stack generator, no client tools) for the instances
# (Amazon Linux 2023, x86_64, CPython 3.11), so they install with no package index.
RELEASE_DIR ?= out/release
WHEEL_PLATFORMS := --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64
release: $(VENV)/.installed
	rm -rf $(RELEASE_DIR)/tree && mkdir -p $(RELEASE_DIR)/tree
	git archive HEAD | tar -x -C $(RELEASE_DIR)/tree
	$(PY) -m pip download --quiet --only-binary=:all: $(WHEEL_PLATFORMS) --python-version 3.11 \
		--implementation cp -r requirements/service.txt -d $(RELEASE_DIR)/tree/wheels
	tar -czf $(RELEASE_DIR)/filesync-$$(git rev-parse --short HEAD).tar.gz -C $(RELEASE_DIR)/tree .
	@echo $(RELEASE_DIR)/filesync-$$(git rev-parse --short HEAD).tar.gz

# The lock files (requirements/*.txt), one per audience, from pyproject.toml's dependencies and extras, with
# hashes. Run after changing a dependency there; pins already locked stay unless pyproject.toml moves them
# (`make lock LOCK_ARGS=--upgrade` takes the newest releases the pins allow). The narrower locks are
# constrained by the widest (dev), so every audience gets the same version of a shared package.
LOCK_VENV ?= .venv-lock
LOCK := CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS)
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && \
		$(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2)
	$(LOCK) --all-extras -o requirements/dev.txt pyproject.toml
	$(LOCK) --extra client -c requirements/dev.txt -o requirements/client.txt pyproject.toml
	$(LOCK) --extra service -c requirements/dev.txt -o requirements/service.txt pyproject.toml
	$(LOCK) --extra service --extra emulator -c requirements/dev.txt -o requirements/embedded.txt pyproject.toml
	$(LOCK) --extra stack -c requirements/dev.txt -o requirements/stack.txt pyproject.toml

# A load test of the default mix against a service started for it (see docs/performance.md, "Load testing").
loadtest: $(VENV)/.installed
	$(PY) -m tools.loadtest --spawn $(LOADTEST_ARGS)

# The 10-minute soak (not in CI): SOAK_RATE requests/s, 70% of the sustained rate that `make bench
# BENCH=sustained` finds; fails unless there are no errors and the service's memory (resident, and its
# anonymous part) grows < 5% from minute 2.
SOAK_RATE ?= 53
soak: $(VENV)/.installed
	$(PY) -m tools.loadtest --spawn --rate $(SOAK_RATE) --duration 600 --rss-from 120 \
		--slo-errors 0 --slo-rss-growth 5 --out out/soak $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .mypy_cache .ruff_cache .pytest_cache
