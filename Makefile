# Two entry points, both usable on a machine with nothing but Python:
#   make demo   create .venv, install, run the main job on the embedded default
#   make test   create .venv, install with dev extras, run the default test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Pin the CPU wheel first so that nothing pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
export OMP_NUM_THREADS ?= 1

.PHONY: demo test test-slow test-gpu venv install install-dev bench lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[xtb,formats]"

install-dev: $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e ".[xtb,formats,dev]"

demo: install
	$(BIN)/openjmp demo

test: install-dev
	$(BIN)/python -m pytest -q

test-slow: install-dev
	$(BIN)/python -m pytest -q --runslow

# GPU checks (tests/gpu, docs/gpu.md) in the current Python environment, which must hold a CUDA
# build of torch and openjmp (pip install -e ".[dev]"): the .venv above pins the CPU wheel
test-gpu:
	$(PY) -m pytest -q tests/gpu

lint: install-dev
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/graphs.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
