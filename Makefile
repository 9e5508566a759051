# Two entry points (README): `make demo` and `make test`. Both create or reuse .venv.
# torch==2.13.0 is installed first so pip takes the CPU build on disk, never a multi-GB CUDA build.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.abharness-installed
# Empty: ../shared/data when present, else the user cache, fetched on first use (`abharness data fetch all`).
DATA   ?=
OUT    ?= artifacts/demo
PYTEST_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo demo-quick test test-fast bench lint clean help

help:
	@echo "make demo   - install everything into .venv and run the end-to-end demo (DATA=dir, else ../shared/data, else fetched)"
	@echo "make test   - install everything into .venv and run the test suite"
	@echo "make bench  - run the issue-13 benchmarks, print one table of ratios with commands and load average"
	@echo "              (BENCH_ARGS=--quick for smaller sizes)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes: a second `make test` costs seconds.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/abharness demo $(if $(DATA),--data-root $(DATA)) --out $(OUT)

demo-quick: $(STAMP)
	$(VENV)/bin/abharness demo $(if $(DATA),--data-root $(DATA)) --out artifacts/demo-quick --quick

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) loadtest/run_benchmarks.py $(BENCH_ARGS)

clean:
	rm -rf artifacts .pytest_cache
