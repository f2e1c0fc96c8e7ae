# The two quickstart commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= examples/demo.toml

.PHONY: run test bench venv test-venv clean demo-lists

$(BIN)/digestd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile --upgrade pip
	@# --no-compile, then precompile.py: bytecode for the modules digestd imports (about 23 MB), not
	@# for every module of every dependency (95 MB, mostly scipy modules digestd never imports).
	$(BIN)/pip install --quiet --no-compile -e .
	$(BIN)/python scripts/precompile.py
	@# setuptools only builds packages, and pip builds in an isolated environment of its own:
	@# nothing digestd runs needs it (Python 3.12's venv no longer puts it there at all).
	$(BIN)/pip uninstall --quiet --yes setuptools 2>/dev/null || true
	touch $@

$(VENV)/.test-extras: $(BIN)/digestd
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/digestd

test-venv: $(VENV)/.test-extras

run: $(BIN)/digestd
	$(BIN)/digestd --config $(CONFIG) run

test: $(VENV)/.test-extras
	$(BIN)/python -m pytest -q

# The delivery pass at 10,000 readers x 2,000 papers; other sizes: make bench ARGS="--users 1000 --papers 2000".
bench: $(VENV)/.test-extras
	$(BIN)/python -m benchmarks $(ARGS)

# Rebuild the bundled offline demo from ../shared/data/arxiv-daily (real papers, real formats).
demo-lists: $(BIN)/digestd
	$(BIN)/python scripts/make_demo_lists.py

clean:
	rm -rf $(VENV) var
