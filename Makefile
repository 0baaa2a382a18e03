# Set-up and everyday commands. `make run` runs the main job on embedded defaults;
# `make test` runs the test suite. Both create the virtual environment first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WHEELS := .cache/wheels
LOCK   := requirements/lock.txt
DS_VERSION := 0.19.8
# Every pip call gets the lock as constraints: torch stays the pinned 2.13.0 build throughout.
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -c $(LOCK)

.PHONY: setup test run paper gpu-check clean lock
setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK) Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) -q torch==2.13.0 setuptools wheel ninja packaging psutil py-cpuinfo
	@# DeepSpeed builds its CPU shared-memory communication op with JIT on the first
	@# deepspeed.initialize (~90 s per machine). Building it into the wheel once here makes
	@# every launch start in about a second.
	@if ! ls $(WHEELS)/deepspeed-$(DS_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building deepspeed $(DS_VERSION) with its CPU shm op (about 2 minutes)"; \
	  DS_ACCELERATOR=cpu DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 $(BIN)/python -m pip wheel -q \
	    --disable-pip-version-check --no-cache-dir --no-binary deepspeed --no-build-isolation \
	    --no-deps deepspeed==$(DS_VERSION) -w $(WHEELS).tmp && \
	  mkdir -p $(WHEELS) && mv $(WHEELS).tmp/deepspeed-*.whl $(WHEELS)/ && rm -rf $(WHEELS).tmp; \
	fi
	$(PIP) -q $(WHEELS)/deepspeed-$(DS_VERSION)-*.whl
	@# The extras the test suite needs: dev tools, DALI (the CUDA 12 wheel, run CPU-only) and
	@# Optuna. The lock (-c) picks the versions inside pyproject's ranges.
	$(PIP) -q -e '.[dev,dali-cpu,optuna]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

run: setup
	$(BIN)/python launch/quickstart.py

# The small-scale paper protocol (about 40 minutes on 2 cores): synthetic data, stage 1 with
# both objectives, stage 2, baselines and controls, few-shot tables and plots (runs/paper/).
paper: setup
	$(BIN)/python launch/paper.py

# On a GPU machine, before anything else: every GPU path once, with timings (about 5 minutes).
# It uses the .venv made by the README's GPU install (not `make setup`, which is CPU-only).
gpu-check:
	$(BIN)/python -m benchmarks.gpu_check --json runs/gpu-check/gpu_check.json

# Refresh the lock from the current environment (after changing pyproject.toml).
lock:
	{ sed -n '/^#/p' $(LOCK); $(BIN)/python -m pip freeze --exclude-editable \
	  | sed -e 's/+cpu$$//' -e 's/^deepspeed @ .*/deepspeed==$(DS_VERSION)/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) $(WHEELS) .pytest_cache
