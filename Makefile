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

.PHONY: help install demo demo-quick test test-fast bench clean

# `make help` lists every target from its `## ` comment (tests/cli/test_readme_commands.py checks none is missing).
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z_-]+):.*## (.*)/  make \1|\2/' | \
		awk -F'|' '{ printf "%-18s %s\n", $$1, $$2 }'
	@echo "  variables: DATA=dir (data root) OUT=$(OUT) PYTEST_ARGS=... BENCH_ARGS=--quick (smaller benchmark sizes)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-installs only when pyproject.toml changes: a second `make test` costs seconds.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its test extras (CPU torch first)

demo: $(STAMP) ## run the end-to-end demo into OUT (data: DATA=dir, else ../shared/data, else fetched; reuses artifacts/)
	$(VENV)/bin/abharness demo $(if $(DATA),--data-root $(DATA)) --out $(OUT)

demo-quick: $(STAMP) ## the same story on a tiny slice, in a few minutes
	$(VENV)/bin/abharness demo $(if $(DATA),--data-root $(DATA)) --out artifacts/demo-quick --quick

test: $(STAMP) ## run the whole test suite (slow simulations included)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## run the tests not marked slow
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks; one table of measured ratios with commands and load average
	$(PY) loadtest/run_benchmarks.py $(BENCH_ARGS)

clean: ## remove artifacts/ and the pytest cache
	rm -rf artifacts .pytest_cache
