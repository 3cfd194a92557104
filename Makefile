# Everything runs from .venv, created on first use with the python3 on PATH.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DB ?= sqlite:///./statements.db
HOST ?= 127.0.0.1
PORT ?= 8000

LOCK := requirements.lock

.PHONY: run test lint typecheck bench soak lock clean

# Every install takes its versions from the lock file, so a fresh machine gets what CI tested.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $(STAMP)

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev,bench]'
	touch $(VENV)/.bench

# Regenerate the lock after changing a dependency in pyproject.toml (see the README).
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --extra dev --extra bench --strip-extras --no-emit-find-links \
		--no-emit-index-url --output-file $(LOCK) pyproject.toml

run: $(STAMP)
	$(BIN)/statements demo --db $(DB) --if-empty
	$(BIN)/statements serve --db $(DB) --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# make bench BENCH_ARGS="--only scale --events 20000000" for the large-log figures.
bench: $(VENV)/.bench
	$(BIN)/python -m bench $(BENCH_ARGS)

soak: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) statements.db statements.db-wal statements.db-shm bench/results
