# webrtc-dht developer entry points. Everything runs inside .venv (created on demand).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PEERS ?= 25

.PHONY: venv test soak check lint typecheck format run down bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip >/dev/null
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest -q tests

soak: venv  # left out of `make test`: 10k-node placement, 5k-node churn, oracle vs join, 30-peer churn soak
	$(BIN)/python -m pytest -q -m soak tests

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: venv
	$(BIN)/python orchestrate.py all --peers $(PEERS)

down: venv
	$(BIN)/python orchestrate.py down

bench: venv
	$(BIN)/python bench/sim_scale.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
