# Everything a fresh machine needs (Debian, python3 >= 3.10 with venv, make):
# the first `make demo` or `make test` creates .venv and installs the package
# with its extras; it reinstalls whenever pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
DOCS_STAMP := $(VENV)/.installed-docs
# Extra arguments for pytest: make test ARGS='-k iterate -x'
# and for the benchmark: make bench ARGS='--quick --backends sqlite'
ARGS ?=

.PHONY: demo test lint bench docs docs-build install clean-venv

demo: $(STAMP)
	$(BIN)/python -m aiodatabases demo

test: $(STAMP)
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check aiodatabases tests bench
	$(BIN)/mypy

# Benchmark against the raw drivers, databases and SQLAlchemy (see docs/performance.md);
# writes bench/results.md. Uses the local servers that answer, as `make test` does.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(ARGS)

# The documentation site (mkdocs.yml, docs/; the API reference comes from the
# docstrings). Strict: a broken link or reference is an error, as in CI.
# `make docs` builds and serves it on http://127.0.0.1:8000/, rebuilding on changes;
# `make docs-build` writes it to site/. NO_MKDOCS_2_WARNING silences the banner
# Material prints on every build about its own future, which is no warning of ours.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --strict -a 127.0.0.1:8000

docs-build: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

install: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
		{ echo "aiodatabases needs Python >= 3.10; $(PYTHON) is older (try PYTHON=python3.12)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "creating $(VENV) failed; on Debian: apt-get install python3-venv" >&2; exit 1; }

# Order-only on the interpreter: an existing venv is reused, only the install is redone.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,test]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[all,test,bench]'
	touch $@

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[all,test,docs]'
	touch $@

clean-venv:
	rm -rf $(VENV)
