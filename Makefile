# Two entry points for a fresh machine with Python 3.11 and pip: `make run` and `make test`.
# Each creates the virtualenv and installs the pinned requirements on first use (and when they change).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint typecheck unit bench release loadtest soak clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.installed
	$(PY) -m service --host $(HOST) --port $(PORT)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

# Two workers by default (CI's two cores); `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= 2

unit: $(VENV)/.installed
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(VENV)/.installed
	$(PY) -m tools.bench $(BENCH)

# A deployable release (README "Deploy"): the committed tree plus a wheelhouse of requirements.txt for the
# instances (Amazon Linux 2023, x86_64, CPython 3.11), so they install with no package index.
RELEASE_DIR ?= out/release
WHEEL_PLATFORMS := --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64
release: $(VENV)/.installed
	rm -rf $(RELEASE_DIR)/tree && mkdir -p $(RELEASE_DIR)/tree
	git archive HEAD | tar -x -C $(RELEASE_DIR)/tree
	$(PY) -m pip download --quiet --only-binary=:all: $(WHEEL_PLATFORMS) --python-version 3.11 \
		--implementation cp -r requirements.txt -d $(RELEASE_DIR)/tree/wheels
	tar -czf $(RELEASE_DIR)/filesync-$$(git rev-parse --short HEAD).tar.gz -C $(RELEASE_DIR)/tree .
	@echo $(RELEASE_DIR)/filesync-$$(git rev-parse --short HEAD).tar.gz

# A load test of the default mix against a service started for it (see README, "Load testing").
loadtest: $(VENV)/.installed
	$(PY) -m tools.loadtest --spawn $(LOADTEST_ARGS)

# The 10-minute soak (not in CI): SOAK_RATE requests/s, 70% of the sustained rate that `make bench
# BENCH=sustained` finds; fails unless there are no errors and the service's memory (resident, and its
# anonymous part) grows < 5% from minute 2.
SOAK_RATE ?= 3.5
soak: $(VENV)/.installed
	$(PY) -m tools.loadtest --spawn --rate $(SOAK_RATE) --duration 600 --rss-from 120 \
		--slo-errors 0 --slo-rss-growth 5 --out out/soak $(LOADTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
